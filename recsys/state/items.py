"""The items' statistics as of each event (counts, mean rating, windowed popularity): the
item-side fold of the events, for the feature build's ``item_stats`` table and for the items'
context a ranker reads (``ITEM_CONTEXT``, offline: :func:`recsys.state.offline.item_context`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, RATING, TS
from recsys.state.user import EVENT_TS, TICK

# The features a model reads of each candidate item, as the online store holds them (the
# latest row of ``item_stats``): recsys.recommend passes them to the model.
ITEM_CONTEXT = ("item_interactions", "item_mean_rating")


def item_stats(events: pd.DataFrame, windows_days: tuple[int, ...]) -> pd.DataFrame:
    """Per item, a row at each change point: an event (counted from t + 1 µs) or an event
    leaving a window (t + w + 1 µs). Counts cover events with time in ``[s - w, s)``."""
    frames = []
    windows = [pd.Timedelta(days=d).to_timedelta64() for d in windows_days]
    tick = TICK.to_timedelta64()
    naive = events.assign(_t=events[TS].dt.tz_convert("UTC").dt.tz_localize(None))
    for item, group in naive.groupby(ITEM, sort=False):
        times = group["_t"].to_numpy()  # (events,) sorted: events are time-ordered
        rating = group[RATING].to_numpy(np.float64)
        change = np.unique(np.concatenate([times] + [times + w for w in windows])) + tick
        n_before = np.searchsorted(times, change, "left")  # events strictly before s
        rated = np.r_[0, np.cumsum(~np.isnan(rating))][n_before]
        sums = np.r_[0.0, np.cumsum(np.nan_to_num(rating))][n_before]
        frame = {
            ITEM: item,
            "item_interactions": n_before.astype(np.int64),
            "item_mean_rating": np.where(rated > 0, sums / np.maximum(rated, 1), np.nan).astype(
                np.float32
            ),
        }
        for days, w in zip(windows_days, windows, strict=True):
            frame[f"popularity_{days}d"] = (
                n_before - np.searchsorted(times, change - w, "left")
            ).astype(np.int64)
        frame[EVENT_TS] = change
        frames.append(pd.DataFrame(frame))
    if not frames:
        cols = [ITEM, "item_interactions", "item_mean_rating"]
        return pd.DataFrame(columns=cols + [f"popularity_{d}d" for d in windows_days] + [EVENT_TS])
    out = pd.concat(frames, ignore_index=True)
    out[EVENT_TS] = pd.to_datetime(out[EVENT_TS], utc=True)
    return out
