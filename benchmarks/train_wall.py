"""``recsys train`` of the two-tower on MovieLens-100k: its wall time, where the time goes, and
the same loop in one process.

(a) ``recsys train --model two_tower`` as a user runs it, in a fresh process each time
    (``--repeats``): the imports, a local Ray, Ray Train's controller and one worker, the
    epochs, the model saved, Ray stopped. Wall seconds, epochs, each epoch's examples/s, the
    best validation nDCG@10, and the parts of the run its manifest records
    (``recsys.training.ray_trainer.run_timing``).
(b) The same fit in this process (``TwoTower.fit``: the same epoch loop over the same batches
    from the same seed), at 1 torch thread (a 1-CPU Ray Train worker's) and at the default:
    its examples/s and validation history. Ray Train's cost per epoch is
    ``1 - (a) / (b at 1 thread)`` in examples/s; its cost per run is (a)'s wall time outside
    the epochs.

``--baseline-tree DIR`` runs (a) a second time from another checkout of the code (e.g. a
``git worktree`` of an earlier commit), interleaved with ours, for a before/after in one run.
``--model multistage --protocol temporal`` does the same for the shipped multi-stage model on
the temporal split (its parts are its two-tower run's; the baseline runs with this tree's
temporal parameters, passed as ``--param``, so both train the same model).

    python -m benchmarks.train_wall [--repeats 2] [--baseline-tree DIR] [--model multistage]

Prints a table and writes ``benchmarks/results/train_wall.json`` (``train_wall_multistage.json``
for the multi-stage model).
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
import pandas as pd
import torch

from recsys.data import movielens
from recsys.data.split import read_split, split, write_split
from recsys.evaluation.tables import results_header
from recsys.files import write_json
from recsys.models.kinds import create_model, protocol_params
from recsys.models.manifest import read_manifest

RESULTS = Path(__file__).resolve().parent / "results" / "train_wall.json"
MULTISTAGE_RESULTS = RESULTS.with_name("train_wall_multistage.json")
WALL_GOAL_S = 20.0  # issue 35: the MovieLens-100k two-tower through recsys train
MULTISTAGE_WALL_GOAL_S = 60.0  # issue 35: the shipped multi-stage model
RATE_GOAL = 50_000  # examples/s per epoch
OVERHEAD_GOAL = 0.15  # Ray Train against the same loop in one process
# The parts of a run, summing to its wall time: the process's start (imports, the local Ray,
# the data read, the examples staged), Ray Train's start up to the loop's first line, the
# epochs' training, the rest of the loop (the network built, validation, reports, the
# checkpoint), the end of the Ray Train run, and what follows (the model saved, Ray stopped).
PARTS = (
    "start_s",
    "worker_group_start_s",
    "epochs_s",
    "loop_rest_s",
    "run_end_s",
    "save_and_exit_s",
)


def movielens_split(directory: Path, protocol: str = "stratified") -> Path:
    """A MovieLens-100k split the demo trains on (seed 42)."""
    dataset = movielens.fetch()
    interactions = pd.read_parquet(dataset / "interactions.parquet")
    train, test = split(interactions, protocol, seed=42)
    return write_split(train, test, directory, side_from=dataset, params={"protocol": protocol})


def cli_run(
    data: Path, out: Path, tree: Path | None, storage: Path, kind: str, params: dict
) -> dict:
    """``recsys train`` in a fresh process (from ``tree``'s code when given): its wall time and
    what its manifest records (a multi-stage model's: its two-tower run's)."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    command = [sys.executable, "-m", "recsys.cli.main", "train", "--data", str(data)]
    command += ["--model", kind, "--out", str(out), "--storage-path", str(storage)]
    command += [a for key, value in params.items() for a in ("--param", f"{key}={value}")]
    t0, at = time.perf_counter(), time.time()
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    log = read_manifest(out).metrics["training"]
    log = log.get("two_tower_log", log)
    timing = log.get("timing")
    row = {
        "code": "baseline tree" if tree else "this tree",
        "wall_s": wall,
        "epochs": len(log["history"]),
        "best_val": log["best"],
        "best_epoch": log["best_epoch"],
        "history": log["history"],
        "examples_per_s": log["metrics"]["examples_per_s"],
        "epoch_s": log["metrics"]["epoch_s"],
        "workers": (timing or {}).get("workers", 1),
    }
    if timing:  # the parts, summing to the wall time
        row["parts"] = {
            "start_s": timing["started_at"] - at + timing["ray_start_s"],
            **{k: timing[k] for k in PARTS[1:-1]},
            "save_and_exit_s": at + wall - timing["done_at"],
        }
    return row


def in_process(data: Path, threads: int, kind: str, params: dict) -> dict:
    """The same fit in this process at ``threads`` torch threads (a multi-stage model's
    two-towers one after the other)."""
    torch.set_num_threads(threads)
    train, users, items = read_split(data)
    t0 = time.perf_counter()
    model = create_model(kind, params).fit(train, users, items)
    wall = time.perf_counter() - t0
    if kind == "multistage":
        model = model.sources.two_tower
    seconds = model.training_log["epoch_seconds"]
    examples = model.training_log["examples"]
    return {
        "threads": threads,
        "wall_s": wall,
        "epochs": len(model.training_log["history"]),
        "best_val": model.training_log["best"],
        "history": model.training_log["history"],
        "epoch_s": float(np.mean(seconds)),
        "examples_per_s": examples / float(np.mean(seconds)),
    }


def markdown(cli: list[dict], here: list[dict]) -> str:
    lines = [
        "| run | wall (s) | epochs | examples/s per epoch | best validation nDCG@10 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in cli:
        lines.append(
            f"| recsys train, Ray Train {r['workers']} worker(s) ({r['code']}) | {r['wall_s']:.1f} "
            f"| {r['epochs']} | {r['examples_per_s']:,.0f} | {r['best_val']:.4f} |"
        )
    for r in here:
        lines.append(
            f"| the same loop in one process, {r['threads']} thread(s) | {r['wall_s']:.1f} "
            f"| {r['epochs']} | {r['examples_per_s']:,.0f} | {r['best_val']:.4f} |"
        )
    ours = [r for r in cli if "parts" in r]
    if ours:
        lines += ["", "| part of recsys train (s) | " + " | ".join(PARTS) + " |"]
        lines.append("|---|" + "---:|" * len(PARTS))
        for i, r in enumerate(ours):
            cells = " | ".join(f"{r['parts'].get(p, 0.0):.1f}" for p in PARTS)
            lines.append(f"| run {i + 1} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--baseline-tree", type=Path, default=None)
    p.add_argument("--model", choices=("two_tower", "multistage"), default="two_tower")
    p.add_argument("--protocol", choices=("stratified", "temporal"), default="stratified")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.out = args.out or (MULTISTAGE_RESULTS if args.model == "multistage" else RESULTS)
    params = protocol_params(args.model, args.protocol)
    flat = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in params.items()}
    with tempfile.TemporaryDirectory(prefix="train-wall-") as tmp:
        data = movielens_split(Path(tmp) / "split", args.protocol)
        cli = []
        for i in range(args.repeats):
            for tree in (None, args.baseline_tree) if args.baseline_tree else (None,):
                tag = "base" if tree else "ours"
                out, storage = Path(tmp) / f"{tag}-{i}", Path(tmp) / "checkpoints"
                cli.append(cli_run(data, out, tree, storage, args.model, flat))
        here = [in_process(data, n, args.model, params) for n in (1, torch.get_num_threads())]
    ours = [r for r in cli if r["code"] == "this tree"]
    best_wall = min(r["wall_s"] for r in ours)
    goal = MULTISTAGE_WALL_GOAL_S if args.model == "multistage" else WALL_GOAL_S
    rate = float(np.median([r["examples_per_s"] for r in ours]))
    overhead = 1 - rate / here[0]["examples_per_s"]
    result = {
        **results_header("train_wall"),
        "config": {
            "repeats": args.repeats,
            "baseline_tree": str(args.baseline_tree or ""),
            "model": args.model,
            "protocol": args.protocol,
            "params": params,
        },
        "recsys_train": cli,
        "in_process": here,
        "fastest_wall_s": best_wall,
        "wall_goal_s": goal,
        "meets_wall_goal": best_wall <= goal,
        "median_examples_per_s": rate,
        "rate_goal": RATE_GOAL,
        "meets_rate_goal": rate >= RATE_GOAL,
        "ray_train_epoch_overhead": overhead,
        "overhead_basis": "1 - recsys train's median examples/s per epoch / the same loop "
        "in one process at 1 thread",
        "overhead_goal": OVERHEAD_GOAL,
        "meets_overhead_goal": overhead <= OVERHEAD_GOAL,
    }
    result["table_markdown"] = markdown(cli, here)
    write_json(result, args.out)
    print(result["table_markdown"])
    print(
        f"\nfastest wall {best_wall:.1f} s (goal {goal:.0f}); {rate:,.0f} examples/s per "
        f"epoch (goal {RATE_GOAL:,}); Ray Train per epoch {overhead:+.1%} against one process"
    )
    print(f"results -> {args.out}")
    return result


if __name__ == "__main__":
    main()
