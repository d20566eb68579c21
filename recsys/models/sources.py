"""The multi-stage model's candidate sources and the ranker's features.

A :class:`Sources` is one fit of the candidate generators on one set of interactions: EASE,
RP3beta, the training counts, and optionally a two-tower model (its ANN top-N). The model keeps
one fit per cross-fitting fold and one on all the data: the candidates a user is shown come
from the full fit, the features the ranker reads come from each fold's fit (as they did when
the ranker learned), and the ranker's scores are averaged over the folds.

Every feature is scale-free or comes from the user's state and the catalog, never from the
request's answer: the same function computes it for the ranker's training rows and for a
request (:func:`features`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.ease import EASEConfig, ease_weights
from recsys.models.rp3beta import RP3betaConfig, walk_weights
from recsys.models.two_tower import TwoTower

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
DENSE_ITEMS = 10_000  # RP3beta is kept dense in memory up to this catalog size
# A source's rank feature is exact among each user's best this many items (below: this rank)
RANK_DEPTH = 4096
FEATURES_WITH_STORE = (*FEATURES, *STORE_CONTEXT)


@dataclass
class Sources:
    """One fit of the candidate generators; a part is None when the model does not use it."""

    popularity: np.ndarray  # (n_items,) training counts
    ease: np.ndarray | None = None  # (n_items, n_items)
    rp3: sp.csr_matrix | None = None  # (n_items, n_items)
    two_tower: TwoTower | None = None  # a fitted TwoTower in the same vocabulary

    @classmethod
    def fit(
        cls,
        x: sp.csr_matrix,
        ease: EASEConfig | None,
        rp3: RP3betaConfig | None,
        two_tower: object | None = None,
    ) -> Sources:
        """Fit on the binary ``(users, items)`` matrix ``x`` (the model's vocabulary)."""
        return cls(
            popularity=np.asarray(x.sum(axis=0), dtype=np.float64).ravel(),
            ease=ease_weights(x, ease) if ease is not None else None,
            rp3=walk_weights(x, rp3) if rp3 is not None else None,
            two_tower=two_tower,
        )

    def scores(self, seen: sp.csr_matrix, recent: np.ndarray, user_ids) -> dict[str, np.ndarray]:
        """Each source's ``(U, n_items)`` scores for users with these states."""
        out = {"popularity": np.broadcast_to(self.popularity, seen.shape).astype(np.float64)}
        if self.ease is not None:
            out["ease"] = _row_sums(seen, self.ease)
        if self.rp3 is not None:
            out["rp3"] = _row_sums(seen, self._dense_rp3())
        if self.two_tower is not None:
            z_u, _ = self.two_tower.embed_users(user_ids, recent)  # (U, dim)
            out["two_tower"] = (z_u @ self.two_tower.item_embeddings.T).astype(np.float64)
        return out

    def _dense_rp3(self):
        """RP3beta's matrix, dense for a catalog small enough (one dense product per request
        costs less than a sparse one), else as stored."""
        if not hasattr(self, "_rp3_dense"):
            small = self.rp3.shape[0] <= DENSE_ITEMS
            self._rp3_dense = self.rp3.toarray() if small else self.rp3
        return self._rp3_dense

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        directory.mkdir(parents=True, exist_ok=True)
        parts = ["popularity.npy"]
        np.save(directory / "popularity.npy", self.popularity)
        if self.ease is not None:
            np.save(directory / "ease_B.npy", self.ease)
            parts.append("ease_B.npy")
        if self.rp3 is not None:
            sp.save_npz(directory / "rp3beta_W.npz", self.rp3)
            parts.append("rp3beta_W.npz")
        if self.two_tower is not None:
            self.two_tower.save(directory / "two_tower")
            parts.append("two_tower")
        return [f"{directory.name}/{p}" for p in parts]

    @classmethod
    def load(cls, directory: Path) -> Sources:
        ease, rp3 = directory / "ease_B.npy", directory / "rp3beta_W.npz"
        tower = directory / "two_tower"
        return cls(
            popularity=np.load(directory / "popularity.npy"),
            ease=np.ascontiguousarray(np.load(ease)) if ease.exists() else None,
            rp3=sp.load_npz(rp3).tocsr() if rp3.exists() else None,
            two_tower=TwoTower.load(tower) if tower.exists() else None,
        )


def _row_sums(seen: sp.csr_matrix, weights) -> np.ndarray:
    """``seen @ weights`` as a dense ``(U, n_items)`` float64."""
    product = seen @ weights
    return np.asarray(product.todense() if sp.issparse(product) else product, dtype=np.float64)


def candidate_mask(
    scores: dict[str, np.ndarray], hide: np.ndarray, counts: dict[str, int]
) -> np.ndarray:
    """``(U, n_items)``: the union of each source's top ``counts[source]`` items not hidden.

    A source that scores a user all zeros or not at all (EASE without a history) adds none.
    """
    cand = np.zeros(hide.shape, dtype=bool)
    for name, n in counts.items():
        if n <= 0 or name not in scores:
            continue
        s = np.where(hide, -np.inf, scores[name])
        informative = (np.abs(np.nan_to_num(scores[name])) > 0).any(axis=1, keepdims=True)
        cand |= _top_mask(s, n) & informative
    return cand & ~hide


def features(
    scores: dict[str, np.ndarray],
    hide: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    context: dict[str, np.ndarray],
    names: tuple[str, ...] = FEATURES,
) -> np.ndarray:
    """``(len(rows), len(names))`` float32: the ranker's inputs for (user row, item) pairs.

    Args:
        scores: one fit's source scores, ``(U, n_items)`` each.
        hide: ``(U, n_items)`` the items out of every list (seen ones, when excluded): ranks
            are among the rest.
        rows, cols: the candidate pairs (user row in the batch, item position).
        context: the pair-level context features, one array each.
        names: the columns (:data:`FEATURES`, or :data:`FEATURES_WITH_STORE`).
    """
    out = np.full((len(rows), len(names)), np.nan, dtype=np.float32)
    col = {name: j for j, name in enumerate(names)}
    for name in ("ease", "rp3", "two_tower"):
        if name not in scores:
            continue
        s = np.nan_to_num(scores[name], nan=0.0)
        values = s[rows, cols]
        out[:, col[name]] = values
        out[:, col[f"{name}_rank"]] = _rank_feature(np.where(hide, -np.inf, s), rows, cols)
        if f"{name}_z" in col:
            out[:, col[f"{name}_z"]] = _within_candidates_z(values, rows, s.shape[0])
    popularity = scores["popularity"]
    out[:, col["log_popularity"]] = np.log1p(popularity[rows, cols])
    out[:, col["popularity_rank"]] = _rank_feature(np.where(hide, -np.inf, popularity), rows, cols)
    for name in names[len(SOURCE_FEATURES) :]:
        out[:, col[name]] = context[name]
    return out


def _top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's ``n`` highest finite scores."""
    n = min(n, scores.shape[1])
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask & np.isfinite(scores)


def _rank_feature(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """1 / log2(rank + 2) of the (row, col) items within their rows, rank 0 the best: robust
    to scale. The rank is the number of the row's items scored strictly higher, so tied
    scores share the best rank of the tie and no order is invented among them.

    Ranks are exact down to :data:`RANK_DEPTH`; an item below a row's ``RANK_DEPTH`` best
    gets rank ``RANK_DEPTH`` (a feature of 0.09 or less). A catalog of at most that many items
    is ranked exactly; a larger one needs a partition of each row and a sort of its best, not
    a sort of the row (200k items: 0.46 against 1.26 ms a row, per source and request).
    """
    rank = np.empty(len(rows), dtype=np.float64)
    width = scores.shape[1]
    depth = min(width, RANK_DEPTH)
    bounds = np.searchsorted(rows, np.arange(scores.shape[0] + 1))  # rows are user-major
    for r in np.flatnonzero(np.diff(bounds)):
        a, b = bounds[r], bounds[r + 1]
        row = scores[r]
        # ascending: the row itself, or its ``depth`` best (every item scored above the
        # lowest of them is among them, so a value at or above it is ranked exactly)
        best = row if depth == width else np.partition(row, width - depth)[width - depth :]
        ordered, values = np.sort(best), row[cols[a:b]]
        rank[a:b] = depth - np.searchsorted(ordered, values, side="right")
        if depth < width:
            rank[a:b][values < ordered[0]] = depth
    return (1.0 / np.log2(rank + 2.0)).astype(np.float32)


def _within_candidates_z(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Each candidate's score standardised over its user's candidates (``rows``: each value's
    user): what a user's list is made of."""
    n = np.maximum(np.bincount(rows, minlength=n_rows), 1)
    mean = np.bincount(rows, values, minlength=n_rows) / n
    var = np.bincount(rows, (values - mean[rows]) ** 2, minlength=n_rows) / n
    return ((values - mean[rows]) / (np.sqrt(var[rows]) + 1e-9)).astype(np.float32)
