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
        max_items: refuse catalogs larger than this (the walk is a dense items × items product).
    """

    alpha: float = 1.0
    beta: float = 0.6
    top_k: int = 200
    max_items: int = 40_000


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
            f"rp3beta: {n_items} items exceed max_items={config.max_items}; the walk matrix "
            f"would need {n_items**2 * 4 / 2**30:.1f} GiB"
        )
    x = sp.csr_matrix(x, dtype=np.float64)
    x.data[:] = 1.0
    user_to_item = _row_normalised(x).power(config.alpha)  # (users, items) P(u → i)
    item_to_user = _row_normalised(x.T.tocsr()).power(config.alpha)  # (items, users) P(j → u)
    walk = (item_to_user @ user_to_item).toarray()  # (items, items) P(j → i)
    degree = np.asarray(x.sum(axis=0)).ravel()
    walk /= np.maximum(degree, 1.0)[None, :] ** config.beta  # discount popular targets
    np.fill_diagonal(walk, 0.0)
    k = min(config.top_k, n_items - 1)
    if 0 < k < n_items:
        drop = np.argpartition(-walk, k, axis=1)[:, k:]  # all but each row's k strongest
        np.put_along_axis(walk, drop, 0.0, axis=1)
    return sp.csr_matrix(walk.astype(np.float32))


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(sums, 1.0)) @ m
