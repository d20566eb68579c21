"""A training-set directory: the rows and attributes the models learn from, with
``training_set.json`` naming the feature service, the data lineage and the split's protocol.

Written by :meth:`recsys.features.store.FeatureStore.write_training_set` (the point-in-time
join) or :func:`recsys.features.store.write_training_set` (without a store: the split's own
side tables).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import interactions_checksum
from recsys.data.split import read_split, split_lineage, split_protocol
from recsys.files import write_json, write_parquet

TRAINING_SET_META = "training_set.json"
Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


def write_training_dir(
    split_dir: str | Path,
    out: str | Path,
    join: Callable[[pd.DataFrame], Frames] | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """The split's training rows as a training-set directory at ``out``.

    Args:
        split_dir: a split directory (``recsys data split``).
        out: the directory to write.
        join: the point-in-time join of ``service``: training rows to ``(rows, users, items,
            joined)``; without it, the split's own side tables are written.
        service: the feature service ``join`` reads (recorded in the metadata).

    Returns:
        The metadata written to ``training_set.json``.
    """
    out = Path(out)
    train, users, items = read_split(split_dir)
    lineage = split_lineage(split_dir) or [interactions_checksum(train)]
    meta: dict[str, Any] = {"feature_service": None, "rows": len(train), "lineage": lineage}
    meta["protocol"] = split_protocol(split_dir)  # what the models learn for (kinds.py)
    if join is not None:
        train, users, items, joined = join(train)
        write_parquet(joined, out / "training_set.parquet")
        meta |= {"feature_service": service, "rows": len(joined)}
        meta["columns"] = joined.shape[1]
    write_parquet(train, out / "train.parquet")
    for name, table in (("users", users), ("items", items)):
        if table is not None:
            write_parquet(table, out / f"{name}.parquet")
    write_json(meta, out / TRAINING_SET_META)
    return meta


def read_training_set_meta(data_dir: str | Path) -> dict[str, Any]:
    """``training_set.json`` of a training-set directory ({} for a plain split directory)."""
    path = Path(data_dir) / TRAINING_SET_META
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecsysError(f"{path}: unreadable training-set metadata ({exc})") from exc
