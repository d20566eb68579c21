"""Models of item content alone, the baselines an item without interactions is judged by
(``recsys data split --protocol cold-items``): content kNN (an item's content vector against
the user's history's) and genre affinity (the user's genre shares). Both recommend every item
of the catalog, cold ones included, from the moment its text is known."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.content import encode_items, has_text, item_text, load_encoder, make_encoder
from recsys.data.io import ITEM, genre_membership
from recsys.models.base import Recommender, StateBatch, unit_rows
from recsys.models.vocabulary import catalog_vocabulary

VECTORS_FILE = "content_vectors.npy"
ENCODER_DIR = "content_encoder"
# The latest catalog's content: its key (encoder, width, texts) -> (vectors, fitted encoder).
_ENCODED: dict[str, tuple[np.ndarray, object]] = {}


@dataclass
class ContentConfig:
    """The content encoder (``tfidf-svd``, or ``sentence-transformers:<name or path>``) and
    the width ``tfidf-svd`` asks for."""

    encoder: str = "tfidf-svd"
    dim: int = 64


@dataclass
class GenreConfig:
    """No hyper-parameters: an item scores the user's shares of its genres, summed."""


def user_profiles(seen: sp.csr_matrix, item_rows: np.ndarray) -> np.ndarray:
    """Each user's mean over its history of ``item_rows`` (rows of no history: NaN)."""
    counts = np.asarray(seen.sum(axis=1)).ravel()
    profile = np.asarray(seen @ item_rows, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return profile / counts[:, None]


def content_scores(seen: sp.csr_matrix, vectors: np.ndarray) -> np.ndarray:
    """``(U, n_items)`` float32: the cosine between each item's content vector and the mean
    of the user's history's (rows of users with no history: NaN). One product per user: a
    matrix product's rounding depends on how many rows it is given, and a user's scores must
    not depend on the batch it came in (a ranker's split can fall between the two)."""
    profiles = unit_rows(user_profiles(seen, vectors).astype(np.float32))
    out = np.empty((len(profiles), len(vectors)), dtype=np.float32)
    for u, profile in enumerate(profiles):
        out[u] = vectors @ profile
    return out


def catalog_content(items: pd.DataFrame | None, item_ids: np.ndarray, encoder: str, dim: int):
    """The content vectors of a model's vocabulary (``(n_items, dim)`` float32, unit rows; an
    item the table lacks: a zero row, read-only) and the fitted encoder (for items added later).
    The latest catalog's are kept: a multi-stage model and its two-towers (one per fold) encode
    the same catalog, and the encoder gives the same vectors for the same texts and seed.

    Raises:
        RecsysError: the items table has no text to encode.
    """
    if not has_text(items):
        raise RecsysError(
            "content: the items table has no text (a title, genres or description column) to encode"
        )
    aligned = items.astype({ITEM: str}).drop_duplicates(ITEM).set_index(ITEM)
    aligned = aligned.reindex(item_ids).rename_axis(ITEM).reset_index()
    texts = "\0".join(item_text(aligned)).encode()
    key = hashlib.blake2b(f"{encoder}\0{dim}\0".encode() + texts, digest_size=16).hexdigest()
    if key not in _ENCODED:
        _ENCODED.clear()
        fitted = make_encoder(encoder, dim=dim)
        vectors = encode_items(aligned, fitted)
        vectors.flags.writeable = False  # shared by every model of this catalog
        _ENCODED[key] = vectors, fitted
    return _ENCODED[key]


def configured_content(
    items: pd.DataFrame | None, item_ids: np.ndarray, setting: str, dim: int
) -> tuple[np.ndarray | None, object]:
    """A model's ``content`` setting read: ``off`` or ``auto`` without text in the items
    table → ``(None, None)``; ``auto`` → the built-in encoder's :func:`catalog_content`; an
    encoder spec → that encoder's (the table must have text)."""
    if setting == "off" or (setting == "auto" and not has_text(items)):
        return None, None
    spec = ContentConfig.encoder if setting == "auto" else setting
    return catalog_content(items, item_ids, spec, dim)


class ContentKNN(Recommender):
    """Cosine between each item's content vector and the mean of the user's history's."""

    kind = "content"
    config_type = ContentConfig
    unexplained = "similar to what you watched"
    takes_new_items = True

    def __init__(self, config: ContentConfig | None = None) -> None:
        super().__init__(config)
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.encoder = None

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    def _fit(self, train, x, users, items) -> None:
        cfg = self.config
        self.vectors, self.encoder = catalog_content(items, self.item_ids, cfg.encoder, cfg.dim)

    def _score(self, batch: StateBatch) -> np.ndarray:
        return content_scores(batch.seen, self.vectors).astype(np.float64)  # NaN: no history

    def item_vectors(self) -> np.ndarray | None:
        return self.vectors

    def _add_items(self, fresh: pd.DataFrame) -> None:
        self.vectors = np.vstack([self.vectors, encode_items(fresh, self.encoder)])

    def _save_parts(self, directory: Path) -> list[str]:
        np.save(directory / VECTORS_FILE, self.vectors)
        self.encoder.save(directory / ENCODER_DIR)
        return [VECTORS_FILE, ENCODER_DIR]

    def _load_parts(self, directory: Path) -> None:
        self.vectors = np.load(directory / VECTORS_FILE)
        self.encoder = load_encoder(directory / ENCODER_DIR)


class GenreAffinity(Recommender):
    """An item's score: the sum, over its genres, of the share of the user's history in that
    genre (the dot product of the two genre profiles; on MovieLens-100k's cold items the
    mean over the item's genres ranked worse than random, and the cosine worse than the sum:
    ``benchmarks/cold_items.py``)."""

    kind = "genre"
    config_type = GenreConfig
    unexplained = "in genres you watch"
    takes_new_items = True

    def _item_vocabulary(self, train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        return catalog_vocabulary(train, items)

    def _fit(self, train, x, users, items) -> None:
        if not any(self.item_genres):
            raise RecsysError("genre: the items table names no genres (a 'genres' column)")

    def _score(self, batch: StateBatch) -> np.ndarray:
        if getattr(self, "_member_of", None) is not self.item_genres:  # once per vocabulary
            self._member = genre_membership(self.item_genres)[1].astype(np.float64)
            self._member_of = self.item_genres
        member = self._member  # (items, genres)
        shares = user_profiles(batch.seen, member)  # (users, genres)
        return shares @ member.T  # NaN rows: no history

    def _add_items(self, fresh: pd.DataFrame) -> None:
        pass  # a new item's genres are all it reads (the vocabulary's, extended)

    def _save_parts(self, directory: Path) -> list[str]:
        return []

    def _load_parts(self, directory: Path) -> None:
        pass
