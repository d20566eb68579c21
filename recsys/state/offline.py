"""The offline twin of the online reads: each user's state and context, and the items'
context, computed from interactions by the functions that build the tables the online store
is materialized from. ``recsys recommend``, the evaluation and the ranker's training read
these; serving reads the store. A test holds the two to the same values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, RATING, TS, USER
from recsys.state.activity import USER_CONTEXT, user_activity
from recsys.state.items import ITEM_CONTEXT, item_stats
from recsys.state.user import UserState, state_table, states_from_table


def states_from_interactions(
    interactions: pd.DataFrame | None, user_ids: Sequence[str], recent_n: int
) -> list[UserState]:
    """The state of each of ``user_ids`` as of the end of ``interactions`` (empty for a user
    without any): the offline twin of the online read of the user's key."""
    ids = [str(u) for u in user_ids]
    if interactions is None or interactions.empty:
        return [UserState(u) for u in ids]
    mine = _timed(interactions[interactions[USER].astype(str).isin(set(ids))])
    context = latest_user_activity(mine) if len(mine) else None
    return states_from_table(state_table(mine, recent_n), context, ids)


def item_context(interactions: pd.DataFrame | None, item_ids: Sequence[str]) -> dict:
    """``ITEM_CONTEXT`` as ``(len(item_ids),)`` float arrays (NaN where the item has none):
    the offline twin of the online read of the catalog's items."""
    n = len(item_ids)
    if interactions is None or interactions.empty:
        return {k: np.full(n, np.nan) for k in ITEM_CONTEXT}
    table = latest_item_stats(_timed(interactions)).reindex(pd.Index(item_ids, dtype=object))
    return {k: table[k].to_numpy(dtype=np.float64) for k in ITEM_CONTEXT}


def sorted_events(interactions: pd.DataFrame) -> pd.DataFrame:
    """The events every table is folded from: ids as strings, times in UTC, a rating column
    (NaN without one), in time order (ties keep the input's order)."""
    cols = [USER, ITEM, TS] + ([RATING] if RATING in interactions else [])
    ev = interactions[cols].copy()
    ev[USER] = ev[USER].astype(str)
    ev[ITEM] = ev[ITEM].astype(str)
    ev[TS] = pd.to_datetime(ev[TS], utc=True)
    if RATING not in ev:
        ev[RATING] = np.nan
    return ev.sort_values([TS], kind="mergesort").reset_index(drop=True)


def latest_user_activity(interactions: pd.DataFrame) -> pd.DataFrame:
    """``USER_CONTEXT`` by ``user_id``: the latest ``user_activity`` row of each user, what
    materializing the table puts online (events then move it on)."""
    table = user_activity(sorted_events(interactions), pd.DataFrame(), 0)
    return table.drop_duplicates(USER, keep="last").set_index(USER)[list(USER_CONTEXT)]


def latest_item_stats(interactions: pd.DataFrame) -> pd.DataFrame:
    """``ITEM_CONTEXT`` by ``item_id``: the latest ``item_stats`` row of each item (the counts
    of every event; the windowed counts are left out: they decay with the clock)."""
    table = item_stats(sorted_events(interactions), ())
    return table.drop_duplicates(ITEM, keep="last").set_index(ITEM)[list(ITEM_CONTEXT)]


def _timed(interactions: pd.DataFrame) -> pd.DataFrame:
    """Interactions without timestamps are taken to be in time order (one second apart)."""
    if TS in interactions:
        return interactions
    stamps = pd.Timestamp(0, tz="UTC") + pd.to_timedelta(np.arange(len(interactions)), unit="s")
    return interactions.assign(**{TS: stamps})
