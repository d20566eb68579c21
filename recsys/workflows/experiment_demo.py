"""``recsys experiment demo`` (``make demo-experiment``): the multi-stage model against the
popularity baseline on live traffic, with MovieLens-100k's held-out users as the simulated
users: an A/B split, then interleaved, then popularity in the shadow.

A simulated user asks for 10 items and clicks those it really rated afterwards (its held-out
interactions), each with the position bias ``1 / log2(rank + 1)`` (rank 1 always, rank 10 a
third of the time), drawn from a generator seeded by the user; the clicks go to ``/events``.
In the shadow run the user then also rates its next ``NEXT_EVENTS`` held-out items (what it
did next whatever it was shown: the events a shadow's lists are replayed against).
The app is the real one (Ray Serve over HTTP, Feast online); the status reads its logs.
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from recsys import serve_local, serve_ops
from recsys.config import local_ray
from recsys.data import movielens
from recsys.data.ingest import ingest
from recsys.data.io import ITEM, RATING, TS, USER, interactions_checksum
from recsys.data.split import read_split, split_lineage
from recsys.experiments import metrics
from recsys.experiments.spec import Experiment
from recsys.features.repository import copy_definitions
from recsys.features.store import materialize_split
from recsys.models.kinds import create_model
from recsys.registry import Registry
from recsys.workflows import experiment as flow
from recsys.workflows.http_demo import post

Log = Callable[[str], None]
NEXT_EVENTS = 3


@dataclass
class ExperimentDemo:
    workdir: Path
    feature_repo: Path
    port: int = 8000
    users: int | None = None  # held-out users replayed per experiment (default: all)
    threads: int = 4
    min_users: int = 20  # per arm, before a decision (low: what each design needs shows)


def run_experiment_demo(demo: ExperimentDemo, log: Log = print) -> dict:
    """Train both models, serve the multi-stage one, run a split, an interleaving and a
    shadow experiment against popularity with simulated users; print each status and how
    many users each needed to decide."""
    shutil.rmtree(demo.workdir, ignore_errors=True)
    split = demo.workdir / "split"
    ingest(movielens.NAME, split, protocol="temporal")
    train, users, items = read_split(split)
    registry = Registry(demo.workdir / "registry")
    versions = {}
    for kind in ("multistage", "popularity"):
        params = {"crossfit": "user-time"} if kind == "multistage" else None  # what comes next
        model = create_model(kind, params).fit(train, users, items)
        model.save(
            demo.workdir / "models" / kind,
            version=f"{kind}-demo",
            data_checksum=interactions_checksum(train),
            data_lineage=split_lineage(split),  # what the store is built from: served checks
        )
        versions[kind] = registry.register(demo.workdir / "models" / kind).version
        log(f"trained {kind}: {versions[kind]}")
    registry.promote(versions["multistage"], reason="the experiment demo's champion")
    repo = copy_definitions(demo.feature_repo, demo.workdir / "repo")
    materialize_split(split, repo)
    dataset = movielens.fetch()
    url = serve_ops.start_local(
        registry.versions_dir(),
        versions["multistage"],
        repo,
        dataset / "items.parquet",
        demo.workdir / "app",
        demo.port,
        log,
    )
    ours = local_ray() is not None
    results = {}
    try:
        test = pd.read_parquet(split / "test.parquet")
        watched = test.groupby(USER)[ITEM].agg(set)
        replayed = sorted(watched.index)[: demo.users]
        for mode in ("split", "interleave", "shadow"):
            spec = Experiment(
                name=f"demo-{mode}",
                control=versions["multistage"],
                challenger=versions["popularity"],
                mode=mode,
                share=1.0 if mode == "shadow" else 0.5,
                min_users=demo.min_users,
            )
            flow.start(str(registry.uri), spec)
            after = next_events(test) if mode == "shadow" else None
            clicks = replay(url, replayed, watched, demo.threads, after)
            log(f"== {spec.name}: {len(replayed)} users replayed, {clicks} clicks")
            logs = {"predictions": demo.workdir / "app" / "predictions"}
            logs["events"] = demo.workdir / "app" / "events"
            result = flow.stop(str(registry.uri), spec.name, **logs)
            result["users_needed"] = users_needed(spec, **logs)
            log(status_lines(result))
            results[mode] = result
    finally:
        serve_local.stop(local_ray=ours)
        log("Serve shut down")
    return results


def next_events(test: pd.DataFrame, n: int = NEXT_EVENTS) -> pd.Series:
    """Each user's first ``n`` held-out ratings in time order, ``[(item, rating), ...]``."""
    first = test.sort_values(TS, kind="stable").groupby(USER, sort=False).head(n)
    return first.groupby(USER)[[ITEM, RATING]].apply(lambda g: list(g.itertuples(index=False)))


def replay(
    url: str, users: list[str], watched: pd.Series, threads: int, after: pd.Series | None = None
) -> int:
    """Each user asks for 10 items and clicks the ones it rated later, with position bias;
    with ``after``, it then rates those items (what it did next, whatever it was shown)."""

    def one(user: str) -> int:
        answer = post(url, "/recommend", {"user_id": user, "k": 10})[1]
        rng = random.Random(f"demo|{user}")
        clicks = 0
        for item in answer["items"]:
            if item["item_id"] in watched[user] and rng.random() < 1 / math.log2(item["rank"] + 1):
                post(url, "/events", {"user_id": user, "item_id": item["item_id"], "type": "click"})
                clicks += 1
        for item, rating in after.get(user, []) if after is not None else []:
            rated = {"user_id": user, "item_id": str(item), "type": "rating"}
            post(url, "/events", rated | {"rating": float(rating)})
        return clicks

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(one, users))


def users_needed(
    spec: Experiment, *, predictions: Path, events: Path, step: int = 10
) -> int | None:
    """The fewest users (every ``step``, in the order they came) at which the decision named
    a winner: the always-valid p-value may be read at every look."""
    joined, _ = flow.answers_with_clicks(spec.name, predictions, events)
    order = joined.groupby(USER)["ts"].min().sort_values(kind="stable").index
    for n in range(step, len(order) + step, step):
        kept = joined[joined[USER].isin(set(order[:n]))]
        if metrics.status(spec, kept)["decision"]["winner"] is not None:
            return min(n, len(order))
    return None


def status_lines(result: dict) -> str:
    """The per-arm table, the sample-ratio check, the decision and the users it needed."""
    needed = result["users_needed"]
    tail = f"decided after {needed} users" if needed else "no decision within the users replayed"
    return flow.status_table(result) + f"\n{tail}"
