"""A model's item vocabulary: the ids, their positions, their genres, read once per process.

A multi-stage model and its two-tower source hold the same vocabulary and genres, a replica
may hold two versions of one catalog: :func:`shared_file` gives one object per equal file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.io import ITEM


def catalog_vocabulary(train: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
    """Items seen in training plus every item of the catalog table (cold ones included)."""
    ids = set(train[ITEM].unique())
    if items is not None and ITEM in items:
        ids |= set(items[ITEM].astype(str))
    return np.sort(np.fromiter(ids, dtype=object))


_SHARED: dict[str, object] = {}  # file digest -> what was read from it
SHARED_KEPT = 8


def shared_file(path: Path, read):
    """``read(bytes)`` of the file at ``path``, one object per process for equal files: a
    multi-stage model and its two-tower source hold the same item vocabulary and genres (a
    large copy at a large catalog). What it returns is shared: never mutate."""
    data = path.read_bytes()
    digest = f"{read.__name__}:{hashlib.blake2b(data, digest_size=16).hexdigest()}"
    if digest not in _SHARED:
        if len(_SHARED) >= SHARED_KEPT:
            _SHARED.pop(next(iter(_SHARED)))
        _SHARED[digest] = read(data)
    return _SHARED[digest]


def indexed(item_ids) -> tuple[np.ndarray, dict[str, int], pd.Index]:
    """The item ids, their positions (a dict, for per-item lookups) and a hashed index of them
    (built once; ``get_indexer`` per call)."""
    ids = np.asarray(item_ids, dtype=object)
    return ids, {item: i for i, item in enumerate(ids)}, pd.Index(ids)


def read_vocabulary(data: bytes) -> tuple[np.ndarray, dict[str, int], pd.Index]:
    """:func:`indexed` of the ids in ``item_vocab.json``."""
    return indexed(json.loads(data))


def genres_of(item_ids: np.ndarray, items: pd.DataFrame | None) -> list[str]:
    """Each vocabulary item's genres as ``"a|b"`` ("" when unknown), from the item table."""
    if items is None or "genres" not in items or ITEM not in items:
        return [""] * len(item_ids)
    side = items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)
    genres = side.set_index(ITEM)["genres"].reindex(np.asarray(item_ids, dtype=object))
    return [g if isinstance(g, str) else "" for g in genres.tolist()]
