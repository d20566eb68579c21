"""The ranker's inputs: the features of (user, candidate) pairs under each fit's sources.

Computed on the candidates only, never on a (users × catalog) matrix. Every feature is
scale-free or comes from the user's state and the catalog, never from the request's answer:
the same function computes it for the ranker's training rows and for a request
(:func:`features`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from recsys.models.multistage.sources import (
    CONTENT,
    ITEM_ITEM,
    RECENT_WINDOWS,
    BatchScores,
    Sources,
)

SOURCE_FEATURES = (
    "ease",
    "ease_rank",
    "ease_z",
    "rp3",
    "rp3_rank",
    "rp3_z",
    "two_tower",
    "two_tower_rank",
    "log_popularity",
    "popularity_rank",
)
CONTEXT_FEATURES = ("log_history", "genre_match", "age", "gender", "occupation", "release_year")
# Read from the online store beside the user's state (view:feature), with the multi-stage model's
# ``store_context`` on; offline the same build functions compute them from the interactions.
STORE_CONTEXT = {
    "user_mean_rating": "user_activity:user_mean_rating",
    "item_mean_rating": "item_stats:item_mean_rating",
}
FEATURES = (*SOURCE_FEATURES, *CONTEXT_FEATURES)
RECENT_FEATURES = tuple(f"recent_{w}" for w in RECENT_WINDOWS)
# With item content: the cosine to the user's history in content space, its rank, and its
# standardised value among the user's candidates.
CONTENT_FEATURES = (CONTENT, f"{CONTENT}_rank", f"{CONTENT}_z")
# A source's rank feature is exact among each user's best this many items (below: this rank);
# the two-tower's among the items its index returns (the model's ``n_two_tower``)
RANK_DEPTH = 4096
FEATURES_WITH_STORE = (*FEATURES, *STORE_CONTEXT)


def features(
    fits: Sequence[BatchScores],
    hidden: sp.csr_matrix,
    rows: np.ndarray,
    cols: np.ndarray,
    context: dict[str, np.ndarray],
    names: tuple[str, ...] = FEATURES,
) -> np.ndarray:
    """``(len(fits), len(rows), len(names))`` float32: the ranker's inputs for (user row,
    item) pairs under each fit's sources, computed on those pairs.

    Args:
        fits: each fit's view of the batch (:meth:`Sources.score_batch`).
        hidden: ``(U, n_items)`` the items out of every list (seen ones, when excluded): ranks
            are among the rest.
        rows, cols: the candidate pairs (user row in the batch, item position), user-major.
        context: the pair-level context features, one array each.
        names: the columns (:data:`FEATURES`, or :data:`FEATURES_WITH_STORE`; either with
            :data:`RECENT_FEATURES`, from the fits' scores).
    """
    out = np.full((len(fits), len(rows), len(names)), np.nan, dtype=np.float32)
    col = {name: j for j, name in enumerate(names)}
    whole = []  # (fit, column, scores): the item-item sources' ranks in one pass
    for f, fit in enumerate(fits):
        values = {}
        for name in (*ITEM_ITEM, CONTENT):
            if name in fit.dense and name in col:
                s = np.nan_to_num(fit.dense[name], nan=0.0)
                values[name] = s[rows, cols]
                whole.append((f, col[f"{name}_rank"], s))
        retrieved = {}  # the sources read from an index: (queries, item vectors, its top)
        if fit.content is not None and CONTENT in col:  # a large catalog's content source
            retrieved[CONTENT] = (fit.content[0], fit.sources.content, fit.content[1])
        if fit.z_u is not None:
            retrieved["two_tower"] = (fit.z_u, fit.sources.two_tower.item_embeddings, fit.top)
        for name, (queries, vectors, top) in retrieved.items():
            score = np.einsum("rd,rd->r", queries[rows], vectors[cols])
            values[name] = np.nan_to_num(score, nan=0.0)  # NaN: a user with no history
            depth = top[1].shape[1] if top is not None else 0
            out[f, :, col[f"{name}_rank"]] = _retrieved_rank(top, rows, cols, depth)
        for name, v in values.items():
            out[f, :, col[name]] = v
            if f"{name}_z" in col:
                out[f, :, col[f"{name}_z"]] = _within_candidates_z(v, rows, hidden.shape[0])
        for name in RECENT_FEATURES:  # NaN without an item-item source
            if name in col and name in fit.dense:
                out[f, :, col[name]] = fit.dense[name][rows, cols]
        popularity = fit.sources.popularity
        out[f, :, col["log_popularity"]] = np.log1p(popularity[cols])
        out[f, :, col["popularity_rank"]] = _popularity_rank(fit.sources, hidden, rows, cols)
    if whole:
        stacked = np.stack([s for _, _, s in whole])
        hr, hc = hidden.nonzero()
        stacked[:, hr, hc] = -np.inf
        for (f, j, _), rank in zip(whole, _rank_features(stacked, rows, cols), strict=True):
            out[f, :, j] = rank
    for name in names[len(SOURCE_FEATURES) :]:
        if name not in RECENT_FEATURES and name not in CONTENT_FEATURES:
            out[:, :, col[name]] = context[name]
    return out


def _rank_feature(rank: np.ndarray) -> np.ndarray:
    """1 / log2(rank + 2) (rank 0 the best): robust to scale."""
    return (1.0 / np.log2(rank + 2.0)).astype(np.float32)


def _rank_features(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(k, len(rows))``: the rank feature of the (row, col) items within their rows under
    each of ``k`` score matrices (``scores``: ``(k, U, n_items)``, hidden items at -inf). The
    rank is the number of the row's items scored strictly higher, so tied scores share the
    best rank of the tie and no order is invented among them.

    Ranks are exact down to :data:`RANK_DEPTH`; an item below a row's ``RANK_DEPTH`` best
    gets rank ``RANK_DEPTH`` (a feature of 0.09 or less). A catalog of at most that many items
    is ranked exactly; a larger one needs a partition of each row and a sort of its best, not
    a sort of the row (faster at 200k items). All ``k * U`` rows are sorted
    in one call; each row's candidates are then found by one binary search.
    """
    k, users, width = scores.shape
    depth = min(width, RANK_DEPTH)
    flat = scores.reshape(k * users, width)
    if depth < width:  # every item scored above the lowest of a row's best is among them
        flat = np.partition(flat, width - depth, axis=1)[:, width - depth :]
    ordered = np.sort(flat, axis=1).reshape(k, users, depth)  # ascending
    values = scores[:, rows, cols]  # (k, len(rows))
    rank = np.empty(values.shape, dtype=np.float64)
    bounds = np.searchsorted(rows, np.arange(users + 1))  # rows are user-major
    for r in np.flatnonzero(np.diff(bounds)):
        a, b = bounds[r], bounds[r + 1]
        for j in range(k):
            rank[j, a:b] = depth - ordered[j, r].searchsorted(values[j, a:b], side="right")
    if depth < width:
        rank[values < ordered[:, rows, 0]] = depth
    return _rank_feature(rank)


def _popularity_rank(
    sources: Sources, hidden: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The rank feature of each candidate's training count among the user's unhidden items,
    exact down to :data:`RANK_DEPTH` as :func:`_rank_features`, without a catalog-wide pass:
    the items counted strictly higher in the catalog, less the user's hidden ones among them."""
    codes, above = sources.popularity_codes
    distinct, mine = len(above), codes[cols]
    higher = above[mine]  # the catalog's items counted higher
    hr, hc = hidden.nonzero()
    keys = np.sort(hr.astype(np.int64) * distinct + codes[hc])
    lo = rows.astype(np.int64) * distinct + mine
    hidden_higher = np.searchsorted(keys, lo + (distinct - mine)) - np.searchsorted(
        keys, lo, side="right"
    )
    rank = np.minimum(higher - hidden_higher, RANK_DEPTH)
    return _rank_feature(rank.astype(np.float64))


def _retrieved_rank(
    top: tuple[np.ndarray, np.ndarray] | None, rows: np.ndarray, cols: np.ndarray, depth: int
) -> np.ndarray:
    """The rank feature of each candidate among the two-tower's retrieved items (``top``:
    best first; tied scores share the best rank of the tie); ``depth`` for a candidate the
    index did not return."""
    rank = np.full(len(rows), float(depth))
    if top is not None and len(rows):
        scores, ids = top
        width = max(int(cols.max()), int(ids.max())) + 1
        new = np.ones(ids.shape, dtype=bool)
        new[:, 1:] = scores[:, 1:] != scores[:, :-1]
        first = np.maximum.accumulate(np.where(new, np.arange(ids.shape[1]), 0), axis=1)
        r, j = np.nonzero(ids >= 0)
        keys = r.astype(np.int64) * width + ids[r, j]
        order = np.argsort(keys)
        keys, ranks = keys[order], first[r, j][order]
        wanted = rows.astype(np.int64) * width + cols
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        hit = keys[at] == wanted if len(keys) else np.zeros(len(rows), dtype=bool)
        rank[hit] = ranks[at[hit]]
    return _rank_feature(rank)


def _within_candidates_z(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Each candidate's score standardised over its user's candidates (``rows``: each value's
    user): what a user's list is made of."""
    n = np.maximum(np.bincount(rows, minlength=n_rows), 1)
    mean = np.bincount(rows, values, minlength=n_rows) / n
    var = np.bincount(rows, (values - mean[rows]) ** 2, minlength=n_rows) / n
    return ((values - mean[rows]) / (np.sqrt(var[rows]) + 1e-9)).astype(np.float32)
