"""End-to-end jobs that compose the sub-packages: the quality protocol behind
``recsys benchmark quality``, and the Serve app's start and HTTP demo behind
``recsys quickstart``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data import movielens
from recsys.data.io import read_side_tables, read_titles
from recsys.data.split import split, write_split
from recsys.evaluation.metrics import ranking_metrics
from recsys.features.offline import item_context, states_from_interactions
from recsys.recommend import Request, recommend_frame
from recsys.training.api import TrainArgs, fit_model

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
# Every source alone, the two-tower model, the shipped multi-stage model and its options.
BENCHMARK_MODELS = (
    *BASELINES,
    ModelSpec("rp3beta", "rp3beta"),
    ModelSpec("two_tower", "two_tower", {"history_len": 200, "epochs": 12}),
    ModelSpec("pipeline", "pipeline"),
    ModelSpec("pipeline-dcn", "pipeline", {"ranker": "dcn"}),
    ModelSpec("pipeline-time", "pipeline", {"crossfit": "time"}),
)
SEEDED = ("pipeline",)  # trained once per seed: the shipped model must win for each
# The two-tower reads what fits the protocol: a sample of the user's items for a random split,
# the latest items for a temporal one (by model kind: its own config, or the pipeline's source).
PROTOCOL_PARAMS = {
    "temporal": {
        "two_tower": {"history_mode": "recent"},
        "pipeline": {"two_tower": {"history_mode": "recent"}},
    }
}


@dataclass
class QualityRun:
    """Settings of one quality run on a dataset directory."""

    workdir: Path
    dataset: Path | None = None  # default: MovieLens-100k, fetched on first use
    models: tuple[ModelSpec, ...] = BASELINES
    protocols: tuple[str, ...] = ("stratified",)
    seeds: tuple[int, ...] = (42,)  # training seeds of the SEEDED models
    k: int = 10
    seed: int = 42  # the split's
    validation: bool = False  # also score on a validation split carved from train


def run_quality(run: QualityRun, log=print, on_rows=None) -> list[dict]:
    """Per protocol (and on a validation split carved from train, when asked): split, train
    every model, recommend through the one recommendation path, evaluate; one row per
    (protocol, model, seed), and for the multi-stage model each source's recall@100.

    Neural models and the rankers train on Ray Train (a local Ray unless ``RAY_ADDRESS``).
    ``on_rows`` receives the rows after each split.
    """
    dataset = run.dataset or movielens.fetch()
    interactions = pd.read_parquet(dataset / "interactions.parquet")
    rows = []
    for protocol in run.protocols:
        train, test = split(interactions, protocol, seed=run.seed)
        splits = [(protocol, train, test)]
        if run.validation:  # the choices are made here, never on the test split
            fit_part, val = split(train, protocol, seed=run.seed + 1, ratio=0.8)
            splits.insert(0, (f"{protocol}-validation", fit_part, val))
        for name, fit_rows, held in splits:
            rows += _quality_on_split(run, dataset, name, fit_rows, held, log)
            if on_rows is not None:  # results so far, written as they come
                on_rows(rows)
    return rows


def _quality_on_split(run: QualityRun, dataset: Path, name, train, test, log) -> list[dict]:
    workdir = run.workdir / name
    protocol = name.split("-")[0]
    split_dir = write_split(
        train, test, workdir / "split", side_from=dataset, params={"protocol": protocol}
    )
    log(f"{name}: {len(train)} train / {len(test)} test rows -> {split_dir}")
    users, items = read_side_tables(split_dir)
    user_ids = sorted(set(train["user_id"]) & set(test["user_id"]))
    rows = []
    for spec in run.models:
        for seed in run.seeds if spec.label in SEEDED else (None,):
            params = _merge(PROTOCOL_PARAMS.get(protocol, {}).get(spec.kind, {}), spec.params)
            if seed is not None:
                params = {**params, "seed": seed}
            tag = spec.label if seed is None else f"{spec.label}-seed{seed}"
            t0 = time.perf_counter()
            args = TrainArgs(
                data=split_dir,
                model=spec.kind,
                out=workdir / "models" / tag,
                params=params,
                run_name=f"{workdir.name}-{tag}",
                storage_path=str(run.workdir / "checkpoints"),
            )
            model = fit_model(spec.kind, train, users, items, params, args=args)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            recs = recommend_frame(model, user_ids, Request(k=run.k), history=train)
            rec_s = time.perf_counter() - t0
            metrics = ranking_metrics(recs, test, run.k, train=train).as_dict()
            row = {"protocol": name, "model": spec.label, "seed": seed, **metrics}
            row |= {"fit_s": round(fit_s, 3), "recommend_s": round(rec_s, 3)}
            if spec.kind == "pipeline" and seed == run.seeds[0]:
                row["sources"] = source_recall(model, train, test, user_ids)
            rows.append(row)
            log(f"{name} {tag}: nDCG@{run.k} {metrics['ndcg']:.4f}  (fit {fit_s:.1f}s)")
    return rows


def source_recall(model, train: pd.DataFrame, test: pd.DataFrame, user_ids, n: int = 100):
    """Recall@``n`` of each candidate source of a multi-stage model alone (its own top-n of
    unseen items) and of the candidates the ranker orders (their union), on the test items."""
    truth = test.groupby("user_id")["item_id"].agg(set)
    found: dict[str, list[float]] = {}
    sizes: list[int] = []
    states = states_from_interactions(train, user_ids, model.state_spec().recent_n)
    items = item_context(train, model.item_ids) if model.state_spec().context else None
    for start in range(0, len(states), 256):
        batch = model.encode(states[start : start + 256])
        seen = batch.seen.toarray() > 0
        scores = model.sources.scores(batch.seen, batch.recent, batch.user_ids)
        candidates = model.candidates(batch, items=items)
        for u, user in enumerate(batch.user_ids):
            index = model._item_index
            relevant = {index[i] for i in truth[user] if i in index}
            if not relevant:
                continue
            for source, s in scores.items():
                top = np.argsort(-np.where(seen[u], -np.inf, s[u]), kind="stable")[:n]
                found.setdefault(source, []).append(len(relevant & set(top)) / len(relevant))
            codes = set(candidates[u].codes.tolist())
            found.setdefault("union", []).append(len(relevant & codes) / len(relevant))
            sizes.append(len(codes))
    out = {
        f"{k}_recall@{n}" if k != "union" else "union_recall": round(float(np.mean(v)), 4)
        for k, v in found.items()
    }
    return out | {"union_size": round(float(np.mean(sizes)), 1)}


def quality_summary(rows: list[dict], k: int = 10) -> dict:
    """Per protocol: the shipped model's mean and spread over seeds against every other row."""
    out = {}
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        mine = [r for r in rows if r["protocol"] == protocol]
        shipped = [r for r in mine if r["model"] == "pipeline"]
        if not shipped:
            continue
        best_other = {
            m: max(r[m] for r in mine if r["model"] != "pipeline")
            for m in ("ndcg", "map", "precision", "recall", "hit_rate")
        }
        ease = next((r for r in mine if r["model"] == "ease"), None)
        ndcg = [r["ndcg"] for r in shipped]
        out[protocol] = {
            "seeds": [r["seed"] for r in shipped],
            "ndcg_mean": round(float(np.mean(ndcg)), 4),
            "ndcg_min": round(min(ndcg), 4),
            "ndcg_max": round(max(ndcg), 4),
            "above_ease_every_seed": bool(ease and min(ndcg) > ease["ndcg"]),
            "min_gain_over_ease": round(min(ndcg) - ease["ndcg"], 4) if ease else None,
            "above_every_other_row_every_seed": {
                m: bool(min(r[m] for r in shipped) > v) for m, v in best_other.items()
            },
        }
    return out


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


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
        url = start_app(model_root, model_version, feature_repo, catalog, workdir, port, log)
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
    log=None,
) -> str:
    """Start (a local Ray and) the Serve app on ``model_version`` in the local topology (one
    replica runs every stage), its prediction log and events under ``workdir``; wait until it
    is ready. A local Ray started here keeps Ray's and Serve's own logs in its session
    directory, which ``log`` is told, instead of on the screen.

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
        model_version=model_version,
        args=args,
        host="127.0.0.1",
        port=port,
        topology=deploy.LOCAL_TOPOLOGY,
    )
    session = ensure_ray(log_to_driver=False)
    if session is not None:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the driver's own lines
        if log is not None:
            log(f"(Ray and Serve logs: {session}/logs)")
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
