"""What a request's model stages cost as the catalog grows: 10k, 200k and 1M items.

    python -m benchmarks.catalog_scale [--items 10000,200000,1000000] [--baseline-tree DIR]

Per catalog size, one synthetic dataset (20,000 users, 200,000 interactions, the catalog table
holding every item, most of them cold: the two-tower's item tower embeds them all) and the
scale benchmark's multi-stage model on it (the two-tower's top 100 and the 50 most popular,
cross-fitted in time, the LightGBM ranker; ``benchmarks/scale.py``), trained here in-process
and saved. Then, in a fresh process per code tree, the saved model is loaded and
``recsys.recommend.recommend`` (the one path: candidates, rank, order) answers the same users
in batches of 1 and 16, one thread as a Serve replica has (``OMP_NUM_THREADS=1``, what Ray
sets for a replica): milliseconds per user (median over batches) and the process's memory
after loading and at its peak. ``--baseline-tree`` times an older checkout of the code on the
same saved models in the same run (a ``git worktree`` of the commit before), so the ratio is
measured on one machine at one time.

Results: ``benchmarks/results/catalog_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.scale import scalable_multistage
from recsys.data.io import read_side_tables
from recsys.data.split import split, write_split
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.data.validate import load_interactions
from recsys.evaluation.tables import publish, results_header
from recsys.models.kinds import load_model
from recsys.models.two_tower import TwoTowerConfig
from recsys.recommend import Request, prepare, recommend
from recsys.state.offline import states_from_interactions

RESULTS = Path(__file__).resolve().parent / "results" / "catalog_scale.json"
ROOT = Path(__file__).resolve().parent.parent
USERS, INTERACTIONS = 20_000, 200_000
BATCHES = (1, 16)


def build(n_items: int, work: Path, index_kind: str) -> dict:
    """Generate the dataset, train and save the model; return where they are and how long."""

    data, split_dir = work / "data", work / "split"
    generate(
        SynthConfig(n_users=USERS, n_items=n_items, n_interactions=INTERACTIONS),
        data,
        progress=False,
    )
    clean, _ = load_interactions(data, rating_range=(1.0, 5.0))
    train, test = split(clean, "global-time")
    write_split(train, test, split_dir, params={"protocol": "global-time"}, side_from=data)
    users, items = read_side_tables(split_dir)
    tower = TwoTowerConfig(epochs=1, history_len=20, index={"kind": index_kind})
    start = time.perf_counter()
    model = scalable_multistage(tower, ranker_users=2_000).fit(train, users, items)
    fit_s = time.perf_counter() - start
    model.save(work / "model")
    index = model.sources.two_tower.index_info()
    return {
        "items": n_items,
        "catalog": len(model.item_ids),
        "fit_s": round(fit_s, 1),
        "index": {k: index[k] for k in ("kind", "precision", "recall_at_k", "build_seconds")},
        "model": str(work / "model"),
        "history": str(split_dir / "train.parquet"),
    }


def time_path(model_dir: str, history: str, repeats: int) -> dict:
    """In this process: load the model, answer the sample's users; ms per user, memory."""
    import pandas as pd

    train = pd.read_parquet(history)
    users = sorted(train.user_id.astype(str).unique())[:: max(1, train.user_id.nunique() // 256)]
    users = users[:256]
    before = _memory_mib()
    model = load_model(model_dir)
    prepared = prepare(model)
    loaded = _memory_mib()
    states = states_from_interactions(train, users, prepared.recent_n)
    del train
    out = {"rss_before_load_mib": before["rss"], "rss_loaded_mib": loaded["rss"]}
    for size in BATCHES:
        recommend(prepared, states[:size], Request())  # warm
        per_user = []
        for _ in range(repeats):
            for a in range(0, min(len(states), 16 * size if size > 1 else 64), size):
                batch = states[a : a + size]
                start = time.perf_counter()
                recommend(prepared, batch, Request())
                per_user.append((time.perf_counter() - start) * 1000 / len(batch))
        out[f"ms_per_user_batch_{size}"] = round(float(np.median(per_user)), 3)
    out["rss_peak_mib"] = _memory_mib()["hwm"]
    return out


def _memory_mib() -> dict:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, value = line.split(":")
            fields["rss" if name == "VmRSS" else "hwm"] = round(int(value.split()[0]) / 1024, 1)
    return fields


def time_in_tree(tree: Path, built: dict, repeats: int) -> dict:
    """:func:`time_path` in a fresh Python whose ``recsys`` is the checkout at ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "FEAST_USAGE": "False", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--time", built["model"], built["history"]]
    done = subprocess.run(
        [*command, "--repeats", str(repeats)], env=env, capture_output=True, text=True, cwd=tree
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = (
        "| catalog | code | ms/user, batch 1 | ms/user, batch 16 | RSS loaded MiB | RSS peak MiB |"
    )
    lines = [head, "|---|---|---|---|---|---|"]
    for row in rows:
        for tree, t in row["timings"].items():
            if "error" in t:
                lines.append(f"| {row['catalog']:,} | {tree} | {t['error']} | | | |")
                continue
            lines.append(
                f"| {row['catalog']:,} | {tree} | {t['ms_per_user_batch_1']} | "
                f"{t['ms_per_user_batch_16']} | {t['rss_loaded_mib']} | {t['rss_peak_mib']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="10000,200000,1000000")
    parser.add_argument("--index", default="ivf", help="the item index kind above 50k items")
    parser.add_argument("--baseline-tree", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--time", nargs=2, metavar=("MODEL", "HISTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:  # the child of time_in_tree
        print(json.dumps(time_path(*args.time, args.repeats)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="catalog-") as tmp:
        for n in (int(x) for x in args.items.split(",")):
            work = (args.workdir or Path(tmp)) / f"items-{n}"
            built = build(n, work, args.index if n > 50_000 else "auto")
            trees = {"this": ROOT} | (
                {"baseline": args.baseline_tree} if args.baseline_tree else {}
            )
            built["timings"] = {
                name: time_in_tree(t, built, args.repeats) for name, t in trees.items()
            }
            rows.append(built)
            result = results_header("catalog_scale") | {
                "users": USERS,
                "interactions": INTERACTIONS,
                "rows": [_recorded(r) for r in rows],
                "table_markdown": table(rows),
            }
            publish(result, args.out)  # after each size: a later one may not finish


def _recorded(row: dict) -> dict:
    """A catalog's row as the results file keeps it (not the run's temporary paths)."""
    return {k: v for k, v in row.items() if k not in ("model", "history")}


if __name__ == "__main__":
    main()
