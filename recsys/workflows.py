"""End-to-end jobs that compose the sub-packages: the quality protocol behind
``recsys benchmark quality``, and the Serve app's start and HTTP demo behind
``recsys quickstart``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from recsys.data import movielens
from recsys.data.io import interactions_checksum, read_side_tables, read_titles, write_parquet
from recsys.data.split import split, write_split
from recsys.evaluation.metrics import ranking_metrics
from recsys.recommend import Request, recommend_frame
from recsys.training.api import TrainArgs, fit_model, training_metrics

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


@dataclass(frozen=True)
class ModelSpec:
    """One row of a quality run: a label, a model kind and its hyper-parameters."""

    label: str
    kind: str
    params: dict = field(default_factory=dict, hash=False)


BASELINES = (ModelSpec("popularity", "popularity"), ModelSpec("ease", "ease"))
DEMO_MODELS = (*BASELINES, ModelSpec("pipeline", "pipeline"))
# "ranker" is the pipeline with the learned ranker alone: no start from the EASE ordering,
# no gate keeping that ordering when learning does not beat it on held-out users.
BENCHMARK_MODELS = (
    *BASELINES,
    ModelSpec("two_tower", "two_tower", {"history_len": 200, "epochs": 12}),
    ModelSpec("ranker", "pipeline", {"ranker": {"prior_weight": 0.0, "lr": 1e-3}}),
    ModelSpec("pipeline", "pipeline"),
)


@dataclass
class QualityRun:
    """Settings of one quality run on a dataset directory."""

    workdir: Path
    dataset: Path | None = None  # default: MovieLens-100k, fetched on first use
    models: tuple[ModelSpec, ...] = BASELINES
    protocol: str = "stratified"
    k: int = 10
    seed: int = 42


def run_quality(run: QualityRun, log=print) -> list[dict]:
    """Split, train every model, recommend with exclude-seen, evaluate; one row per model.

    Neural models train on Ray Train (a local Ray unless ``RAY_ADDRESS`` is set). Each model
    directory and its recommendations stay under ``run.workdir``.
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
    for spec in run.models:
        t0 = time.perf_counter()
        args = TrainArgs(
            data=split_dir,
            model=spec.kind,
            out=run.workdir / "models" / spec.label,
            params=spec.params,
            run_name=f"{run.workdir.name}-{spec.label}",
            storage_path=str(run.workdir / "checkpoints"),
        )
        model = fit_model(spec.kind, train, users, items, spec.params, args=args)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        recs = recommend_frame(model, user_ids, Request(k=run.k), history=train)
        rec_s = time.perf_counter() - t0
        metrics = ranking_metrics(recs, test, run.k, train=train).as_dict()
        model.save(
            args.out,
            data_checksum=interactions_checksum(train),
            metrics={**metrics, **training_metrics(model)},
        )
        write_parquet(recs, run.workdir / "recs" / f"{spec.label}.parquet")
        rows.append(
            {
                "model": spec.label,
                **metrics,
                "fit_s": round(fit_s, 3),
                "recommend_s": round(rec_s, 3),
            }
        )
        log(f"{spec.label}: nDCG@{run.k} {metrics['ndcg']:.4f}  (fit {fit_s:.1f}s)")
    return rows


def serve_demo(
    workdir: Path,
    model_root: Path,
    model_version: str,
    feature_repo: Path | None,
    catalog: Path | None,
    users: list[str],
    port: int = 8000,
    log=print,
) -> dict:
    """Start the Serve app on ``model_version`` (under ``model_root``), send real HTTP
    requests (known users, a cold-start visitor, an event, a bad request), print the answers,
    shut Serve down.

    Returns:
        What the demo saw (answers, readiness time) for tests.
    """
    from ray import serve

    t0 = time.perf_counter()
    seen: dict = {}
    try:
        url = start_app(model_root, model_version, feature_repo, catalog, workdir, port)
        seen["ready_s"] = round(time.perf_counter() - t0, 1)
        log(f"app ready at {url} in {seen['ready_s']}s (OpenAPI at {url}/docs)")
        titles = read_titles(catalog)
        for user in users:
            answer = post(url, "/recommend", {"user_id": user, "k": 5})[1]
            seen.setdefault("answers", []).append(answer)
            log(f"user {user} (took {answer['took_ms']:.0f} ms, model {answer['model_version']}):")
            for item in answer["items"]:
                name = titles.get(item["item_id"], item["item_id"])
                log(f"  {item['rank']}. {name} — {item['reason']}")
        visitor = {"user_id": "new-visitor", "k": 3, "filters": {"include_genres": ["Comedy"]}}
        cold = post(url, "/recommend", visitor)[1]
        seen["cold"] = cold
        names = ", ".join(titles.get(i["item_id"], i["item_id"]) for i in cold["items"])
        log(f"unknown visitor, comedies (cold_start={cold['cold_start']}): {names}")
        top = seen["answers"][0]["items"][0]["item_id"]
        status, _ = post(url, "/events", {"user_id": users[0], "item_id": top, "type": "click"})
        after = post(url, "/recommend", {"user_id": users[0], "k": 5})[1]
        seen["after_event"] = after
        gone = top not in [i["item_id"] for i in after["items"]]
        log(
            f"POST /events {users[0]} clicked {titles.get(top, top)} -> {status}; "
            f"next answer no longer lists it: {gone}"
        )
        status, body = post(url, "/recommend", {"user_id": users[0], "k": 0})
        log(f"a bad request (k=0) -> {status}: {body['detail'][0]['msg']}")
    finally:
        serve.shutdown()
    log("Serve shut down")
    return seen


def start_app(
    model_root: Path,
    model_version: str,
    feature_repo: Path | None,
    catalog: Path | None,
    workdir: Path,
    port: int,
) -> str:
    """Start (a local Ray and) the Serve app on ``model_version``, its prediction log and
    events under ``workdir``; wait until it is ready.

    Returns:
        The app's URL.
    """
    from recsys import deploy
    from recsys.training.cluster import ensure_ray

    args = {
        "model_root": str(model_root),
        "feature_repo": str(feature_repo) if feature_repo else None,
        "catalog": str(catalog) if catalog else None,
        "prediction_log_dir": str(workdir / "predictions"),
        "events_dir": str(workdir / "events"),
    }
    config = deploy.serve_config(
        model_version=model_version, args=args, host="127.0.0.1", port=port
    )
    ensure_ray()
    deploy.apply(config)
    url = deploy.local_url(config["http_options"])
    deploy.wait_ready(url)
    return url


def post(url: str, path: str, body: dict) -> tuple[int, dict]:
    """POST JSON; the status and the JSON answer (also for 4xx/5xx)."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
