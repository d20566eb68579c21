"""The loop at scale on synthetic data: every stage's wall time, rows/s, peak memory and disk.

    python -m benchmarks.scale --interactions 1000000 [--online sqlite|redis] [--workdir DIR]
    make benchmark-scale                                  # 1M interactions

Sizes follow the issue's 20M shape (1M users x 200k items): ``interactions / 20`` users and
``interactions / 100`` items (``--items`` sets the catalog). The stages call the platform's own
functions, in order:

    synth -> validate -> split (global-time) -> feature build -> feast apply -> materialize
    -> point-in-time training set (Feast get_historical_features) -> the multi-stage model
    with sources that scale (two-tower on Ray Train, one full epoch per fit, and popularity;
    cross-fitted in time; the LightGBM ranker on Ray Train) -> evaluate a seeded sample of
    test users (recall@100, nDCG@10; the two-tower alone beside it) -> the same evaluation
    with the model's item index rebuilt at other kinds and precisions (``--index-variants``:
    bytes per item, build time, recall against exact fp32, query time) -> serve the model (Ray
    Serve over HTTP, the local fused app on the materialized online store) and answer a
    closed loop of requests for the sample's users

Per stage: seconds, rows/s, the peak memory of this process and every process under it (Ray's
and Spark's included) as the sum of RSS (shared pages, Ray's object store among them, count
once per process that maps them: an upper bound) and as the sum of PSS (each shared page
divided among its processes: the physical memory held), and the disk the work directory holds
after it. The training set is Feast's ``get_historical_features`` on the as-of offline store
(``recsys/features/asof.py``), saved by the engine as a Feast saved dataset; ``--compare-engine
spark`` builds it on Spark's local mode too and records whether the two checksums agree. Each
training-set stage also records the pairs Feast's own DuckDB join would have formed
(``feast_join_pairs``: each entity row with every feature row of its key), the reason that join
fills the disk at 1M. The serving stage records req/s, latency, errors, each replica's RSS and
whether the endpoint's lists equal the evaluated ones (the same users, the one recommendation
path).

Results: ``benchmarks/results/scale.json``, a list of runs (one record per run, in order), each
with ``interactions``, ``catalog`` (items), ``embedding`` (the item index's precision),
``index`` (its kind and settings), ``index_recall_at_100`` (measured against exact fp32 search
as the index was built), ``completed``, ``peak_rss_gib``, ``disk_gib`` and ``stages``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from benchmarks import scale_tables
from benchmarks.serving_load import closed_loop, replica_rss_mb
from benchmarks.train_throughput import PeakRss
from recsys import serve_ops
from recsys.config import ensure_ray, free_port, recsys_home
from recsys.data.io import ITEM, USER, read_side_tables
from recsys.data.split import split, write_split
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import WORLDS, SynthConfig, config_for
from recsys.data.validate import load_interactions
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.tables import append_run, results_header
from recsys.features.build import FeatureConfig, build_features
from recsys.features.repository import default_repo, init_repo, online_kind
from recsys.features.spark import stop_spark
from recsys.features.store import FeatureStore
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.models.two_tower import TwoTowerConfig
from recsys.recommend import Request, recommend_frame
from recsys.retrieval.index import IndexConfig, ItemIndex
from recsys.state.user import EVENT_TS
from recsys.training.runs import RayRun
from recsys.training.train import RayStageTrainer

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
GIB = 2**30


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Run:
    """The stages of one run, timed and measured as they go."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.stages = workdir, []

    @contextmanager
    def stage(self, name: str, rows: int | None = None):
        info: dict = {"rows": rows}
        t0 = time.perf_counter()
        with PeakRss() as rss:
            yield info
        seconds = time.perf_counter() - t0
        rows = info.pop("rows")
        row = {
            "name": name,
            "seconds": round(seconds, 2),
            "rows": rows,
            "rows_per_s": round(rows / seconds) if rows and seconds else None,
            "peak_rss_gib": round(rss.tree / GIB, 3),
            "peak_pss_gib": round(rss.tree_pss / GIB, 3),
            "at_peak_rss_gib": {k: round(v / GIB, 3) for k, v in sorted(rss.at_peak.items())},
            "disk_gib": round(disk_bytes(self.workdir) / GIB, 3),
            **info,
        }
        self.stages.append(row)
        print(
            f"{name:<16} {seconds:8.1f} s  {row['rows_per_s'] or '':>10} rows/s  "
            f"peak RSS {row['peak_rss_gib']:6.2f} GiB  PSS {row['peak_pss_gib']:6.2f} GiB  "
            f"disk {row['disk_gib']:6.2f} GiB",
            flush=True,
        )


def frame_checksum(frame: pd.DataFrame) -> int:
    """A checksum of a training set's rows (list-valued features as text), the sum of the
    rows' hashes so that two engines need not agree on row order: what their training sets
    are compared by. Numbers hash as float64: a column of integers reads as int64 from a
    batch without nulls and as float64 from one with, and engines batch rows differently."""
    plain = frame.copy()
    for col in plain.select_dtypes(include="number").columns:
        plain[col] = plain[col].astype(np.float64)
    for col in plain.select_dtypes(include="object").columns:
        plain[col] = plain[col].map(
            lambda v: str(list(v)) if isinstance(v, list | tuple | np.ndarray) else str(v)
        )
    return int(pd.util.hash_pandas_object(plain, index=False).sum() % 2**61)


def parquet_summary(path: Path) -> dict:
    """Rows, columns and :func:`frame_checksum` of a parquet file or folder, read a batch at a
    time."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    rows, total = 0, 0
    for batch in dataset.to_batches(batch_size=500_000):
        rows += batch.num_rows
        total = (total + frame_checksum(batch.to_pandas())) % 2**61
    return {"rows_out": rows, "columns": len(dataset.schema), "checksum": total}


def join_pairs(repo: Path, entity: pd.DataFrame) -> dict[str, int]:
    """Per feature view: the (entity row, feature row) pairs of the same key, what Feast's
    DuckDB offline store forms before it keeps the latest row at or before each entity row."""
    keys = {k: entity[k].astype(str).value_counts() for k in (USER, ITEM)}
    out = {}
    for table in sorted((repo / "data").glob("*.parquet")):
        columns = pq.read_schema(table).names  # the schema only, not the table
        key = USER if USER in columns else ITEM if ITEM in columns else None
        if key is None or EVENT_TS not in columns:
            continue
        per_key = pd.read_parquet(table, columns=[key])[key].astype(str).value_counts()
        entity_rows = keys[key].reindex(per_key.index).fillna(0)
        out[table.stem] = int((per_key * entity_rows).sum())
    return out


def run_once(args: argparse.Namespace) -> dict:
    n = args.interactions
    work = Path(args.workdir) / f"n{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = Run(work)
    data_dir, split_dir, repo = work / "data", work / "split", work / "feature_repo"

    n_items = args.items or max(n // 100, 10)
    synth = config_for(args.world, n_users=max(n // 20, 10), n_items=n_items, n_interactions=n)
    with run.stage("synth", n) as info:
        generate(synth, data_dir, progress=False)
        info |= {"users": synth.n_users, "items": synth.n_items}
    with run.stage("validate", n) as info:
        clean, result = load_interactions(data_dir, rating_range=(1.0, 5.0))
        info["quarantined"] = int(len(result.quarantine))
    with run.stage("split", len(clean)) as info:
        train, test = split(clean, args.protocol)
        write_split(train, test, split_dir, params={"protocol": args.protocol}, side_from=data_dir)
        info |= {"train": len(train), "test": len(test), "protocol": args.protocol}
    del clean, result  # result.clean is the whole table: held, it stayed in memory to the end
    users, items = read_side_tables(split_dir)
    init_repo(default_repo(), repo)
    if args.duckdb_memory_limit:  # this run's copy of the repository only
        path = repo / "feature_store.yaml"
        config = yaml.safe_load(path.read_text())
        config["offline_store"]["memory_limit"] = args.duckdb_memory_limit
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    with run.stage("feature build", len(train)) as info:
        config = FeatureConfig(engine=args.build_engine)
        tables = build_features(train, users, items, repo / "data", config)
        info["engine"] = config.engine
        info["tables"] = tables
        info["feature_rows"] = int(sum(tables.values()))
    stop_spark()  # a Spark build's JVM is not the later stages' memory
    with run.stage("feast apply"):
        FeatureStore(repo, args.online).apply()
    with run.stage("materialize") as info:
        done = FeatureStore(repo, args.online).materialize()
        info["rows"] = int(sum(done["rows"].values()))
        info["online"] = done["online"]
    pairs = join_pairs(repo, train)
    engines = [args.offline_engine, *([args.compare_engine] if args.compare_engine else [])]
    sums = {}
    for engine in engines:
        os.environ["RECSYS_OFFLINE_ENGINE"] = engine
        name = "training set" if engine == args.offline_engine else f"training set ({engine})"
        with run.stage(name, len(train)) as info:
            info |= {"engine": engine, "feast_join_pairs": pairs}
            store = FeatureStore(repo, args.online)  # a new store: the engine is read on opening
            out = store.save_training_set(train, work / f"training_set.{engine}")
        stop_spark()
        run.stages[-1] |= parquet_summary(out)  # read back after the stage, not timed in it
        sums[engine] = run.stages[-1]["checksum"]
    os.environ["RECSYS_OFFLINE_ENGINE"] = args.offline_engine
    if args.stop_after == "training-set":
        return summary(args, synth, run, sums)
    proxy = serve_ops.proxy_settings()  # HAProxy for the serving stage, as a user's local Ray
    ensure_ray()
    tower = TwoTowerConfig(
        epochs=1,
        val_share=0.0,
        patience=0,
        history_len=20,
        batch_size=args.batch_size,
        index={"kind": args.index, "precision": args.precision},
    )
    rng = np.random.default_rng(0)
    known = np.intersect1d(test[USER].unique(), train[USER].unique())
    sample = sorted(rng.choice(known, min(args.eval_users, len(known)), replace=False))
    held, mine = test[test[USER].isin(sample)], train[train[USER].isin(sample)]
    del test  # the evaluation needs only the sample's rows
    with run.stage("multistage (Ray Train)", len(train)) as info, timed_steps() as steps:
        model = scalable_multistage(
            tower, args.ranker_users, args.protocol, args.n_ease, args.two_tower_full_fit
        )
        model.trainer = RayStageTrainer(
            lambda tag, use_gpu=False: RayRun(
                str(work / "checkpoints"),
                f"scale-{tag}",
                num_workers=args.num_workers,
                placement_strategy=args.placement,
            )
        )
        model.fit(train, users, items)
        info["steps"] = steps
        del train
        log = model.training_log
        info |= {k: log[k] for k in ("ranker_rows", "ranker_positives", "candidate_recall")}
        # the two-tower fits' one Ray Train run: where its seconds went (before the run: the
        # driver's staging of the folds' examples; Ray Train's start; the epochs; the end)
        info["two_tower_timing"] = (log.get("two_tower_log") or {}).get("timing")
        info["ranker_users"] = args.ranker_users
        index = model.sources.two_tower.index_info()
        info["index"] = index
    with run.stage("evaluate", len(sample)) as info:
        recs = recommend_frame(model, sample, Request(k=100), history=mine)
        info |= sample_quality(recs, held, mine)
        alone = recommend_frame(model.sources.two_tower, sample, Request(k=100), history=mine)
        info["two_tower_alone"] = sample_quality(alone, held, mine)
        info["users"] = len(sample)
    if args.index_variants:
        with run.stage("index variants", len(sample)) as info:
            info["variants"] = index_variants(model, sample, held, mine, args.index_variants)
    with run.stage("serve (Ray Serve, HTTP)", args.serve_requests) as info:
        info |= serve_and_answer(args, model, repo, work, sample, recs)
        info["proxy"] = proxy
    return summary(args, synth, run, sums)


def scalable_multistage(
    tower: TwoTowerConfig,
    ranker_users: int,
    protocol: str = "temporal",
    n_ease: int = 0,
    full_fit: str = "continue",
) -> MultiStageModel:
    """The multi-stage model with candidate sources that scale to a 200k-item catalog: the
    two-tower's top 100 and the 50 most popular (EASE is dense items x items; RP3beta fits in
    memory there but costs 10-16 minutes a fit on 2 CPUs). Cross-fitted with one window, as
    the protocol holds out: under ``temporal`` each user's latest half of training labelled
    from the sources fitted on everyone's earlier half (``user-time``), under ``global-time``
    the second half of the training span from the first (``time``); the ranker learns from a
    sample of ``ranker_users`` users; the full fit serves. ``n_ease`` > 0 adds EASE's top
    ``n_ease`` and its features (the recent windows' among them), where the catalog is within
    EASE's ``max_items``. The full fit's two-tower continues from the fold's (``full_fit``:
    ``MultiStageConfig.two_tower_full_fit``)."""
    return MultiStageModel(
        MultiStageConfig(
            n_ease=n_ease,
            n_rp3=0,
            n_popular=50,
            n_two_tower=100,
            crossfit="user-time" if protocol == "temporal" else "time",
            folds=2,
            ranker_users=ranker_users,
            two_tower=tower,
            two_tower_full_fit=full_fit,
        )
    )


@contextmanager
def timed_steps():
    """The model's progress lines (``recsys.progress``) as they come, each with the seconds
    since the previous one: where a stage's time goes, part by part."""
    steps: list[dict] = []
    last = [time.perf_counter()]

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            now = time.perf_counter()
            steps.append({"step": record.getMessage(), "seconds": round(now - last[0], 1)})
            print(f"  {steps[-1]['seconds']:8.1f} s  {steps[-1]['step']}", flush=True)
            last[0] = now

    logger, handler = logging.getLogger("recsys.progress"), Handler()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield steps
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def index_variants(model, sample, held, mine, variants: str) -> list[dict]:
    """The same trained model served from other item indexes (``kind:precision,...``), each
    built from the same item embeddings: its bytes per item, build seconds, recall@100 against
    exact fp32 search, a query's milliseconds, and the end-to-end recall@100 and nDCG@10 of the
    multi-stage model and of its two-tower alone on the sample. The served index is put back."""
    tower = model.sources.two_tower
    served, out = tower.index, []
    queries = tower.user_embeddings(sample[:500], mine)
    try:
        for variant in variants.split(","):
            kind, precision = variant.split(":")
            config = dataclasses.replace(served.config, kind=kind, precision=precision)
            tower.index = ItemIndex.build(tower.item_embeddings, config, queries)
            start = time.perf_counter()
            for q in queries[:200]:
                tower.index.search(q[None, :], 100)
            query_ms = (time.perf_counter() - start) * 1000 / min(len(queries), 200)
            recs = recommend_frame(model, sample, Request(k=100), history=mine)
            alone = recommend_frame(tower, sample, Request(k=100), history=mine)
            info = tower.index.info()
            out.append(
                {
                    "kind": kind,
                    "precision": precision,
                    "bytes_per_item": info["bytes_per_item"],
                    "build_seconds": info["build_seconds"],
                    "index_recall_at_100": info["recall_at_k"],
                    "query_ms": round(query_ms, 3),
                    **sample_quality(recs, held, mine),
                    "two_tower_alone": sample_quality(alone, held, mine),
                }
            )
            print(json.dumps(out[-1]), flush=True)
    finally:
        tower.index = served
    return out


def sample_quality(recs: pd.DataFrame, held: pd.DataFrame, mine: pd.DataFrame) -> dict:
    """recall@100 and nDCG@10 of top-100 lists on the sample's held-out rows."""
    top10 = recs[recs["rank"] <= 10]
    return {
        "recall_at_100": round(ranking_metrics(recs, held, 100, train=mine).recall, 4),
        "ndcg_at_10": round(ranking_metrics(top10, held, 10, train=mine).ndcg, 4),
    }


def serve_and_answer(args, model, repo: Path, work: Path, sample, recs: pd.DataFrame) -> dict:
    """Save the model as a version, serve it as `recsys serve start` does on one machine (the
    fused app, one replica per CPU, the online store the run materialized), check the endpoint
    answers the sample's first users what the evaluation ranked for them, then a closed loop
    of requests for the sample's users (one in ten unknown: the cold-start answer)."""
    import asyncio

    import httpx

    version = f"scale-multistage-{args.interactions}"
    lineage = FeatureStore(repo).meta().lineage  # the store was built from this train
    model.save(work / "models" / version, version=version, data_lineage=lineage)
    url = serve_ops.start_local(
        work / "models",
        version,
        repo,
        None,
        work / "serving",
        free_port(),
        replicas=None,
        proxy_location=args.proxy_location,
    )
    try:
        users = [str(u) for u in sample]
        offline = recs[recs["rank"] <= 10].groupby(USER, sort=False)[ITEM].apply(list)
        same = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            for user in users[: args.parity_users]:
                answer = client.post("/recommend", json={"user_id": user, "k": 10}).json()
                same += [i["item_id"] for i in answer["items"]] == offline.get(user, [])
        bodies = [
            json.dumps(
                {"user_id": f"visitor-{n}" if n % 10 == 9 else users[n % len(users)]}
            ).encode()
            for n in range(args.serve_requests)
        ]
        load = asyncio.run(closed_loop(f"{url}/recommend", bodies, 16, args.serve_seconds))
        rss = replica_rss_mb()
    finally:
        serve_ops.stop(local_ray=False)
    return {
        "rows": None,  # the stage's time holds the app's start and stop: req/s is the load's
        "parity_users": min(args.parity_users, len(users)),
        "parity_equal": same,
        **{k: load[k] for k in ("concurrency", "requests", "errors", "rps", "p50_ms", "p99_ms")},
        "replica_rss_mb": rss,
    }


def summary(args: argparse.Namespace, synth: SynthConfig, run: Run, sums: dict) -> dict:
    stopped = args.stop_after is not None
    index = next((s["index"] for s in run.stages if "index" in s), {})
    return {
        "interactions": args.interactions,
        "world": args.world,
        "synth": dataclasses.asdict(synth),  # the world's knobs as generated
        "protocol": args.protocol,
        "n_ease": args.n_ease,
        "two_tower_full_fit": args.two_tower_full_fit,
        "num_workers": args.num_workers,
        "placement": args.placement,
        "proxy_location": args.proxy_location,
        "users": synth.n_users,
        "items": synth.n_items,
        "catalog": index.get("n_items"),  # the model's item vocabulary
        "embedding": index.get("precision", args.precision),
        "index": {"kind": index.get("kind", args.index), "settings": args.index_settings},
        "index_recall_at_100": index.get("recall_at_k"),
        "completed": not stopped,  # every stage of the loop ran
        "stopped_after": args.stop_after,
        "engines_agree": len(set(sums.values())) == 1 if len(sums) > 1 else None,
        "peak_rss_gib": max(s["peak_rss_gib"] for s in run.stages),
        "peak_pss_gib": max(s["peak_pss_gib"] for s in run.stages),
        "disk_gib": max(s["disk_gib"] for s in run.stages),
        "stages": run.stages,
        "online": online_kind(args.online),
        **results_header("scale"),
    }


def table(runs: list[dict]) -> str:
    lines = [
        "| interactions | stage | seconds | rows/s | peak RSS GiB | peak PSS GiB | disk GiB "
        "| note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for s in r["stages"]:
            note = s.get("reason") or ""
            if "recall_at_100" in s:
                note = f"recall@100 {s['recall_at_100']}, nDCG@10 {s['ndcg_at_10']}"
                if alone := s.get("two_tower_alone"):
                    note += (
                        f" (the two-tower alone: {alone['recall_at_100']}, {alone['ndcg_at_10']})"
                    )
            if "p99_ms" in s:
                note = (
                    f"{s['rps']} req/s at concurrency {s['concurrency']}, p50 {s['p50_ms']} ms, "
                    f"p99 {s['p99_ms']} ms, {s['errors']} errors; {s['parity_equal']} of "
                    f"{s['parity_users']} users' lists equal the evaluated ones"
                )
            lines.append(
                f"| {r['interactions']:,} | {s['name']} | {s['seconds']} | {s['rows_per_s'] or ''} "
                f"| {s['peak_rss_gib']} | {s.get('peak_pss_gib', '')} | {s['disk_gib']} | {note} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The run's settings from ``argv`` (default: the command line; ``benchmarks.multinode``
    passes the options it does not take itself)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=None, help="the catalog (default: N / 100)")
    p.add_argument(
        "--world",
        choices=sorted(WORLDS),
        default="movielens",
        help="the generator's shape: fitted to MovieLens-100k's statistics, or independent draws",
    )
    p.add_argument(
        "--protocol",
        choices=["temporal", "global-time"],
        default="temporal",
        help="temporal: each user's latest 25%% held out (the ranker cross-fits in user time); "
        "global-time: one cut in time for everyone (cross-fit in time)",
    )
    p.add_argument("--online", choices=["sqlite", "redis"], default=None)
    p.add_argument("--offline-engine", choices=["duckdb", "spark"], default="duckdb")
    p.add_argument(
        "--compare-engine",
        choices=["duckdb", "spark"],
        default=None,
        help="build the training set on this engine too and compare checksums",
    )
    p.add_argument(
        "--build-engine",
        choices=["pandas", "spark"],
        default="pandas",
        help="where the per-event feature tables are computed",
    )
    p.add_argument(
        "--stop-after",
        choices=["training-set"],
        default=None,
        help="stop after this stage (the run is recorded as not completed)",
    )
    p.add_argument(
        "--duckdb-memory-limit",
        default="3GB",
        help="the offline store's DuckDB memory limit (past it DuckDB spills; DuckDB's own "
        "default, 80%% of the machine's memory, took the 20M join to 21.2 GiB)",
    )
    p.add_argument(
        "--n-ease",
        type=int,
        default=0,
        help="EASE's candidates and features in the model (a catalog within ease.max_items)",
    )
    p.add_argument(
        "--two-tower-full-fit",
        choices=["scratch", "continue"],
        default="continue",
        help="the full fit's two-tower: from the fold's weights on the rows it did not see, "
        "after it (one fit in memory), or from scratch beside it",
    )
    p.add_argument("--num-workers", type=int, default=1, help="Ray Train workers per learned part")
    p.add_argument(
        "--placement",
        choices=["PACK", "SPREAD"],
        default="PACK",
        help="Ray Train's placement of the workers (SPREAD: one per node where it can)",
    )
    p.add_argument(
        "--proxy-location",
        choices=["EveryNode", "HeadOnly"],
        default=None,
        help="where Serve's proxies run (default: the Serve config's; HeadOnly where several "
        "nodes share one machine's ports)",
    )
    p.add_argument("--eval-users", type=int, default=2000)
    p.add_argument("--serve-requests", type=int, default=3000, help="the serving stage's load")
    p.add_argument("--serve-seconds", type=float, default=20, help="its time limit")
    p.add_argument("--parity-users", type=int, default=50, help="served lists compared")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--ranker-users", type=int, default=30_000, help="users the ranker learns from (a sample)"
    )
    p.add_argument(
        "--index",
        choices=["auto", "flat", "hnsw", "ivf"],
        default="auto",
        help="the two-tower's item index (auto: exact up to 50k items, IVF above)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "int8"],
        default="auto",
        help="the item index's precision (auto: fp32 up to 50k items, int8 above)",
    )
    p.add_argument(
        "--index-variants",
        default="flat:fp32,flat:fp16,flat:int8,ivf:fp32,ivf:fp16,ivf:int8",
        help="after the evaluation, the same model served from these item indexes "
        "(kind:precision, comma-separated; empty: none)",
    )
    p.add_argument("--workdir", default=str(recsys_home() / "runs" / "scale"))
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("FEAST_USAGE", "False")
    args.index_settings = {
        k: v
        for k, v in dataclasses.asdict(IndexConfig()).items()
        if k.startswith(("hnsw_", "ivf_", "exact_"))
    }
    return args


def main() -> None:
    args = parse_args()
    result = run_once(args)
    if not args.keep:
        shutil.rmtree(Path(args.workdir) / f"n{args.interactions}", ignore_errors=True)
    append_run("scale", result, args.out, table, scale_tables.tables)


if __name__ == "__main__":
    main()
