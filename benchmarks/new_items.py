"""New items at run time on the real app, under load: ``POST /items``, then how long until a
user whose history fits the item is answered with it, with every replica folding the item log
on its next request; and what a fold costs a replica (one version, in this process).

    python -m benchmarks.new_items [--rounds 10] [--load-threads 4]

Each round adds two items nobody has rated (a romantic comedy and a space adventure, new ids
each round) and asks, for a comedy fan (MovieLens user 196) and a science-fiction fan (user
1), for the best of the two: the time from the 202 to the first answer that holds them, and
whether each user's pick is the item of its taste. Load threads ask for other users all the
while; every answer must be a 200. The app, its store and models are the experiment demo's
(``make demo-experiment`` first). Prints a table and writes ``benchmarks/results/new_items.json``.
"""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

from benchmarks.shadow_load import demo_main, demo_registry, figures
from recsys import serve_local, serve_ops
from recsys.config import local_ray
from recsys.data import movielens
from recsys.data.io import read_titles
from recsys.models.kinds import load_model
from recsys.recommend import prepare
from recsys.recommend.added import with_added

RESULTS = Path(__file__).resolve().parent / "results" / "new_items.json"
FANS = {"196": "comedy", "1": "space"}  # MovieLens users whose histories fit one item each
DEADLINE_S = 30.0


def round_items(n: int) -> list[dict]:
    return [
        {
            "item_id": f"bench-{n}-comedy",
            "title": f"Wedding Bells, Part {n}",
            "genres": ["Comedy", "Romance"],
            "release_year": 1998,
            "description": "Two rival wedding planners fall in love.",
        },
        {
            "item_id": f"bench-{n}-space",
            "title": f"Galaxy Patrol {n}",
            "genres": ["Action", "Adventure", "Sci-Fi"],
            "release_year": 1998,
            "description": "A starship crew fights the empire across the galaxy.",
        },
    ]


def fold_cost(model_dir: Path, titles: dict, rounds: int) -> dict:
    """What one replica pays to fold a batch of two new items into a loaded version."""
    prepared = prepare(load_model(model_dir), "v", titles)
    times = []
    for n in range(rounds):
        t0 = time.perf_counter()
        prepared = with_added(prepared, pd.DataFrame(round_items(1000 + n)))
        times.append(time.perf_counter() - t0)
    return {"fold_ms_median": 1000 * statistics.median(times), "catalog": len(prepared.item_ids)}


def run(args) -> dict:
    workdir = Path(args.workdir)
    registry = demo_registry(workdir)
    version = registry.champion().version
    app = workdir / "new-items-bench-app"
    shutil.rmtree(app, ignore_errors=True)
    catalog = movielens.fetch() / "items.parquet"
    cost = fold_cost(registry.versions_dir() / version, read_titles(catalog), args.rounds)
    url = serve_ops.start_local(
        registry.versions_dir(), version, workdir / "repo", catalog, app, args.port, print
    )
    ours = local_ray() is not None
    stop, statuses = threading.Event(), []

    def load(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            n = k
            while not stop.is_set():
                user = str(100 + n % 700)
                statuses.append(client.post("/recommend", json={"user_id": user}).status_code)
                n += args.load_threads

    threads = [threading.Thread(target=load, args=(k,)) for k in range(args.load_threads)]
    rounds = []
    try:
        [t.start() for t in threads]
        time.sleep(2.0)
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in range(args.rounds):
                rounds.append(one_round(client, n))
    finally:
        stop.set()
        [t.join() for t in threads]
        serve_local.stop(local_ray=ours)
    served = [r["served_s"] for r in rounds if r["served_s"] is not None]
    return {
        "version": version,
        "replicas": serve_ops.local_replicas(),
        "rounds": len(rounds),
        "served_s_median": statistics.median(served) if served else None,
        "served_s_max": max(served) if served else None,
        "never_served": sum(r["served_s"] is None for r in rounds),
        "fitting_pick_share": sum(r["fits"] for r in rounds) / max(1, len(rounds) * len(FANS)),
        "load_requests": len(statuses),
        "load_failed": sum(s != 200 for s in statuses),
        **cost,
        "per_round": rounds,
    }


def one_round(client: httpx.Client, n: int) -> dict:
    items = round_items(n)
    ids = {item["item_id"].rsplit("-", 1)[1]: item["item_id"] for item in items}
    posted = client.post("/items", json={"items": items})
    t0 = time.perf_counter()
    if posted.status_code != 202:
        raise RuntimeError(f"POST /items: {posted.status_code} {posted.text}")
    picks, served_s = {}, None
    while time.perf_counter() - t0 < DEADLINE_S and len(picks) < len(FANS):
        for user in FANS:
            body = {"user_id": user, "k": 1, "candidates": list(ids.values())}
            items = client.post("/recommend", json=body).json().get("items", [])
            if items and user not in picks:
                picks[user] = items[0]["item_id"]
        if picks and served_s is None:
            served_s = time.perf_counter() - t0
    fits = sum(picks.get(user) == ids[taste] for user, taste in FANS.items())
    return {"round": n, "served_s": served_s, "picks": picks, "fits": fits}


def table(r: dict) -> str:
    shown = "n/a" if r["served_s_median"] is None else f"{r['served_s_median']:.3f}"
    rows = [
        ("rounds (2 new items each)", r["rounds"]),
        ("fused replicas", r["replicas"]),
        ("s from the 202 to an answer with them: median", shown),
        ("  max", "n/a" if r["served_s_max"] is None else f"{r['served_s_max']:.3f}"),
        ("rounds never served within 30 s", r["never_served"]),
        ("fans given the item of their taste", f"{r['fitting_pick_share']:.0%}"),
        ("requests under load (failed)", f"{r['load_requests']} ({r['load_failed']})"),
        ("one replica's fold of 2 items: median ms", f"{r['fold_ms_median']:.1f}"),
        ("catalog after the folds", r["catalog"]),
    ]
    return figures(rows)


def main() -> None:
    options = {
        "--rounds": {"type": int, "default": 10},
        "--load-threads": {"type": int, "default": 4},
    }
    demo_main("new_items", __doc__, RESULTS, run, table, options)


if __name__ == "__main__":
    main()
