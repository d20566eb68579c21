"""The multi-stage ranker's context features: the user's and the item's side (side-table codes,
genre match, release year, and with ``store_context`` the feature store's mean ratings)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, genre_membership, split_genres
from recsys.models.base import StateBatch, unit_rows
from recsys.models.encoding import FeatureEncoder


class ContextFeatures:
    """The context half of :class:`~recsys.models.multistage.MultiStageModel` (a mixin: it reads
    the model's item vocabulary, genres and config)."""

    def _context_tables(self, users: pd.DataFrame | None, items: pd.DataFrame | None) -> None:
        self.encoder = FeatureEncoder.fit(users, items)
        self.item_genre_matrix = genre_rows(self.item_genres, genre_membership(self.item_genres)[0])
        self.item_year = release_years(items, self.item_ids)

    def _context(
        self,
        batch: StateBatch,
        r: np.ndarray,
        c: np.ndarray,
        items: dict | None,
        codes: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """The context columns of the (user row, item) pairs ``r, c`` (``codes``: the users'
        side-table codes, when the caller has them already)."""
        seen = batch.seen
        profile = unit_rows(np.asarray(seen @ self.item_genre_matrix))  # (U, genres)
        if codes is None:
            codes = self.encoder.codes_of_users(np.asarray(batch.user_ids, dtype=object))
        return {
            "log_history": np.log1p(np.asarray(seen.sum(axis=1)).ravel())[r],
            "genre_match": np.einsum("rg,rg->r", profile[r], unit_rows(self.item_genre_matrix[c])),
            "age": codes[r, 0],
            "gender": codes[r, 1],
            "occupation": codes[r, 2],
            "release_year": self.item_year[c],
        } | self._store_context(batch, r, c, items)

    def _store_context(self, batch: StateBatch, r, c, items: dict | None) -> dict:
        """The feature store's user and item features the ranker reads (``store_context``)."""
        if not self.config.store_context:
            return {}
        if items is None:
            raise RecsysError(
                "multistage model: the items' context (item_stats) is missing: read it from the "
                "feature store, or compute it from the interactions"
            )
        users = _column(batch.features, "user_mean_rating", len(batch.user_ids))
        return {"user_mean_rating": users[r], "item_mean_rating": items["item_mean_rating"][c]}


def release_years(items: pd.DataFrame | None, item_ids: np.ndarray) -> np.ndarray:
    """``(len(item_ids),)`` float32: each item's release year from the items table (NaN
    where the table has none)."""
    year = pd.Series(np.nan, index=pd.Index(item_ids))
    if items is not None and "release_year" in items:
        side = items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)
        year = pd.to_numeric(side.set_index(ITEM)["release_year"], errors="coerce")
    return year.reindex(item_ids).to_numpy(dtype=np.float32)


def genre_rows(values: list[str], names: list[str]) -> np.ndarray:
    """``(len(values), max(len(names), 1))`` float32: each item's ``"a|b"`` genres over
    ``names`` (a genre not among them is left out: an item added after training)."""
    index = {g: j for j, g in enumerate(names)}
    out = np.zeros((len(values), max(len(names), 1)), dtype=np.float32)
    for row, value in enumerate(values):
        out[row, [index[g] for g in split_genres(value) if g in index]] = 1.0
    return out


def _column(features: dict[str, np.ndarray], name: str, n: int) -> np.ndarray:
    return features[name] if name in features else np.full(n, np.nan)
