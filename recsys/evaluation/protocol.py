"""The evaluation protocol behind the gate: a candidate, the champion and the baselines,
scored on the same held-out users by the one recommendation path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from recsys.data.io import USER, read_table
from recsys.data.split import read_split, split_info
from recsys.evaluation.evidently_report import quality_snapshot, ranking_frame, save_html
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.reference import build_reference, item_popularity
from recsys.files import write_json, write_parquet
from recsys.models.kinds import create_model, load_model
from recsys.models.manifest import read_manifest
from recsys.recommend import Request, prepare, recommend_frame

# The model kinds evaluated beside every candidate; the gate holds it to the strongest.
BASELINES = ("popularity", "ease")


def population(split_dir: str | Path, users: int) -> dict[str, Any]:
    """Who the evaluation judged: its held-out users, the data and the protocol of the split
    (``split.json``, when the split has one)."""
    known = split_info(split_dir)
    return {"users": users, "source": known.get("source"), "protocol": known.get("protocol")}


def evaluate_candidate(
    split_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    *,
    champion: tuple[str, str | Path] | None = None,
    k: int = 10,
    report_html: str | Path | None = None,
    reference_out: str | Path | None = None,
) -> dict[str, Any]:
    """Score the candidate, the champion and the baselines on the same held-out users
    (exclude-seen, top-k, through the one recommendation path); write the evaluation JSON, the
    Evidently HTML report and the candidate's monitoring reference (its top-k with features
    and relevance).

    Args:
        champion: ``(version, model directory)`` of the serving champion, or None
            (``recsys.registry.champion_model`` resolves it).

    Returns:
        ``k``, ``candidate`` / ``champion`` (None without one) / ``baseline`` (popularity),
        each ``{"version" or "model", "metrics"}``, and ``references`` (every baseline).
    """
    train, users, items = read_split(split_dir)
    test = read_table(Path(split_dir) / "test.parquet")
    user_ids = sorted(set(train[USER]) & set(test[USER]))
    request = Request(k=k, exclude_seen=True)

    def score(model) -> tuple[dict[str, Any], pd.DataFrame]:
        # the one recommendation path, each user's state from the training rows
        recs = recommend_frame(prepare(model), user_ids, request, history=train)
        return ranking_metrics(recs, test, k, train=train).as_dict(), recs

    cand_metrics, cand_recs = score(load_model(model_dir))
    manifest = read_manifest(model_dir)
    result: dict[str, Any] = {
        "k": k,
        "candidate": {"version": manifest.version, "kind": manifest.kind, "metrics": cand_metrics},
        "champion": None,
        "references": {},
        "population": population(split_dir, len(user_ids)),
    }
    reference_recs = None
    if champion is not None:
        version, champion_dir = champion
        metrics, reference_recs = score(load_model(champion_dir))
        result["champion"] = {"version": version, "metrics": metrics}
    for kind in BASELINES:
        metrics, recs = score(create_model(kind).fit(train, users, items))
        result["references"][kind] = {"model": kind, "metrics": metrics}
        if reference_recs is None and kind == "popularity":
            reference_recs = recs
    result["baseline"] = result["references"]["popularity"]
    if report_html:
        reference = ranking_frame(reference_recs, test, k)
        snapshot = quality_snapshot(ranking_frame(cand_recs, test, k), reference, train, k)
        save_html(snapshot, report_html)
    if reference_out:
        popularity = item_popularity(model_dir)
        write_parquet(build_reference(cand_recs, test, train, users, popularity, k), reference_out)
    write_json(result, out)
    return result
