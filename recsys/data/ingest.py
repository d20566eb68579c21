"""Ingest: fetch or read interactions, validate them (bad rows quarantined), split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data import movielens
from recsys.data.io import USER, interactions_checksum, resolve_interactions
from recsys.data.split import split, write_split
from recsys.data.validate import load_interactions


def ingest(
    source: str,
    out: str | Path,
    *,
    protocol: str = "stratified",
    seed: int = 42,
    max_bad_share: float = 0.05,
) -> dict[str, Any]:
    """Fetch or read interactions, validate them (bad rows quarantined), split.

    Args:
        source: ``movielens-100k`` (fetched once, then cached) or a dataset directory or
            interactions file (with ``users.parquet`` / ``items.parquet`` beside it, optional).
        out: the split directory to write (``train.parquet``, ``test.parquet``, side tables).

    Returns:
        Row counts, the data checksum and where the quarantined rows went.
    """
    out = Path(out)
    dataset = movielens.fetch() if source == movielens.NAME else Path(source)
    snapshot = dataset / "snapshot.json" if dataset.is_dir() else None
    if snapshot is not None and snapshot.exists():
        # base data + feedback: the base rows keep the side they had when the champion
        # trained; only the new rows are split afresh (recsys.monitoring.snapshot)
        sources = {
            "": json.loads(snapshot.read_text())["base"],
            "events": dataset / "events.parquet",
        }
        file, side = dataset / "interactions.parquet", dataset
    else:
        file, side = resolve_interactions(dataset)
        sources = {"": file}
    parts, halves, bad = [], [], 0
    for name, path in sources.items():
        quarantine = out.parent / ".".join(filter(None, (out.name, name, "quarantine.parquet")))
        rows, report = load_interactions(
            path, quarantine_to=quarantine, max_bad_share=max_bad_share, rating_range=None
        )
        parts.append(rows)
        halves.append(split(rows, protocol, seed=seed) if len(rows) else (rows, rows))
        bad += len(report.quarantine)
    interactions = pd.concat(parts, ignore_index=True)
    train = pd.concat([h[0] for h in halves], ignore_index=True)
    test = pd.concat([h[1] for h in halves], ignore_index=True)
    checksum = interactions_checksum(interactions)
    # What the training rows stand for: themselves and, for base data + feedback, the base
    # part (the champion's training rows): a store built from either serves both versions.
    base_train = halves[0][0]
    lineage = list(dict.fromkeys([interactions_checksum(train), interactions_checksum(base_train)]))
    params = {"protocol": protocol, "seed": seed, "source": str(file), "checksum": checksum}
    params["lineage"] = lineage
    write_split(train, test, out, side_from=side, params=params)
    return {
        "rows": len(interactions),
        "bad_rows": bad,
        "train_rows": len(train),
        "test_rows": len(test),
        "users": int(interactions[USER].nunique()),
        "checksum": checksum,
    }
