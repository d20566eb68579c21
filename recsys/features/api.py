"""Entry points over the feature store: refresh it from interactions, read a training set.

The CLI, the quickstart and (later) the pipeline components call these.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from recsys.data.io import INTERACTION_COLUMNS, TS
from recsys.features import store as feast_store
from recsys.features.build import TICK, FeatureConfig, build_features


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
