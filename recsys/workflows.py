"""End-to-end jobs that compose the sub-packages: the quality protocol behind
``recsys quickstart`` and ``recsys benchmark quality``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.data import movielens
from recsys.data.io import interactions_checksum, read_side_tables, write_parquet
from recsys.data.split import split, write_split
from recsys.evaluation.metrics import ranking_metrics
from recsys.models import create_model

# Published Microsoft Recommenders MovieLens-100k figures (README table, k = 10).
PUBLISHED_MOVIELENS_100K = [
    {
        "model": "BiVAE (MS Recommenders)",
        "ndcg": 0.4751,
        "map": 0.1461,
        "precision": 0.4118,
        "recall": 0.2191,
    },
    {
        "model": "BPR (MS Recommenders)",
        "ndcg": 0.4420,
        "map": 0.1325,
        "precision": 0.3882,
        "recall": 0.2125,
    },
    {
        "model": "LightGCN (MS Recommenders)",
        "ndcg": 0.4198,
        "map": 0.0885,
        "precision": 0.3796,
        "recall": 0.1443,
    },
    {
        "model": "SAR (MS Recommenders)",
        "ndcg": 0.3825,
        "map": 0.1106,
        "precision": 0.3308,
        "recall": 0.1764,
    },
]
BASELINES = ("popularity", "ease")


@dataclass
class QualityRun:
    """Settings of one quality run on a dataset directory."""

    workdir: Path
    dataset: Path | None = None  # default: MovieLens-100k, fetched on first use
    models: tuple[str, ...] = BASELINES
    params: dict[str, dict] = field(default_factory=dict)
    protocol: str = "stratified"
    k: int = 10
    seed: int = 42


def run_quality(run: QualityRun, log=print) -> list[dict]:
    """Split, train every model, recommend with exclude-seen, evaluate; one row per model.

    Each model directory and its recommendations stay under ``run.workdir``.
    """
    dataset = run.dataset or movielens.fetch()
    interactions = pd.read_parquet(dataset / "interactions.parquet")
    train, test = split(interactions, run.protocol, seed=run.seed)
    split_dir = write_split(
        train,
        test,
        run.workdir / "split",
        side_from=dataset,
        params={"protocol": run.protocol, "seed": run.seed},
    )
    log(f"split ({run.protocol}): {len(train)} train / {len(test)} test rows -> {split_dir}")
    users, items = read_side_tables(split_dir)
    user_ids = sorted(train["user_id"].unique())
    rows = []
    for kind in run.models:
        t0 = time.perf_counter()
        model = create_model(kind, run.params.get(kind)).fit(train, users, items)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recs = model.recommend(user_ids, run.k, history=train, exclude_seen=True)
        rec_s = time.perf_counter() - t0
        metrics = ranking_metrics(recs, test, run.k, train=train).as_dict()
        model.save(
            run.workdir / "models" / kind,
            data_checksum=interactions_checksum(train),
            metrics=metrics,
        )
        write_parquet(recs, run.workdir / "recs" / f"{kind}.parquet")
        rows.append(
            {"model": kind, **metrics, "fit_s": round(fit_s, 3), "recommend_s": round(rec_s, 3)}
        )
        log(f"{kind}: nDCG@{run.k} {metrics['ndcg']:.4f}  (fit {fit_s:.1f}s)")
    return rows
