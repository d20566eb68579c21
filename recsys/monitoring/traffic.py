"""Evidently reports of live traffic against a version's reference: data drift of the user and
item features and of the scores, and recommendation quality on feedback.

Each run writes ``drift.html``, ``quality.html`` and ``summary.json`` (what the policy
reads) into its own directory, and adds both snapshots to an Evidently workspace so
``evidently ui --workspace DIR`` shows the history.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.io import ITEM, USER
from recsys.evaluation.evidently_report import (
    RANK,
    TARGET,
    quality_snapshot,
    quiet_imports,
    save_html,
)
from recsys.evaluation.reference import CATEGORICAL, NUMERICAL, SCORE
from recsys.files import atomic_path

PROJECT = "recsys-monitoring"


def served_quality(frame: pd.DataFrame, key: str, k: int) -> dict[str, float]:
    """Quality of served lists from their relevance flags alone: precision@k, hit rate, MRR.

    Live feedback only says which *served* items a user took; these three need nothing else,
    so the reference (held-out relevance) and the live traffic (feedback) compare fairly.
    """
    served = frame[frame[RANK] <= k]
    if served.empty:
        return {"lists": 0}
    g = served.groupby(key)
    hits = g[TARGET].sum()
    first = served[served[TARGET] > 0].groupby(key)[RANK].min().reindex(hits.index)
    return {
        "lists": int(len(hits)),
        "precision": float((hits / k).mean()),
        "hit_rate": float((hits > 0).mean()),
        "mrr": float((1.0 / first).fillna(0.0).mean()),
    }


def drift_distances(snapshot) -> dict[str, float]:
    """Per-column drift distances from an Evidently drift snapshot (``ValueDrift`` values)."""
    out = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = float(metric["value"])
    return out


def run_reports(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: str | Path,
    *,
    k: int,
    drift_threshold: float,
    samples: dict[str, Any],
    feedback_users: set[str] | None = None,
    popularity: pd.Series | None = None,
    workspace: str | Path | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Drift and quality of ``current`` (prediction rows with ``target``) against ``reference``.

    Args:
        reference: the version's reference rows (``recsys.evaluation.reference``).
        current: live prediction rows with the same feature columns, ``request_id`` and
            ``target`` (feedback joined).
        out_dir: where this run's HTML and ``summary.json`` go.
        k: the cut-off of the quality metrics.
        drift_threshold: the distance at which a column counts as drifted (for the report's
            own verdicts; the policy applies its thresholds to the distances).
        samples: counts for the policy's minimum-sample rule.
        feedback_users: users who sent any feedback event: only their lists are judged (a
            user who never answers says nothing of the list); default: users with a hit.
        popularity: the version's training counts by item (novelty and popularity bias).
        workspace: an Evidently workspace directory to add the snapshots to.
        at: the run's time (names the snapshots).

    Returns:
        The summary: ``samples``, ``drift`` (``features``: distance per column, ``score``),
        ``quality`` (``current``, ``reference``), ``missing`` (what could not be checked) and
        the report paths.
    """
    with quiet_imports():
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

    out_dir = Path(out_dir)
    summary: dict[str, Any] = {"samples": samples, "missing": []}
    usable = [
        c
        for c in (*CATEGORICAL, *NUMERICAL, SCORE)
        if c in reference
        and c in current
        and reference[c].notna().any()
        and current[c].notna().any()
    ]
    summary["missing"] += [
        f"drift of {c}" for c in (*CATEGORICAL, *NUMERICAL, SCORE) if c not in usable
    ]
    snapshots = []
    if usable and len(current):
        definition = DataDefinition(
            categorical_columns=[c for c in usable if c in CATEGORICAL],
            numerical_columns=[c for c in usable if c not in CATEGORICAL],
        )

        def dataset(frame: pd.DataFrame) -> Dataset:
            frame = frame[usable].copy()
            for c in CATEGORICAL:
                if c in frame:
                    frame[c] = frame[c].astype("string")
            return Dataset.from_pandas(frame, data_definition=definition)

        preset = DataDriftPreset(
            columns=usable,
            num_method="wasserstein",
            cat_method="jensenshannon",
            threshold=drift_threshold,
        )
        drift = Report([preset]).run(dataset(current), dataset(reference))
        distances = drift_distances(drift)
        summary["drift"] = {
            "features": {c: d for c, d in distances.items() if c != SCORE},
            "score": distances.get(SCORE),
        }
        summary["drift_html"] = str(save_html(drift, out_dir / "drift.html"))
        snapshots.append(("drift", drift))
    judged = (
        feedback_users
        if feedback_users is not None
        else set(current.loc[current[TARGET] > 0, USER])
    )
    with_feedback = current[current[USER].isin(judged)]
    summary["quality"] = {
        "current": served_quality(with_feedback, "request_id", k),
        "reference": served_quality(reference, USER, k),
    }
    if len(with_feedback):
        live = with_feedback.assign(**{USER: with_feedback["request_id"]})
        train = _training_items(popularity) if popularity is not None else None
        quality = quality_snapshot(live[[USER, ITEM, RANK, TARGET]], reference, train, k)
        summary["quality_html"] = str(save_html(quality, out_dir / "quality.html"))
        snapshots.append(("quality", quality))
    else:
        summary["missing"].append("quality on feedback (no feedback joined to a prediction)")
    if workspace is not None and snapshots:
        summary["workspace"] = _add_to_workspace(workspace, snapshots, at)
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _training_items(popularity: pd.Series) -> pd.DataFrame:
    """Interaction rows with the training popularity of each item: all that Evidently's novelty
    and popularity bias read of a training set (the monitor has the counts, not the rows)."""
    counts = popularity[popularity > 0].astype(int)
    items = counts.index.repeat(counts.to_numpy())
    return pd.DataFrame({USER: [f"t{n}" for n in range(len(items))], ITEM: items})


def _add_to_workspace(workspace: str | Path, snapshots, at: datetime | None) -> str:
    with quiet_imports():
        from evidently.ui.workspace import Workspace

    ws = Workspace.create(str(workspace))
    found = ws.search_project(PROJECT)
    project = found[0] if found else ws.create_project(PROJECT, "drift and quality per check")
    stamp = (at or datetime.now()).strftime("%Y-%m-%d %H:%M:%S")
    for name, snapshot in snapshots:
        ws.add_run(project.id, snapshot, name=f"{name} {stamp}")
    return str(workspace)
