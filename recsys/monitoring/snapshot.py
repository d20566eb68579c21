"""The data a retraining run learns from: the base interactions plus the feedback events the
service has accepted since, as one dataset directory (the training pipeline's ``source``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data import movielens
from recsys.data.io import (
    INTERACTION_COLUMNS,
    TS,
    dataset_paths,
    resolve_interactions,
    write_json,
    write_parquet,
)
from recsys.data.validate import load_interactions
from recsys.monitoring.logs import load_feedback


def build_snapshot(base: str, events_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out/interactions.parquet`` = base interactions + every accepted event (a view or
    click without a rating keeps a null rating), with the base's side tables.

    Args:
        base: ``movielens-100k`` or a dataset directory / interactions file.
        events_dir: the Serve app's events directory (``events-*.jsonl``).
        out: the snapshot directory.

    Returns:
        Row counts and the warnings of the event reader.
    """
    out = Path(out)
    dataset = movielens.fetch() if base == movielens.NAME else Path(base)
    file, side = resolve_interactions(dataset)
    interactions, _ = load_interactions(file, rating_range=None)
    events, warnings = load_feedback(events_dir)
    events = events.rename(columns={"timestamp": TS})[list(INTERACTION_COLUMNS)]
    merged = pd.concat([interactions[list(INTERACTION_COLUMNS)], events], ignore_index=True)
    merged = merged.drop_duplicates([*INTERACTION_COLUMNS]).sort_values(TS, kind="stable")
    write_parquet(merged.reset_index(drop=True), out / "interactions.parquet")
    if side is not None:
        for key in ("users", "items"):
            src = dataset_paths(side)[key]
            if src.exists():
                shutil.copy2(src, out / src.name)
    info = {"base_rows": len(interactions), "event_rows": len(events), "rows": len(merged)}
    write_json({**info, "base": str(file), "events": str(events_dir)}, out / "snapshot.json")
    return {**info, "warnings": warnings}
