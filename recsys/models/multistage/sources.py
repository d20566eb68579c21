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

from collections.abc import Sequence
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
# What the user did last (the ranker that learns what a user does next reads them): the
# item-item weights (EASE's, else RP3beta's) from the user's latest 1, 5, 10 and 20 items.
RECENT_WINDOWS = (1, 5, 10, 20)
RECENT_FEATURES = tuple(f"recent_{w}" for w in RECENT_WINDOWS)
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

    def scores(
        self, seen: sp.csr_matrix, recent: np.ndarray, user_ids, windows: Sequence[int] = ()
    ) -> dict[str, np.ndarray]:
        """Each source's ``(U, n_items)`` scores for users with these states: float32 as the
        sources compute them (a float64 copy would hold the same values), and the training
        counts as a float64 view of one row (every user's popularity is the same).

        ``windows``: also ``recent_{w}`` for each, the first item-item source's scores from
        the user's latest ``w`` items only (``recent``: codes, most recent first), computed
        in the same product as the full history's (rows stacked below the users')."""
        users = seen.shape[0]
        out = {"popularity": np.broadcast_to(self.popularity, seen.shape)}
        rows = sp.vstack([seen, *_window_rows(recent, windows, seen)]) if windows else seen
        for p, (names, weights) in enumerate(self._item_item()):
            product = _row_sums(rows if p == 0 else seen, weights)  # the windows: first only
            width = product.shape[1] // len(names)
            out |= {
                name: product[:users, j * width : (j + 1) * width] for j, name in enumerate(names)
            }
            if p == 0:  # EASE, else RP3beta: the first source's block of the window rows
                out |= {
                    f"recent_{w}": product[users * (k + 1) : users * (k + 2), :width]
                    for k, w in enumerate(windows)
                }
        if self.two_tower is not None:
            z_u, _ = self.two_tower.embed_users(user_ids, recent)  # (U, dim)
            out["two_tower"] = z_u @ self.two_tower.item_embeddings.T
        return out

    def _item_item(self) -> list[tuple[tuple[str, ...], object]]:
        """The item-item sources as the products that score them: ``(names, weights)``, the
        weights of the names side by side. Built on first use (a replica warms it as it loads
        a version). EASE and RP3beta dense in one ``(n_items, 2 * n_items)`` matrix, so one
        product reads each seen item's two rows at once (MovieLens, 8 users, 6 fits: 3.4
        against 3.9 ms), with EASE's weights a view of its left half (no second copy). RP3beta
        is dense for a catalog small enough (a dense product per request costs less than a
        sparse one there), else sparse, on its own."""
        if not hasattr(self, "_products"):
            dense_rp3 = self.rp3 is not None and self.rp3.shape[0] <= DENSE_ITEMS
            if self.ease is not None and dense_rp3:
                joint = np.concatenate([self.ease, self.rp3.toarray()], axis=1)
                self.ease = joint[:, : self.ease.shape[1]]
                self._products = [(("ease", "rp3"), joint)]
            else:
                self._products = []
                if self.ease is not None:
                    self._products.append((("ease",), self.ease))
                if self.rp3 is not None:
                    self._products.append((("rp3",), self.rp3.toarray() if dense_rp3 else self.rp3))
        return self._products

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
    """``seen @ weights`` as a dense ``(U, n_items)`` array (float32 for float32 weights)."""
    product = seen @ weights
    return product.toarray() if sp.issparse(product) else np.asarray(product)


def _window_rows(recent: np.ndarray, windows: Sequence[int], seen: sp.csr_matrix):
    """Per window ``w``: a ``(U, n_items)`` 0/1 matrix of each user's latest ``w`` items
    (``recent``: codes = position + 1, most recent first, 0 padding)."""
    for w in windows:
        part = recent[:, :w]
        r, j = np.nonzero(part)
        rows = sp.csr_matrix(
            (np.ones(len(r), dtype=seen.dtype), (r, part[r, j] - 1)), shape=seen.shape
        )
        rows.sum_duplicates()
        rows.data[:] = 1  # an item the user met twice counts once, as in ``seen``
        yield rows


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
        # float64, as the candidates were always chosen: a partition picks among tied
        # scores by its own algorithm, which may differ between dtypes
        s = np.where(hide, -np.inf, np.asarray(scores[name], dtype=np.float64))
        informative = (np.abs(np.nan_to_num(scores[name])) > 0).any(axis=1, keepdims=True)
        cand |= _top_mask(s, n) & informative
    return cand & ~hide


def features(
    fits: Sequence[dict[str, np.ndarray]],
    hide: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    context: dict[str, np.ndarray],
    names: tuple[str, ...] = FEATURES,
) -> np.ndarray:
    """``(len(fits), len(rows), len(names))`` float32: the ranker's inputs for (user row,
    item) pairs under each fit's sources.

    Args:
        fits: each fit's source scores (:meth:`Sources.scores`), ``(U, n_items)`` each.
        hide: ``(U, n_items)`` the items out of every list (seen ones, when excluded): ranks
            are among the rest.
        rows, cols: the candidate pairs (user row in the batch, item position), user-major.
        context: the pair-level context features, one array each.
        names: the columns (:data:`FEATURES`, or :data:`FEATURES_WITH_STORE`; either with
            :data:`RECENT_FEATURES`, from the fits' scores).
    """
    out = np.full((len(fits), len(rows), len(names)), np.nan, dtype=np.float32)
    col = {name: j for j, name in enumerate(names)}
    ranked = []  # (fit, column, scores): every fit's rank features in one pass
    for f, scores in enumerate(fits):
        for name in ("ease", "rp3", "two_tower"):
            if name not in scores:
                continue
            s = np.nan_to_num(scores[name], nan=0.0)
            values = s[rows, cols]
            out[f, :, col[name]] = values
            if f"{name}_z" in col:
                out[f, :, col[f"{name}_z"]] = _within_candidates_z(values, rows, s.shape[0])
            ranked.append((f, col[f"{name}_rank"], s))
        for name in RECENT_FEATURES:  # NaN without an item-item source
            if name in col and name in scores:
                out[f, :, col[name]] = scores[name][rows, cols]
        popularity = scores["popularity"]
        out[f, :, col["log_popularity"]] = np.log1p(popularity[rows, cols])
        ranked.append((f, col["popularity_rank"], popularity))
    # the sources score in float32; counts below 2**24 are exact in it too, so the ranks are
    # the float64 ones
    exact = all(np.max(s["popularity"][:1], initial=0) < 2**24 for s in fits)  # one row each
    stacked = np.empty((len(ranked), *hide.shape), dtype=np.float32 if exact else np.float64)
    for n, (_, _, s) in enumerate(ranked):
        stacked[n] = s
    stacked[:, hide] = -np.inf
    for (f, j, _), rank in zip(ranked, _rank_features(stacked, rows, cols), strict=True):
        out[f, :, j] = rank
    for name in names[len(SOURCE_FEATURES) :]:
        if name not in RECENT_FEATURES:
            out[:, :, col[name]] = context[name]
    return out


def _top_mask(scores: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's ``n`` highest finite scores."""
    n = min(n, scores.shape[1])
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask & np.isfinite(scores)


def _rank_features(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(k, len(rows))``: 1 / log2(rank + 2) of the (row, col) items within their rows under
    each of ``k`` score matrices (``scores``: ``(k, U, n_items)``, hidden items at -inf; rank 0
    the best): robust to scale. The rank is the number of the row's items scored strictly
    higher, so tied scores share the best rank of the tie and no order is invented among them.

    Ranks are exact down to :data:`RANK_DEPTH`; an item below a row's ``RANK_DEPTH`` best
    gets rank ``RANK_DEPTH`` (a feature of 0.09 or less). A catalog of at most that many items
    is ranked exactly; a larger one needs a partition of each row and a sort of its best, not
    a sort of the row (200k items: 0.46 against 1.26 ms a row). All ``k * U`` rows are sorted
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
    return (1.0 / np.log2(rank + 2.0)).astype(np.float32)


def _within_candidates_z(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Each candidate's score standardised over its user's candidates (``rows``: each value's
    user): what a user's list is made of."""
    n = np.maximum(np.bincount(rows, minlength=n_rows), 1)
    mean = np.bincount(rows, values, minlength=n_rows) / n
    var = np.bincount(rows, (values - mean[rows]) ** 2, minlength=n_rows) / n
    return ((values - mean[rows]) / (np.sqrt(var[rows]) + 1e-9)).astype(np.float32)
