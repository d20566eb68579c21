"""The multi-stage model's candidate sources and the ranker's features.

A :class:`Sources` is one fit of the candidate generators on one set of interactions: EASE,
RP3beta, the training counts, and optionally a two-tower model (its ANN top-N). The model keeps
one fit per cross-fitting fold and one on all the data: the candidates a user is shown come
from the full fit, the features the ranker reads come from each fold's fit (as they did when
the ranker learned), and the ranker's scores are averaged over the folds.

After retrieval everything works on the candidates, never on a (users × catalog) matrix: the
two-tower's candidates come from its item index and its features from the candidates' own
vectors, the popular items and their ranks from the catalog's order computed once per fit.
EASE and RP3beta score the whole catalog by nature (a product with an items × items matrix);
the model fits them only for a catalog small enough (their ``max_items``) and says so.

Every feature is scale-free or comes from the user's state and the catalog, never from the
request's answer: the same function computes it for the ranker's training rows and for a
request (:func:`features`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.base import StateBatch, seen_lists
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
# A source's rank feature is exact among each user's best this many items (below: this rank);
# the two-tower's among the items its index returns (the model's ``n_two_tower``)
RANK_DEPTH = 4096
FEATURES_WITH_STORE = (*FEATURES, *STORE_CONTEXT)
ITEM_ITEM = ("ease", "rp3")  # the sources that score the whole catalog


@dataclass
class BatchScores:
    """One fit's view of a batch of users: what its candidates and its features read.

    Attributes:
        sources: the fit.
        dense: the item-item sources' ``(U, n_items)`` scores and the recent windows' (only a
            catalog small enough for EASE or RP3beta has them).
        z_u: the two-tower's ``(U, dim)`` user embeddings (None without the source).
        top: the two-tower's ``(scores, items)``, ``(U, depth)`` each, best first: each user's
            unhidden items from the index (items ``-1`` where fewer were left).
    """

    sources: Sources
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    z_u: np.ndarray | None = None
    top: tuple[np.ndarray, np.ndarray] | None = None


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

    def score_batch(
        self,
        batch: StateBatch,
        hidden: sp.csr_matrix,
        windows: Sequence[int] = (),
        depth: int = 0,
    ) -> BatchScores:
        """What this fit's candidates and features read for ``batch``: the item-item scores
        (:meth:`item_item_scores`), and the two-tower's user embeddings and its best
        ``depth`` items not ``hidden`` (``(U, n_items)`` binary: the seen items, when
        excluded) from its index."""
        out = BatchScores(self, self.item_item_scores(batch.seen, batch.recent, windows))
        if self.two_tower is not None:
            out.z_u, _ = self.two_tower.embed_users(batch.user_ids, batch.recent)
            if depth > 0:
                out.top = self.two_tower.retrieve(out.z_u, depth, seen_lists(hidden))
        return out

    def item_item_scores(
        self, seen: sp.csr_matrix, recent: np.ndarray, windows: Sequence[int] = ()
    ) -> dict[str, np.ndarray]:
        """EASE's and RP3beta's ``(U, n_items)`` scores for users with these states, float32
        as the sources compute them (none without those sources).

        ``windows``: also ``recent_{w}`` for each, the first item-item source's scores from
        the user's latest ``w`` items only (``recent``: codes, most recent first), computed
        in the same product as the full history's (rows stacked below the users')."""
        users = seen.shape[0]
        out = {}
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

    @cached_property
    def popular_order(self) -> np.ndarray:
        """The catalog by training count, most first (ties: vocabulary order)."""
        return np.argsort(-self.popularity, kind="stable")

    @cached_property
    def popularity_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Each item's training count as its position among the distinct counts (ascending),
        and per position the number of items counted higher: a rank is a comparison of codes."""
        _, codes = np.unique(self.popularity, return_inverse=True)
        codes = codes.ravel()
        at_or_above = np.bincount(codes)[::-1].cumsum()[::-1]
        return codes, np.append(at_or_above[1:], 0)

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


# -- candidates ----------------------------------------------------------------------------
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
            ids = scores.top[1][:, :n]
            r, j = np.nonzero(ids >= 0)
            out[name] = (r, ids[r, j])
    return out


def candidate_pairs(
    scores: BatchScores, hidden: sp.csr_matrix, counts: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The union of the sources' tops (:func:`source_tops`): (user rows, items), user-major
    and items ascending within a user."""
    width = hidden.shape[1]
    keys = [r.astype(np.int64) * width + c for r, c in source_tops(scores, hidden, counts).values()]
    keys = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    return keys // width, keys % width


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


# -- features ------------------------------------------------------------------------------
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
        for name in ITEM_ITEM:
            if name in fit.dense:
                s = np.nan_to_num(fit.dense[name], nan=0.0)
                values[name] = s[rows, cols]
                whole.append((f, col[f"{name}_rank"], s))
        if fit.z_u is not None:
            vectors = fit.sources.two_tower.item_embeddings
            values["two_tower"] = np.einsum("rd,rd->r", fit.z_u[rows], vectors[cols])
            depth = fit.top[1].shape[1] if fit.top is not None else 0
            out[f, :, col["two_tower_rank"]] = _retrieved_rank(fit.top, rows, cols, depth)
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
        if name not in RECENT_FEATURES:
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
