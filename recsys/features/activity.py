"""A user's activity features (counts, mean rating, genre shares) and the one function that
folds events into them, for the batch build and for the event path alike.

:func:`fold_activity` takes what is known before a run of events (nothing, for the batch build
of every training event; the online row, for one event arriving at serving) and returns the
features after each event. Both paths call it, so a user's online row after replaying events
one at a time is the row a batch rebuild over the same events gives (a test holds them equal).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.io import RATING, USER

ACTIVITY = ("user_interactions", "user_ratings", "user_mean_rating", "genre_affinity")


def fold_activity(
    events: pd.DataFrame, genre_onehot: np.ndarray, prior: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The activity features after each event.

    Args:
        events: ``user_id`` and ``rating`` (missing for an event without one), each user's
            events contiguous and in time order.
        genre_onehot: ``(len(events), n_genres)`` the genres of each event's item, 0/1.
        prior: the ``ACTIVITY`` row of users known before these events, indexed by
            ``user_id`` (as the online store holds it); None or a missing user: nothing known.

    Returns:
        One row per event, in the input's order: ``user_id`` and the ``ACTIVITY`` columns.
    """
    users = events[USER].to_numpy()
    n = len(users)
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1] if n else np.zeros(0, int)
    first = np.repeat(start, np.diff(np.r_[start, n]))  # (rows,) each row's run start
    count0, rated0, sum0, genres0 = _sums_before(prior, users, genre_onehot.shape[1])
    ratings = events[RATING].to_numpy(np.float64, na_value=np.nan)
    rated = ~np.isnan(ratings)
    count = count0 + (np.arange(n) - first) + 1
    n_rated = rated0 + _group_cumsum(rated.astype(np.float64), first)
    total = sum0 + _group_cumsum(np.where(rated, ratings, 0.0), first)
    mean = np.where(n_rated > 0, total / np.maximum(n_rated, 1), np.nan)
    genres = genres0 + _group_cumsum(genre_onehot.astype(np.float64), first)  # (rows, G)
    return pd.DataFrame(
        {
            USER: users,
            "user_interactions": count.astype(np.int64),
            "user_ratings": n_rated.astype(np.int64),
            "user_mean_rating": mean.astype(np.float32),
            "genre_affinity": list((genres / count[:, None]).astype(np.float32)),
        }
    )


def _sums_before(prior: pd.DataFrame | None, users: np.ndarray, n_genres: int):
    """Per event row: the user's count, rated count, rating sum and genre counts before it."""
    n = len(users)
    if prior is None or not len(prior):
        return np.zeros(n), np.zeros(n), np.zeros(n), np.zeros((n, n_genres))
    known = prior.reindex(users)
    count = known["user_interactions"].fillna(0).to_numpy(np.float64)
    rated = known["user_ratings"].fillna(0).to_numpy(np.float64)
    mean = known["user_mean_rating"].to_numpy(np.float64, na_value=np.nan)
    total = np.where(rated > 0, np.nan_to_num(mean) * rated, 0.0)
    shares = np.zeros((n, n_genres))
    for row, value in enumerate(known["genre_affinity"]):
        if value is not None and not np.isscalar(value) and len(value) == n_genres:
            shares[row] = np.asarray(value, np.float64)
    return count, rated, total, shares * count[:, None]


def _group_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each run (``first``: the index where each row's run
    starts; runs contiguous)."""
    if not len(values):
        return values
    total = np.cumsum(values, axis=0)
    before = np.concatenate([np.zeros_like(values[:1]), total[:-1]])  # sum of earlier rows
    return total - before[first]
