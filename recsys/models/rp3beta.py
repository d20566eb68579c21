"""RP3beta: item-item random walks of three steps, popularity discounted (Paudel et al., 2017).

From item j a walk goes to a user who took j, then to another item i of that user:
``P(j → i) = Σ_u P(j → u) P(u → i)`` with each step's probability raised to ``alpha``; the
result is divided by ``popularity(i) ** beta`` so that a popular item does not win every walk,
and only each item's ``top_k`` strongest neighbours are kept (a sparse matrix). A user's scores
are ``x_u W``: like EASE, any user with a history can be scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.models.base import Recommender, StateBatch, strongest_recent

WEIGHTS_FILE = "rp3beta_W.npz"


@dataclass
class RP3betaConfig:
    """Hyper-parameters of RP3beta.

    Attributes:
        alpha: the exponent of each step's transition probability.
        beta: how strongly a target item's popularity is discounted.
        top_k: neighbours kept per item.
        max_items: refuse catalogs larger than this. The walk is computed a block of rows at
            a time (``block_cells`` dense cells, 128 MB in float32 by default) and only the
            ``top_k`` of each row are kept, so memory follows ``items × top_k``; the time
            follows the number of co-occurring pairs.
    """

    alpha: float = 1.0
    beta: float = 0.6
    top_k: int = 200
    max_items: int = 1_000_000
    block_cells: int = 1 << 25


class RP3beta(Recommender):
    """A graph-based item-item model: a second, differently biased view beside EASE."""

    kind = "rp3beta"
    config_type = RP3betaConfig

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        self.weights = walk_weights(x, self.config)

    def _score(self, batch: StateBatch) -> np.ndarray:
        x = batch.seen
        scores = np.asarray((x @ self.weights).todense(), dtype=np.float64)  # (users, items)
        scores[np.asarray(x.sum(axis=1)).ravel() == 0] = np.nan  # cold start: popularity
        return scores

    def explain(self, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """The recent item whose walk weight towards each pick is largest."""
        return strongest_recent(self.weights, picks, recent)

    def _save_parts(self, directory: Path) -> list[str]:
        sp.save_npz(directory / WEIGHTS_FILE, self.weights)
        return [WEIGHTS_FILE]

    def _load_parts(self, directory: Path) -> None:
        self.weights = sp.load_npz(directory / WEIGHTS_FILE).tocsr()


def walk_weights(x: sp.csr_matrix, config: RP3betaConfig) -> sp.csr_matrix:
    """The sparse ``(items, items)`` RP3beta matrix of a binary user × item matrix."""
    n_items = x.shape[1]
    if n_items > config.max_items:
        raise RecsysError(
            f"rp3beta: {n_items} items exceed max_items={config.max_items} (raise it: the "
            f"walk keeps {config.top_k} neighbours per item, computed a block at a time)"
        )
    x = sp.csr_matrix(x, dtype=np.float64)
    x.data[:] = 1.0
    user_to_item = _row_normalised(x).power(config.alpha)  # (users, items) P(u → i)
    item_to_user = _row_normalised(x.T.tocsr()).power(config.alpha)  # (items, users) P(j → u)
    degree = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0) ** config.beta
    k = min(config.top_k, n_items - 1)
    rows = max(1, config.block_cells // max(n_items, 1))
    blocks = []
    for start in range(0, n_items, rows):  # never the whole (items, items) walk at once
        walk = (item_to_user[start : start + rows] @ user_to_item).toarray()  # P(j → i)
        walk /= degree[None, :]  # discount popular targets
        own = np.arange(len(walk))
        walk[own, own + start] = 0.0  # no walk back to the item itself
        if 0 < k < n_items:
            drop = np.argpartition(-walk, k, axis=1)[:, k:]  # all but each row's k strongest
            np.put_along_axis(walk, drop, 0.0, axis=1)
        blocks.append(sp.csr_matrix(walk.astype(np.float32)))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, 0), dtype=np.float32)


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(sums, 1.0)) @ m
