"""Scaling out, measured: the two-tower on a local two-node Ray cluster, data-parallel (DDP)
over two workers, one per node, against one worker, on the synthetic 1M case.

    python -m benchmarks.train_nodes [--interactions 1000000] [--nodes 2] [--epochs 2]

A ``ray.cluster_utils.Cluster`` starts a head node with no CPUs (the driver's) and ``--nodes``
worker nodes of ``--cpus-per-node`` CPUs each: raylets of their own, with their own node ids
and object stores, on this machine. The same examples train through ``train_two_tower`` with
one worker, then with one worker per node (``SPREAD``): each worker holds its share in memory
and DDP averages the gradients over gloo between the nodes. The check: the workers' model ends
within ``--tolerance`` of the one worker's validation nDCG@10 (DDP does not train the same
steps: each worker's batch is its own, so the in-batch negatives differ).

Prints a table and appends the run to ``benchmarks/results/train_nodes.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.multinode import placement
from benchmarks.train_throughput import make_data
from recsys.config import ray_settings
from recsys.evaluation.tables import append_run, results_header
from recsys.models.two_tower import TwoTowerConfig
from recsys.training.runs import RayRun
from recsys.training.two_tower import train_two_tower

RESULTS = Path(__file__).resolve().parent / "results" / "train_nodes.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=50_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus-per-node", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--tolerance", type=float, default=0.01, help="validation nDCG@10, absolute")
    p.add_argument("--record", type=Path, default=RESULTS)
    return p.parse_args(argv)


def train_once(data: dict, cfg: TwoTowerConfig, storage: Path, workers: int) -> dict:
    """One Ray Train run of ``workers`` workers (spread over the nodes): wall time, the
    run's timing, the last epoch's examples/s over all workers, the validation history."""
    run = RayRun(
        storage_path=str(storage),
        name=f"nodes-{workers}",
        num_workers=workers,
        placement_strategy="SPREAD",
    )
    started = time.perf_counter()
    model = train_two_tower(data["interactions"], data["users"], data["items"], cfg, run)
    wall = time.perf_counter() - started
    log = model.training_log
    metrics = log["metrics"]
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "epoch_s": round(metrics["epoch_s"], 2),
        # rank 0's share and epoch time: the workers step together under DDP
        "examples_per_s": round(metrics["examples_per_s"] * workers),
        "val_ndcg": round(log["best"], 4),
        "history": [round(h, 4) for h in log["history"]],
        "timing": {k: round(v, 2) for k, v in log["timing"].items() if k.endswith("_s")},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    ray_settings()
    from ray.cluster_utils import Cluster

    cfg = TwoTowerConfig(epochs=args.epochs, patience=args.epochs)
    with tempfile.TemporaryDirectory(prefix="train-nodes-") as tmp:
        data = make_data(args, Path(tmp) / "data")
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
        )
        for _ in range(args.nodes):
            cluster.add_node(num_cpus=args.cpus_per_node)
        cluster.wait_for_nodes()
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            runs = [train_once(data, cfg, Path(tmp) / "ckpt", w) for w in (1, args.nodes)]
            nodes = placement()
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()
            os.environ.pop("RAY_ADDRESS", None)
    one, many = runs
    record = {
        "interactions": args.interactions,
        "users": args.users,
        "items": args.items,
        "epochs": args.epochs,
        "nodes": args.nodes,
        "cpus_per_node": args.cpus_per_node,
        "runs": runs,
        "speedup_epoch": round(one["epoch_s"] / many["epoch_s"], 3),
        "speedup_wall": round(one["wall_s"] / many["wall_s"], 3),
        "val_ndcg_gap": round(many["val_ndcg"] - one["val_ndcg"], 4),
        "check": abs(many["val_ndcg"] - one["val_ndcg"]) <= args.tolerance,
        "tolerance": args.tolerance,
        # the workers' nodes (the GCS keeps the finished runs' actors): both runs' together
        "train_workers_by_node": nodes["train_workers"],
    } | results_header("train_nodes")
    append_run("train_nodes", record, args.record, table)
    return record


COLUMNS = ("interactions", "nodes × CPUs", "workers", "epoch s", "examples/s", "wall s")


def table(records: list[dict]) -> str:
    head = (*COLUMNS, "val nDCG@10", "speed-up (epoch)", "check")
    rows = [head, ("---",) * len(head)]
    for r in records:
        for run in r["runs"]:
            last = run is r["runs"][-1]
            rows.append(
                (
                    f"{r['interactions']:,}",
                    f"{r['nodes']} × {r['cpus_per_node']}",
                    run["workers"],
                    run["epoch_s"],
                    f"{run['examples_per_s']:,}",
                    run["wall_s"],
                    run["val_ndcg"],
                    f"{r['speedup_epoch']}×" if last else "",
                    ("pass" if r["check"] else "FAIL") if last else "",
                )
            )
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


if __name__ == "__main__":
    main()
