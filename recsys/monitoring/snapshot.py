"""The data a retraining run learns from: the base interactions plus the feedback events the
service has accepted since, as one dataset directory (the training pipeline's ``source``).

The directory keeps the two parts apart too (``snapshot.json`` names the base file,
``events.parquet`` holds the new rows), so the pipeline's split can keep every base row on the
side it was on when the champion trained (:func:`recsys.data.ingest.ingest`): re-splitting the union
would put some of the champion's training rows into the test set and flatter it at the gate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data import movielens
from recsys.data.io import (
    INTERACTION_COLUMNS,
    ITEM,
    TS,
    USER,
    dataset_paths,
    read_table,
    resolve_interactions,
)
from recsys.data.new_items import ItemLog, merged_catalog
from recsys.data.validate import load_interactions
from recsys.files import write_json, write_parquet
from recsys.monitoring.logs import load_feedback

SNAPSHOT_FILE = "snapshot.json"
EVENTS_FILE = "events.parquet"


def build_snapshot(base: str, events_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out/interactions.parquet`` = base interactions + the accepted events on user-item
    pairs the base lacks (a view or click without a rating keeps a null rating; the first event
    of a pair wins), with the base's side tables; ``items.parquet`` also holds the items added
    at run time (the item log in ``items`` beside ``events_dir``, the app's ``items_dir``).

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
    # A user-item pair the base already holds adds nothing to learn, and would leak: feedback
    # on a base *test* item would land in train, and exclude-seen would then hide that item
    # from both models at the gate.
    known = pd.MultiIndex.from_frame(interactions[[USER, ITEM]].astype(str))
    pairs = pd.MultiIndex.from_frame(events[[USER, ITEM]].astype(str))
    events = events[~pairs.isin(known)].drop_duplicates([USER, ITEM]).reset_index(drop=True)
    merged = pd.concat([interactions[list(INTERACTION_COLUMNS)], events], ignore_index=True)
    write_parquet(merged, out / "interactions.parquet")
    write_parquet(events, out / EVENTS_FILE)
    if side is not None:
        for key in ("users", "items"):
            src = dataset_paths(side)[key]
            if src.exists():
                shutil.copy2(src, out / src.name)
    new_items = _add_new_items(out, Path(events_dir).parent / "items")
    info = {"base_rows": len(interactions), "event_rows": len(events), "rows": len(merged)}
    info["new_items"] = new_items
    write_json({**info, "base": str(file), "events": str(events_dir)}, out / SNAPSHOT_FILE)
    return {**info, "warnings": warnings}


def _add_new_items(out: Path, items_dir: Path) -> int:
    """Append the logged new items the snapshot's catalog lacks; how many were logged."""
    log = ItemLog(items_dir)
    if not log.path.exists():
        return 0
    added = log.read()[0]
    path = out / "items.parquet"
    catalog = read_table(path) if path.exists() else None
    merged = merged_catalog(catalog, added)
    if merged is not None and len(merged) != (len(catalog) if catalog is not None else 0):
        write_parquet(merged, path)
    return len(added)
