"""Most popular items: the floor every learned model must clear."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.base import Recommender, StateBatch


@dataclass
class PopularityConfig:
    """No hyper-parameters: items ranked by their number of training interactions."""


class Popularity(Recommender):
    """Scores every item by its training interaction count, the same for every user."""

    kind = "popularity"
    config_type = PopularityConfig
    unexplained = "popular"

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        pass  # the base class already counted item popularity

    def _score(self, batch: StateBatch) -> np.ndarray:
        shape = (len(batch.user_ids), len(self.item_ids))
        return np.broadcast_to(self.item_popularity, shape).astype(np.float64)

    def _save_parts(self, directory: Path) -> list[str]:
        return []

    def _load_parts(self, directory: Path) -> None:
        pass
