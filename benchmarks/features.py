"""Feature store: materialization speed and online read latency, SQLite against Redis.

On one dataset (MovieLens-100k by default, or a synthetic one with ``--synthetic N``):
build the feature tables, ``feast apply`` and materialize into each online store, time the
point-in-time training set, then time online reads: one user's state and features (what a
serving replica reads per request), eight users in one read (a batch of requests), and one user
plus 200 candidate items — same users, same items, one run.

Redis runs as a real ``redis-server`` on 127.0.0.1 (a free port), started and stopped here.

    python benchmarks/features.py [--synthetic 1000000] [--reads 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.config import free_port
from recsys.data import movielens
from recsys.data.io import ITEM, USER, dataset_paths, read_side_tables
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.evaluation.tables import results_header
from recsys.features.build import TABLES, build_features
from recsys.features.repository import copy_definitions
from recsys.features.store import FeatureStore
from recsys.files import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "features.json"
DEFINITIONS = Path(__file__).resolve().parents[1] / "feature_repo"


def dataset(args, tmp: Path) -> Path:
    if not args.synthetic:
        return movielens.fetch()
    n = args.synthetic
    config = SynthConfig(n_users=max(n // 50, 10), n_items=max(n // 200, 10), n_interactions=n)
    generate(config, tmp / "synthetic", progress=False)
    return tmp / "synthetic"


def start_redis(tmp: Path):
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    import redis

    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(150):
        try:
            client.ping()
            return proc, f"127.0.0.1:{port}"
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    return None, None


def entity_rows(repo: Path) -> int:
    """Online rows written: one per entity key and view (the latest value)."""
    total = 0
    for table in TABLES:
        path = repo / "data" / f"{table}.parquet"
        key = USER if USER in pq.read_schema(path).names else ITEM  # the view's entity
        total += pd.read_parquet(path, columns=[key])[key].nunique()
    return total


def read_latency(repo: Path, online: str, users, items, reads: int, seed: int) -> dict:
    """Online read latency, three ways (same users, ``reads`` each after a warm-up of 10):
    one user's state and features (``read_user``: what a serving replica reads per request),
    eight users in one read (``read_users``: a batch of concurrent requests), and one user
    plus 200 candidate items (``read``: a ranker that reads its items' features per request;
    ours caches them per feature build)."""
    reader = FeatureStore(repo, online).online()
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {"user": [], "batch8": [], "user_items": []}
    for n in range(reads + 10):
        user = str(rng.choice(users))
        batch = [str(u) for u in rng.choice(users, 8)]
        candidates = [str(i) for i in rng.choice(items, size=200, replace=len(items) < 200)]
        for kind, call, arguments in (
            ("user", reader.read_user, (user,)),
            ("batch8", reader.read_users, (batch,)),
            ("user_items", reader.read, (user, candidates)),
        ):
            t0 = time.perf_counter()
            result = call(*arguments)
            if n >= 10:  # warm-up: connections, registry cache
                samples[kind].append((time.perf_counter() - t0) * 1000)
            if kind == "user":
                assert not result[0].empty, f"{online}: no state for user {user}"
            elif kind == "user_items":
                assert len(result.items) == 200
    out: dict = {"reads": reads}
    for kind, prefix in (("user", "user_read"), ("batch8", "batch8_read"), ("user_items", "read")):
        out[f"{prefix}_p50_ms"] = round(float(np.percentile(samples[kind], 50)), 2)
        out[f"{prefix}_p99_ms"] = round(float(np.percentile(samples[kind], 99)), 2)
    return out


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="features-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = dataset(args, tmp)
        interactions = pd.read_parquet(dataset_paths(data)["interactions"])
        users, items = read_side_tables(data)
        repo = copy_definitions(DEFINITIONS, tmp / "repo")
        t0 = time.perf_counter()
        built = build_features(interactions, users, items, repo / "data")
        build_s = time.perf_counter() - t0
        source_rows, online_rows = sum(built.values()), entity_rows(repo)
        redis_proc, redis_addr = start_redis(tmp)
        stores = ["sqlite"] + (["redis"] if redis_addr else [])
        if redis_addr:
            os.environ["REDIS_CONNECTION_STRING"] = redis_addr
        rows, training_set = [], {"rows": 0, "seconds": None}
        try:
            for online in stores:
                FeatureStore(repo, online).apply()
                if online == "sqlite" and not args.skip_training_set:
                    # the offline path is the same for both stores; it also warms DuckDB
                    t0 = time.perf_counter()
                    joined = FeatureStore(repo).training_set(interactions)
                    training_set = {
                        "rows": len(joined),
                        "seconds": round(time.perf_counter() - t0, 2),
                    }
                t0 = time.perf_counter()
                FeatureStore(repo, online).materialize()
                seconds = time.perf_counter() - t0
                row = {
                    "online_store": online,
                    "materialize_s": round(seconds, 2),
                    "source_rows_per_s": round(source_rows / seconds),
                    "online_rows_per_s": round(online_rows / seconds),
                }
                row.update(
                    read_latency(
                        repo,
                        online,
                        interactions.user_id.unique(),
                        interactions.item_id.unique(),
                        args.reads,
                        args.seed,
                    )
                )
                rows.append(row)
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(10)
    return {
        **results_header("features"),
        "dataset": "synthetic" if args.synthetic else "movielens-100k",
        "interactions": len(interactions),
        "feature_rows": built,
        "source_rows": source_rows,
        "online_rows": online_rows,
        "build_s": round(build_s, 2),
        "training_set": training_set,
        "redis": "measured" if redis_addr else "skipped: no redis-server on this machine",
        "rows": rows,
    }


def table(result: dict) -> str:
    head = (
        "| online store | materialize s | source rows/s | online rows/s "
        "| user read p50 / p99 ms | 8 users p50 / p99 ms | user + 200 items p50 / p99 ms |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['online_store']} | {r['materialize_s']} | {r['source_rows_per_s']:,} | "
            f"{r['online_rows_per_s']:,} | {r['user_read_p50_ms']} / {r['user_read_p99_ms']} | "
            f"{r['batch8_read_p50_ms']} / {r['batch8_read_p99_ms']} | "
            f"{r['read_p50_ms']} / {r['read_p99_ms']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=0, help="synthetic interactions")
    parser.add_argument("--reads", type=int, default=300, help="online reads per store")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip-training-set",
        action="store_true",
        help="do not time get_historical_features (its point-in-time join joins every entity "
        "row with every feature row of its key: at 1M interactions it spills tens of GB)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("FEAST_USAGE", "False")
    result = run(args)
    result["table_markdown"] = table(result)
    write_json(result, args.out)
    print(
        f"{result['dataset']}: {result['interactions']:,} interactions -> "
        f"{result['source_rows']:,} feature rows in {result['build_s']}s; "
        f"{result['online_rows']:,} online rows; training set {result['training_set']['rows']:,} "
        f"rows in {result['training_set']['seconds']}s"
    )
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
