"""The multi-stage model's candidates: each source's top items not hidden, and their union.

The two-tower's come from its item index (and a large catalog's content source from its
content index), the popular items from the head of the catalog's order computed once per fit;
only the item-item sources and a small catalog's content source are read from a
``(users × catalog)`` score matrix.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.models.multistage.sources import CONTENT, BatchScores, Sources


def source_tops(
    scores: BatchScores, hidden: sp.csr_matrix, counts: dict[str, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each source's top ``counts[source]`` items not ``hidden``, as (user rows, items).

    A source that scores a user all zeros or not at all (EASE without a history) adds none.
    """
    out = {}
    for name, n in counts.items():
        if n <= 0:
            continue
        if name in scores.dense:
            out[name] = _dense_top(scores.dense[name], hidden, n)
        elif name == "popularity":
            out[name] = _popular_top(scores.sources, hidden, n)
        elif name == "two_tower" and scores.top is not None:
            out[name] = _retrieved_top(scores.top, n)
        elif name == CONTENT and scores.content is not None:
            out[name] = _retrieved_top(scores.content[1], n)
    return out


def _retrieved_top(top: tuple[np.ndarray, np.ndarray], n: int):
    """The first ``n`` items an index returned per user (``-1``: none left)."""
    ids = top[1][:, :n]
    r, j = np.nonzero(ids >= 0)
    return r, ids[r, j]


def candidate_pairs(
    scores: BatchScores, hidden: sp.csr_matrix, counts: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The union of the sources' tops (:func:`source_tops`): (user rows, items), user-major
    and items ascending within a user."""
    width = hidden.shape[1]
    keys = [r.astype(np.int64) * width + c for r, c in source_tops(scores, hidden, counts).values()]
    keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    return keys // width, keys % width


def listed_pairs(only: np.ndarray, hidden: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Every user paired with every listed item (``only``, sorted positions) not hidden:
    (user rows, items), user-major and items ascending within a user."""
    users = hidden.shape[0]
    r = np.repeat(np.arange(users, dtype=np.int64), len(only))
    c = np.tile(np.asarray(only, dtype=np.int64), users)
    width = hidden.shape[1]
    hr, hc = hidden.nonzero()
    keep = ~np.isin(r * width + c, hr.astype(np.int64) * width + hc)
    return r[keep], c[keep]


def _dense_top(scores: np.ndarray, hidden: sp.csr_matrix, n: int):
    """A whole-catalog source's top ``n`` (a small catalog's: see the module). float64, as
    the candidates were always chosen: a partition picks among tied scores by its own
    algorithm, which may differ between dtypes."""
    s = np.array(scores, dtype=np.float64)
    informative = (np.abs(np.nan_to_num(scores)) > 0).any(axis=1)
    s[hidden.nonzero()] = -np.inf
    n = min(n, s.shape[1])
    idx = np.argpartition(-s, n - 1, axis=1)[:, :n]
    keep = np.isfinite(np.take_along_axis(s, idx, axis=1)) & informative[:, None]
    r, j = np.nonzero(keep)
    return r, idx[r, j]


def _popular_top(sources: Sources, hidden: sp.csr_matrix, n: int):
    """The ``n`` most popular items not hidden, per user (ties: vocabulary order): the head
    of the catalog's order, as long as the longest hidden set allows to skip."""
    users = hidden.shape[0]
    if not len(sources.popular_order) or sources.popularity[sources.popular_order[0]] <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    longest = int(np.diff(hidden.indptr).max(initial=0))
    head = sources.popular_order[: n + longest]  # (m,)
    taken = np.zeros((users, len(head)), dtype=bool)
    hr, hc = hidden.nonzero()
    sorter = np.argsort(head)
    at = np.minimum(np.searchsorted(head, hc, sorter=sorter), len(head) - 1)
    found = head[sorter[at]] == hc
    taken[hr[found], sorter[at[found]]] = True
    keep = ~taken & (np.cumsum(~taken, axis=1) <= n)
    r, j = np.nonzero(keep)
    return r, head[j]
