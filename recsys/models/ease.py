"""EASE: the closed-form item-item linear autoencoder (Steck, WWW 2019).

``B = argmin ||X - X B||² + λ||B||²  s.t. diag(B) = 0`` has the solution
``P = (XᵀX + λI)⁻¹``, ``B_ij = -P_ij / P_jj`` (i ≠ j). A user's scores are ``x_u B``: any user
with a history gets scores, including one the training data never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.models.base import Recommender, StateBatch, strongest_recent

WEIGHTS_FILE = "ease_B.npy"


@dataclass
class EASEConfig:
    """Hyper-parameters of EASE.

    Attributes:
        l2: the ridge penalty λ on B.
        max_items: refuse catalogs larger than this (B is a dense items × items matrix).
    """

    l2: float = 250.0
    max_items: int = 40_000


class EASE(Recommender):
    """Closed-form item-item model; strong for catalogs up to tens of thousands of items."""

    kind = "ease"
    config_type = EASEConfig

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        self.weights = ease_weights(x, self.config)

    def _score(self, batch: StateBatch) -> np.ndarray:
        x = batch.seen
        scores = np.asarray(x @ self.weights)  # (users, items)
        no_history = np.asarray(x.sum(axis=1)).ravel() == 0
        scores[no_history] = np.nan  # cold start: the recommendation path answers popularity
        return scores

    def explain(self, picks: np.ndarray, recent: np.ndarray) -> np.ndarray:
        """The recent item whose weight towards each pick is largest (its term of x·B)."""
        return strongest_recent(self.weights, picks, recent)

    def _save_parts(self, directory: Path) -> list[str]:
        np.save(directory / WEIGHTS_FILE, self.weights)
        return [WEIGHTS_FILE]

    def _load_parts(self, directory: Path) -> None:
        self.weights = np.ascontiguousarray(np.load(directory / WEIGHTS_FILE), dtype=np.float32)


def ease_weights(x: sp.csr_matrix, config: EASEConfig) -> np.ndarray:
    """The ``(items, items)`` B of a binary user × item matrix, C order (``x @ B`` copies
    nothing)."""
    n_items = x.shape[1]
    if n_items > config.max_items:
        raise RecsysError(
            f"ease: {n_items} items exceed max_items={config.max_items}; B would need "
            f"{n_items**2 * 4 / 2**30:.1f} GiB. Use a two-tower model for this catalog."
        )
    if config.l2 <= 0:
        raise RecsysError(f"ease: l2 must be positive, got {config.l2}")
    x = sp.csr_matrix(x, dtype=np.float64)
    x.data[:] = 1.0
    gram = (x.T @ x).toarray()  # (items, items)
    gram[np.diag_indices(n_items)] += config.l2
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)  # (items, items)
    b = p / (-np.diag(p))  # column j divided by -P_jj
    b[np.diag_indices(n_items)] = 0.0
    return np.ascontiguousarray(b, dtype=np.float32)
