"""Batch sources (parquet written by `recsys features build`) and the push sources.

Every table carries `event_timestamp`: the time from which its row is true. A row holding
aggregates of a user's events up to time t is stamped t + 1 microsecond, so the point-in-time
join never lets an interaction see itself or anything after it.
"""

import os
from pathlib import Path

from feast import FileSource, PushSource

# Where `recsys features build` writes; relative paths resolve against this repository.
DATA = Path(os.environ.get("RECSYS_FEATURE_DATA", Path(__file__).parent / "data"))


def _parquet(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(DATA / f"{name}.parquet"),
        timestamp_field="event_timestamp",
    )


user_profile_source = _parquet("user_profile")
user_activity_source = _parquet("user_activity")
user_state_source = _parquet("user_state")
item_profile_source = _parquet("item_profile")
item_stats_source = _parquet("item_stats")
item_content_source = _parquet("item_content")

# Real-time events: the event path pushes each user's updated activity and state rows here;
# they update the online store at once (the durable record is the event log).
user_activity_push = PushSource(
    name="user_activity_push",
    batch_source=user_activity_source,
)
user_state_push = PushSource(
    name="user_state_push",
    batch_source=user_state_source,
)
# New items (POST /items): their profile (genres, year) reaches the online store at once, so
# an event on a new item updates the user's genre affinity as it does for any other item.
item_profile_push = PushSource(
    name="item_profile_push",
    batch_source=item_profile_source,
)
