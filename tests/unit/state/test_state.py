"""The user's state contract: the batch table (what the store materializes, what the offline
path reads) and the event fold (what the event path pushes) give the same rows."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.state.offline import states_from_interactions
from recsys.state.user import (
    TICK,
    UserState,
    fold,
    from_row,
    state_table,
)
from tests.helpers import make_interactions

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def rows(*events) -> pd.DataFrame:
    """``(user, item, seconds after T0)`` as interactions, in the order given."""
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "s"])
    frame["timestamp"] = T0 + pd.to_timedelta(frame.pop("s"), unit="s")
    return frame


def test_seen_is_complete_and_deduplicated_recent_is_the_last_n_newest_first():
    table = state_table(rows(("u", "a", 0), ("u", "b", 5), ("u", "a", 9), ("u", "c", 7)), 3)
    row = table.set_index("user_id").loc["u"]
    assert list(row["seen_items"]) == ["a", "b", "c"]  # first interactions, in time order
    assert list(row["recent_items"]) == ["a", "c", "b"]  # by time: a@9, c@7, b@5; repeats kept
    assert row["event_timestamp"] == T0 + pd.Timedelta(seconds=9) + TICK


def test_ties_in_time_keep_the_input_order_and_ids_are_strings():
    table = state_table(rows((1, 10, 0), (1, 11, 0), (1, 12, 0), (2, 10, 3)), 2)
    assert list(table["user_id"]) == ["1", "2"]
    assert list(table.loc[0, "recent_items"]) == ["12", "11"]  # the later row is the newer
    assert list(table.loc[0, "seen_items"]) == ["10", "11", "12"]


def test_replaying_events_through_the_fold_gives_the_batch_rows():
    interactions = make_interactions(n_users=12, per_user=9, seed=3)
    interactions = interactions.sample(frac=1.0, random_state=1)  # rows out of time order
    for n in (1, 4, 50):
        batch = state_table(interactions, n).set_index("user_id")
        online: dict[str, UserState] = {}
        for event in interactions.sort_values("timestamp", kind="stable").itertuples():
            user = event.user_id
            online[user] = fold(online.get(user, UserState(user)), event.item_id, n)
        assert set(online) == set(batch.index)
        for user, state in online.items():
            assert list(state.seen) == list(batch.loc[user, "seen_items"])
            assert list(state.recent) == list(batch.loc[user, "recent_items"])


def test_states_for_requested_users_unknown_ones_empty():
    interactions = rows(("u", "a", 0), ("v", "b", 1), ("u", "c", 2))
    u, nobody = states_from_interactions(interactions, ["u", "nobody"], 5)
    assert (u.seen, u.recent) == (("a", "c"), ("c", "a"))
    assert u.features == {"user_interactions": 2.0, "user_mean_rating": None}  # no ratings
    assert nobody == UserState("nobody") and nobody.empty
    assert states_from_interactions(None, ["x"], 5) == [UserState("x")]
    assert u.window(1).recent == ("c",) and u.window(1).seen == u.seen


def test_an_online_row_reads_as_a_state():
    assert from_row("u", {"seen_items": ["a"], "recent_items": ["a"]}) == UserState(
        "u", ("a",), ("a",)
    )
    row = {"seen_items": ["a"], "recent_items": ["a"], "user_mean_rating": 4.5, "other": 1}
    assert from_row("u", row, ("user_mean_rating",)).features == {"user_mean_rating": 4.5}
    assert from_row("u", {"seen_items": None, "recent_items": None}).empty


def test_a_negative_window_is_refused():
    with pytest.raises(ValueError, match="recent_n"):
        state_table(rows(("u", "a", 0)), -1)
