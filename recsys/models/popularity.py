"""Most popular items: the floor every learned model must clear."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.base import Recommender


@dataclass
class PopularityConfig:
    """No hyper-parameters: items ranked by their number of training interactions."""


class Popularity(Recommender):
    """Scores every item by its training interaction count, the same for every user."""

    kind = "popularity"
    config_type = PopularityConfig

    def _fit(self, train: pd.DataFrame, x: sp.csr_matrix, users, items) -> None:
        pass  # the base class already counted item popularity

    def _score(self, user_ids: Sequence[str], x: sp.csr_matrix, history=None) -> np.ndarray:
        return np.broadcast_to(self.item_popularity, (len(user_ids), len(self.item_ids))).copy()

    def _save_parts(self, directory: Path) -> list[str]:
        return []

    def _load_parts(self, directory: Path) -> None:
        pass
