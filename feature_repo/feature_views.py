"""Feature views: user profile and activity, item profile and sliding-window statistics."""

from datetime import timedelta

from data_sources import (
    item_content_source,
    item_profile_push,
    item_stats_source,
    user_activity_push,
    user_profile_source,
    user_state_push,
)
from entities import item, user
from feast import Entity, FeatureView, Field
from feast.data_source import DataSource
from feast.types import Array, Float32, Int64, String

# ttl=0: a row stays valid until a newer one replaces it (profiles and running aggregates
# do not expire; the windowed counts carry their own decay rows).
FOREVER = timedelta(0)


def view(
    name: str, entity: Entity, source: DataSource, schema: list[Field], online: bool = True
) -> FeatureView:
    """A view of ``entity`` whose rows do not expire (:data:`FOREVER`)."""
    return FeatureView(
        name=name, entities=[entity], ttl=FOREVER, schema=schema, source=source, online=online
    )


USER_PROFILE = [
    Field(name="age_bucket", dtype=Int64, description="0..6 over edges 18,25,35,45,50,56"),
    Field(name="gender", dtype=String),
    Field(name="occupation", dtype=String),
]
USER_ACTIVITY = [
    Field(name="user_interactions", dtype=Int64),
    Field(name="user_ratings", dtype=Int64),
    Field(name="user_mean_rating", dtype=Float32),
    Field(name="genre_affinity", dtype=Array(Float32), description="share per genre"),
]
# The user's state, one row per user (not per event): what recommendation reads online.
USER_STATE = [
    Field(name="seen_items", dtype=Array(String), description="every item, each once"),
    Field(name="recent_items", dtype=Array(String), description="latest first, window N"),
]
ITEM_PROFILE = [Field(name="genres", dtype=Array(String)), Field(name="release_year", dtype=Int64)]
# The item's text, what its content vector is encoded from (recsys.content): read by
# training from the offline store; a request never reads it (not in the online store).
ITEM_CONTENT = [Field(name="title", dtype=String), Field(name="description", dtype=String)]
ITEM_STATS = [
    Field(name="item_interactions", dtype=Int64),
    Field(name="item_mean_rating", dtype=Float32),
    Field(name="popularity_7d", dtype=Int64, description="interactions in the last 7 days"),
    Field(name="popularity_30d", dtype=Int64),
]

user_profile = view("user_profile", user, user_profile_source, USER_PROFILE)
user_activity = view("user_activity", user, user_activity_push, USER_ACTIVITY)
user_state = view("user_state", user, user_state_push, USER_STATE)
item_profile = view("item_profile", item, item_profile_push, ITEM_PROFILE)
item_stats = view("item_stats", item, item_stats_source, ITEM_STATS)
item_content = view("item_content", item, item_content_source, ITEM_CONTENT, online=False)
