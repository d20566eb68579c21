"""The user's state, the one input every recommendation reads: the complete set of items the
user has interacted with (exclude-seen, EASE's input row) and the most recent N of them, most
recent first (the user tower's input, the reasons).

Offline it is computed from the training interactions (:func:`state_table`,
:func:`~recsys.state.offline.states_from_interactions`); online it is the ``user_state``
feature view, materialized from the same table and kept current by events through
:func:`fold`. A test holds the two to the same rows. No pandas-free shortcut, no Bloom
filter: a false positive would hide an item.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, TS, USER

EVENT_TS = "event_timestamp"
# A row holding a user's state after an event at t is stamped t + 1 µs, so a point-in-time
# join at t sees the state just *before* the event.
TICK = pd.Timedelta(microseconds=1)
SEEN, RECENT = "seen_items", "recent_items"
DEFAULT_RECENT_N = 200


@dataclass(frozen=True)
class UserState:
    """What is known of one user's history.

    Attributes:
        user_id: the user.
        seen: every item the user interacted with, each once, in order of first interaction.
        recent: the latest items (at most the store's window), most recent first; repeats kept.
        features: the user's context as the store holds it (``USER_CONTEXT`` of
            ``recsys.state.activity``: counts, mean rating; None where unknown).
    """

    user_id: str
    seen: tuple[str, ...] = ()
    recent: tuple[str, ...] = ()
    features: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.seen

    def window(self, n: int) -> UserState:
        """The same state with the recent list cut to ``n`` (what a model of window n reads)."""
        return UserState(self.user_id, self.seen, self.recent[:n], self.features)


def state_table(interactions: pd.DataFrame, recent_n: int) -> pd.DataFrame:
    """One row per user: ``user_id, seen_items, recent_items, event_timestamp``.

    Events are ordered by (timestamp, row): two events of one second keep the order of the
    input. The row is stamped one tick after the user's last event.

    Args:
        interactions: ``user_id, item_id, timestamp`` (ids of any type: read as strings;
            without a timestamp the rows are taken to be in time order).
        recent_n: the recent window's length.
    """
    if recent_n < 0:
        raise ValueError(f"recent_n must be >= 0, got {recent_n}")
    if interactions.empty:
        return pd.DataFrame({USER: [], SEEN: [], RECENT: [], EVENT_TS: []})
    users = interactions[USER].astype(str).to_numpy(dtype=object)
    items = interactions[ITEM].astype(str).to_numpy(dtype=object)
    if TS in interactions:
        stamps = pd.to_datetime(interactions[TS], utc=True)
        ts = stamps.dt.as_unit("ns").astype("int64").to_numpy()
    else:  # no times: the rows are in time order
        ts = np.zeros(len(users), dtype=np.int64)
    codes, names = pd.factorize(users, sort=True)
    order = np.lexsort((np.arange(len(users)), ts, codes))  # user, then time, then row
    codes, items, ts = codes[order], items[order], ts[order]
    start = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1]
    end = np.r_[start[1:], len(codes)]
    first = ~pd.DataFrame({"u": codes, "i": items}).duplicated().to_numpy()  # first of a pair
    seen_items, seen_codes = items[first], codes[first]
    seen_start = np.searchsorted(seen_codes, codes[start])
    seen_end = np.r_[seen_start[1:], len(seen_codes)]
    seen = [seen_items[a:b].tolist() for a, b in zip(seen_start, seen_end, strict=True)]
    recent = [
        items[max(a, b - recent_n) : b][::-1].tolist() for a, b in zip(start, end, strict=True)
    ]
    last = pd.to_datetime(ts[end - 1], utc=True) + TICK
    return pd.DataFrame(
        {USER: np.asarray(names, dtype=object), SEEN: seen, RECENT: recent, EVENT_TS: last}
    )


def states_from_table(
    table: pd.DataFrame, context: pd.DataFrame | None, user_ids: Sequence[str]
) -> list[UserState]:
    """States of ``user_ids`` from a :func:`state_table` and the users' context rows (both
    indexed by user id): empty for a user in neither."""
    table = table.set_index(USER) if USER in table.columns else table
    out = []
    for user in (str(u) for u in user_ids):
        features = {}
        if context is not None and user in context.index:
            features = {k: plain_number(v) for k, v in context.loc[user].items()}
        if user in table.index:
            row = table.loc[user]
            out.append(UserState(user, tuple(row[SEEN]), tuple(row[RECENT]), features))
        else:
            out.append(UserState(user, features=features))
    return out


def from_row(user_id: str, row: dict, context: Sequence[str] = ()) -> UserState:
    """A state from an online read's values (``None`` where the store has no row), with the
    ``context`` features among them."""
    seen = row.get(SEEN)
    recent = row.get(RECENT)
    features = {k: plain_number(row.get(k)) for k in context if row.get(k) is not None}
    return UserState(str(user_id), tuple(seen or ()), tuple(recent or ()), features)


def plain_number(value) -> float | None:
    """A feature value as a plain float (None for a missing one, NaN included)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def fold(state: UserState, item_id: str, recent_n: int) -> UserState:
    """The state after one more event (the event path; replaying a user's events in order
    from an empty state gives :func:`state_table`'s row)."""
    seen = state.seen if item_id in set(state.seen) else (*state.seen, item_id)
    recent = (item_id, *state.recent)[:recent_n]
    return UserState(state.user_id, seen, recent)
