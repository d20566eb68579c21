"""The multi-stage model's candidate sources: one fit of them, and what it reads for a batch.

A :class:`Sources` is one fit of the candidate generators on one set of interactions: EASE,
RP3beta, the training counts, and optionally a two-tower model (its ANN top-N). The model keeps
one fit per cross-fitting fold and one on all the data: the candidates a user is shown come
from the full fit, the features the ranker reads come from each fold's fit (as they did when
the ranker learned), and the ranker's scores are averaged over the folds.

EASE and RP3beta score the whole catalog by nature (a product with an items × items matrix);
the model fits them only for a catalog small enough (their ``max_items``) and says so. What
comes after retrieval works on the candidates (:mod:`.candidates`, :mod:`.ranker_inputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys.models.base import StateBatch, seen_lists, unit_rows
from recsys.models.content import content_scores, user_profiles
from recsys.models.ease import EASEConfig, ease_weights
from recsys.models.extend import with_new_items
from recsys.models.rp3beta import RP3betaConfig, walk_weights
from recsys.models.two_tower import TwoTower
from recsys.retrieval import ItemIndex

# What the user did last (the ranker that learns what a user does next reads them): the
# item-item weights (EASE's, else RP3beta's) from the user's latest 1, 5, 10 and 20 items.
RECENT_WINDOWS = (1, 5, 10, 20)
DENSE_ITEMS = 10_000  # RP3beta is kept dense in memory up to this catalog size
ITEM_ITEM = ("ease", "rp3")  # the sources that score the whole catalog
CONTENT = "content"  # the source of the items nearest the user's history in content space


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
        content: with a content index, the users' content profiles and their nearest items
            (without one, the content scores are in ``dense``).
    """

    sources: Sources
    dense: dict[str, np.ndarray] = field(default_factory=dict)
    z_u: np.ndarray | None = None
    top: tuple[np.ndarray, np.ndarray] | None = None
    # from the content index (a large catalog's): the users' ``(U, dim)`` content profiles
    # and their nearest unhidden items ``(scores, items)``, as ``top``
    content: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None


@dataclass
class Sources:
    """One fit of the candidate generators; a part is None when the model does not use it."""

    popularity: np.ndarray  # (n_items,) training counts
    ease: np.ndarray | None = None  # (n_items, n_items)
    rp3: sp.csr_matrix | None = None  # (n_items, n_items)
    two_tower: TwoTower | None = None  # a fitted TwoTower in the same vocabulary
    # (n_items, dim) unit content vectors: the model's, one array shared by every fit (the
    # model saves and loads it; a fit's interactions do not change an item's text), and the
    # index they are searched in above the model's content_exact_max_items
    content: np.ndarray | None = None
    content_index: ItemIndex | None = None

    @classmethod
    def fit(
        cls,
        x: sp.csr_matrix,
        ease: EASEConfig | None,
        rp3: RP3betaConfig | None,
        two_tower: object | None = None,
        content: np.ndarray | None = None,
        content_index: ItemIndex | None = None,
    ) -> Sources:
        """Fit on the binary ``(users, items)`` matrix ``x`` (the model's vocabulary)."""
        return cls(
            popularity=np.asarray(x.sum(axis=0), dtype=np.float64).ravel(),
            ease=ease_weights(x, ease) if ease is not None else None,
            rp3=walk_weights(x, rp3) if rp3 is not None else None,
            two_tower=two_tower,
            content=content,
            content_index=content_index,
        )

    def score_batch(
        self,
        batch: StateBatch,
        hidden: sp.csr_matrix,
        windows: Sequence[int] = (),
        depth: int = 0,
        content=None,
        content_depth: int = 0,
    ) -> BatchScores:
        """What this fit's candidates and features read for ``batch``: the item-item scores
        (:meth:`item_item_scores`), the content view (:meth:`content_view`; ``content``: the
        batch's, computed once for every fit that shares the vectors), and the two-tower's
        user embeddings and its best ``depth`` items not ``hidden`` (``(U, n_items)``
        binary: the seen items, when excluded) from its index."""
        out = BatchScores(self, self.item_item_scores(batch.seen, batch.recent, windows))
        if self.content is not None:
            view = content
            if view is None:
                view = self.content_view(batch, hidden, content_depth)
            if self.content_index is None:
                out.dense[CONTENT] = view
            else:
                out.content = view
        if self.two_tower is not None:
            out.z_u, _ = self.two_tower.embed_users(batch.user_ids, batch.recent)
            if depth > 0:
                out.top = self.two_tower.retrieve(out.z_u, depth, seen_lists(hidden))
        return out

    def content_view(self, batch: StateBatch, hidden: sp.csr_matrix, depth: int):
        """What the content source reads for ``batch``: without an index, the ``(U, n_items)``
        cosines to each user's history (:func:`content_scores`); with one, the users' unit
        profiles and their ``depth`` nearest items not ``hidden``, searched one user at a
        time (a user's answer must not depend on the batch it came in). A user with no
        history has a NaN profile and no nearest items."""
        if self.content_index is None:
            return content_scores(batch.seen, self.content)
        profiles = unit_rows(user_profiles(batch.seen, self.content).astype(np.float32))
        users, depth = len(profiles), max(depth, 1)
        scores = np.full((users, depth), -np.inf, dtype=np.float32)
        items = np.full((users, depth), -1, dtype=np.int64)
        hidden_lists = seen_lists(hidden)
        for u in np.flatnonzero(np.isfinite(profiles).all(axis=1)):
            found = self.content_index.search(profiles[u : u + 1], depth, [hidden_lists[u]])
            scores[u], items[u] = found[0][0], found[1][0]
        return profiles, (scores, items)

    def item_item_scores(
        self, seen: sp.csr_matrix, recent: np.ndarray, windows: Sequence[int] = ()
    ) -> dict[str, np.ndarray]:
        """EASE's and RP3beta's ``(U, n_items)`` scores for users with these states, float32
        as the sources compute them (none without those sources).

        ``windows``: also ``recent_{w}`` for each, the first item-item source's scores from
        the user's latest ``w`` items only (``recent``: codes, most recent first), computed
        in the same product as the full history's (rows stacked below the users')."""
        products = self._item_item()
        if not products:  # a large catalog's fit: no item-item source, nothing to stack
            return {}
        users = seen.shape[0]
        out = {}
        rows = sp.vstack([seen, *_window_rows(recent, windows, seen)]) if windows else seen
        for p, (names, weights) in enumerate(products):
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
        product reads each seen item's two rows at once (faster than two products), with
        EASE's weights a view of its left half (no second copy). RP3beta is dense for a
        catalog small enough (a dense product per request costs less than a sparse one there),
        else sparse, on its own."""
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

    def widened(self, fresh, content: np.ndarray | None, content_index=None) -> Sources:
        """This fit with the items of ``fresh`` (a table, in order) appended that it never
        saw: zero counts, zero item-item rows and columns, the model's ``content`` and its
        index, its two-tower's embeddings of them (new arrays; this fit is left as it was)."""
        n, rp3 = len(fresh), None
        if self.rp3 is not None:
            rp3 = self.rp3.copy()
            rp3.resize((rp3.shape[0] + n, rp3.shape[1] + n))
        return Sources(
            popularity=np.concatenate([self.popularity, np.zeros(n)]),
            ease=np.pad(self.ease, ((0, n), (0, n))) if self.ease is not None else None,
            rp3=rp3,
            two_tower=with_new_items(self.two_tower, fresh) if self.two_tower else None,
            content=content,
            content_index=content_index,
        )

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
