"""A user's activity features (counts, mean rating, genre shares) and the one function that
folds events into them, for the batch build and for the event path alike; the activity table
(one row per user and event time) the feature build writes.

:func:`fold_activity` takes what is known before a run of events (nothing, for the batch build
of every training event; the online row, for one event arriving at serving) and returns the
features after each event. Both paths call it, so a user's online row after replaying events
one at a time is the row a batch rebuild over the same events gives (a test holds them equal).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, RATING, TS, USER
from recsys.state.user import EVENT_TS, TICK

ACTIVITY = ("user_interactions", "user_ratings", "user_mean_rating", "genre_affinity")
# The features a model reads of the user, as the online store holds them (the latest row of
# ``user_activity``): recsys.recommend passes them to the model.
USER_CONTEXT = ("user_interactions", "user_mean_rating")


def fold_activity(
    users: np.ndarray,
    ratings: np.ndarray,
    genre_onehot: np.ndarray,
    prior: list[dict | None] | None = None,
) -> dict[str, np.ndarray]:
    """The activity features after each event (numpy only: the event path calls it per event).

    Args:
        users: ``(events,)`` the user of each event, each user's events contiguous and in
            time order.
        ratings: ``(events,)`` float, NaN for an event without a rating.
        genre_onehot: ``(events, n_genres)`` the genres of each event's item, 0/1.
        prior: per event, the user's ``ACTIVITY`` before the run, as the online store holds
            it (a dict, None where nothing is known); None: nothing known of anyone.

    Returns:
        ``user_id`` and the ``ACTIVITY`` columns, one value per event, in the input's order.
    """
    n = len(users)
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1] if n else np.zeros(0, int)
    first = np.repeat(start, np.diff(np.r_[start, n]))  # (rows,) each row's run start
    count0, rated0, sum0, genres0 = _sums_before(prior, n, genre_onehot.shape[1])
    rated = ~np.isnan(ratings)
    count = count0 + (np.arange(n) - first) + 1
    n_rated = rated0 + _group_cumsum(rated.astype(np.float64), first)
    total = sum0 + _group_cumsum(np.where(rated, ratings, 0.0), first)
    mean = np.where(n_rated > 0, total / np.maximum(n_rated, 1), np.nan)
    genres = genres0 + _group_cumsum(genre_onehot.astype(np.float64), first)  # (rows, G)
    return {
        USER: users,
        "user_interactions": count.astype(np.int64),
        "user_ratings": n_rated.astype(np.int64),
        "user_mean_rating": mean.astype(np.float32),
        "genre_affinity": list((genres / count[:, None]).astype(np.float32)),
    }


def user_activity(events: pd.DataFrame, item_genres: pd.DataFrame, n_genres: int) -> pd.DataFrame:
    """One row per (user, event time): counts, mean rating and genre shares of everything up
    to and including that time (:func:`fold_activity`, as the event
    path folds them), stamped one tick later."""
    ev = events.sort_values([USER, TS], kind="mergesort").reset_index(drop=True)
    onehot = item_genres.reindex(ev[ITEM]).fillna(0).to_numpy(np.float64)  # (rows, genres)
    if onehot.shape[1] != n_genres:
        onehot = np.zeros((len(ev), n_genres))
    ratings = ev[RATING].to_numpy(np.float64, na_value=np.nan)
    out = pd.DataFrame(fold_activity(ev[USER].to_numpy(), ratings, onehot))
    out[EVENT_TS] = (ev[TS] + TICK).array
    # several events of a user at one time: keep the state after all of them
    return out[~out.duplicated([USER, EVENT_TS], keep="last")].reset_index(drop=True)


def _sums_before(prior: list[dict | None] | None, n: int, n_genres: int):
    """Per event row: the user's count, rated count, rating sum and genre counts before it."""
    count, rated, total = np.zeros(n), np.zeros(n), np.zeros(n)
    genres = np.zeros((n, n_genres))
    for row, known in enumerate(prior or ()):
        if not known:
            continue
        count[row] = _known(known.get("user_interactions"))
        rated[row] = _known(known.get("user_ratings"))
        total[row] = _known(known.get("user_mean_rating")) * rated[row]
        shares = known.get("genre_affinity")
        if shares is not None and not np.isscalar(shares) and len(shares) == n_genres:
            genres[row] = np.asarray(shares, np.float64) * count[row]
    return count, rated, total, genres


def _known(value) -> float:
    """A stored number, 0 where the store has none (None or NaN)."""
    return 0.0 if value is None or np.isnan(value) else float(value)


def _group_cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each run (``first``: the index where each row's run
    starts; runs contiguous)."""
    if not len(values):
        return values
    total = np.cumsum(values, axis=0)
    before = np.concatenate([np.zeros_like(values[:1]), total[:-1]])  # sum of earlier rows
    return total - before[first]
