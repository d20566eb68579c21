"""Entry points over the feature store: refresh it from interactions (or a split), read a
point-in-time training set, write one as a dataset directory.

The CLI, the quickstart and the pipeline components call these.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import INTERACTION_COLUMNS, TS, interactions_checksum
from recsys.data.split import read_split, split_lineage, split_protocol
from recsys.features import store as feast_store
from recsys.features.build import FeatureConfig, build_features
from recsys.files import write_json, write_parquet
from recsys.state.user import TICK

TRAINING_SET_META = "training_set.json"


def refresh(
    repo: str | Path,
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    *,
    online: str | None = None,
    config: FeatureConfig | None = None,
    lineage: list[str] | None = None,
) -> dict:
    """Build the feature tables into ``repo/data``, ``feast apply``, materialize.

    ``lineage`` names the data the interactions stand for (default: their checksum); the
    serving readiness check compares it with the served version's.

    Returns:
        Rows per table, and the seconds each step took.
    """
    t0 = time.perf_counter()
    rows = build_features(interactions, users, items, Path(repo) / "data", config, lineage)
    t1 = time.perf_counter()
    feast_store.apply(repo, online)
    t2 = time.perf_counter()
    materialized = feast_store.materialize(repo, online)
    return {
        "rows": rows,
        "build_s": round(t1 - t0, 2),
        "apply_s": round(t2 - t1, 2),
        "materialize_s": round(materialized["seconds"], 2),
        "online": materialized["online"],
    }


def load_training_set(
    repo: str | Path,
    interactions: pd.DataFrame,
    service: str = feast_store.DEFAULT_SERVICE,
    online: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The point-in-time training set of ``service`` for ``interactions``.

    Returns:
        ``(interactions, users, items, training_set)``: the labelled rows, the user and item
        attributes the models take (both from the joined training set, not the raw side
        tables; items are the whole catalog as of the last interaction), and the joined frame.
    """
    store = feast_store.open_store(repo, online)
    joined = feast_store.training_set(store, interactions, service)
    as_of = joined[TS].max() + TICK if len(joined) else pd.Timestamp.now(tz="UTC")
    users, items = feast_store.side_tables(joined, feast_store.catalog(store, as_of))
    rows = joined[[c for c in INTERACTION_COLUMNS if c in joined]]
    return rows, users, items, joined


def materialize_split(split_dir: str | Path, feature_repo: str | Path) -> dict[str, Any]:
    """Build the feature tables from the training rows only, ``feast apply``, materialize."""
    train, users, items = read_split(split_dir)
    done = refresh(feature_repo, train, users, items, lineage=split_lineage(split_dir))
    return {**done, "rows": sum(done["rows"].values())}


def write_training_set(
    split_dir: str | Path,
    out: str | Path,
    *,
    feature_repo: str | Path | None = None,
    feature_service: str = feast_store.DEFAULT_SERVICE,
) -> dict[str, Any]:
    """The rows and attributes the models learn from, as a dataset directory.

    With ``feature_repo``, the point-in-time training set of ``feature_service``
    (``get_historical_features``); without it, the split's own side tables.
    """
    out = Path(out)
    train, users, items = read_split(split_dir)
    lineage = split_lineage(split_dir) or [interactions_checksum(train)]
    meta: dict[str, Any] = {"feature_service": None, "rows": len(train), "lineage": lineage}
    meta["protocol"] = split_protocol(split_dir)  # what the models learn for (kinds.py)
    if feature_repo:
        train, users, items, joined = load_training_set(feature_repo, train, feature_service)
        write_parquet(joined, out / "training_set.parquet")
        meta |= {"feature_service": feature_service, "rows": len(joined)}
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
