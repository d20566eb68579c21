"""GPU check, for a lent GPU machine: the two-tower and the multi-stage model's DCN ranker trained
with ``--gpu`` (Ray Train on CUDA, bfloat16 mixed precision) against the same runs on the CPU.

Same data, same seeds, the one training entry point (``recsys.training.train.fit_model``); each
model is scored on the held-out split through the one recommendation path. A check passes when
the GPU model's nDCG@10 is within ``--tolerance`` of the CPU model's (the runs differ only in
the device's arithmetic: bfloat16 products, other summation orders). examples/s per epoch and
the fit's wall time are recorded for both.

The data is a synthetic MovieLens-like world generated here (a GPU machine may reach nothing
outside), or ``--data`` (a split directory, ``recsys data split``'s output).

    python -m benchmarks.gpu_check [--interactions 300000] [--epochs 4]    # or: make gpu-check

Prints a table and writes ``benchmarks/results/gpu_check.json``; exits 1 when a check fails and
2, writing nothing, where no CUDA device is visible.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from recsys.config import ensure_ray
from recsys.data.split import read_split, split, write_split
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.evaluation.metrics import ranking_metrics
from recsys.evaluation.tables import results_header
from recsys.files import write_json
from recsys.recommend import Request, recommend_frame
from recsys.training.args import TrainArgs
from recsys.training.train import fit_model

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"
NO_GPU = 2  # the exit code where there is nothing to check


def models(epochs: int) -> dict[str, tuple[str, dict]]:
    """What is checked: the label → (kind, parameters)."""
    return {
        "two_tower": ("two_tower", {"epochs": epochs, "patience": 0}),
        "multistage-dcn": ("multistage", {"ranker": "dcn"}),
    }


def world_split(directory: Path, interactions: int) -> Path:
    """A synthetic MovieLens-like world (ratings, users, items with their text), split in
    time as the temporal protocol does."""
    users, items = max(interactions // 100, 100), max(interactions // 60, 100)
    config = SynthConfig(n_users=users, n_items=items, n_interactions=interactions, sequence=1.0)
    generate(config, directory / "world", progress=False)
    rows = pd.read_parquet(directory / "world" / "interactions.parquet")
    train, test = split(rows, "temporal", seed=42)
    return write_split(
        train,
        test,
        directory / "split",
        side_from=directory / "world",
        params={"protocol": "temporal"},
    )


def examples_per_s(model) -> float | None:
    """The last epoch's examples/s of the model's network (the two-tower's, the DCN's)."""
    log = getattr(model, "training_log", None) or {}
    log = log.get("ranker_log") or log
    return (log.get("metrics") or {}).get("examples_per_s")


def run(label: str, kind: str, params: dict, data: Path, gpu: bool, tmp: Path) -> dict:
    train, users, items = read_split(data)
    test = pd.read_parquet(data / "test.parquet")
    device = "cuda" if gpu else "cpu"
    args = TrainArgs(
        data=data,
        model=kind,
        out=tmp / f"{label}-{device}",
        params=params,
        gpu=gpu,
        storage_path=str(tmp / "checkpoints"),
        run_name=f"{label}-{device}",
    )
    t0 = time.perf_counter()
    model = fit_model(kind, train, users, items, params, args=args)
    fit_s = time.perf_counter() - t0
    user_ids = sorted(set(train["user_id"]) & set(test["user_id"]))
    recs = recommend_frame(model, user_ids, Request(k=10), history=train)
    metrics = ranking_metrics(recs, test, 10, train=train)
    return {
        "model": label,
        "device": device,
        "ndcg": metrics.ndcg,
        "fit_s": fit_s,
        "examples_per_s": examples_per_s(model),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="a split directory")
    p.add_argument("--interactions", type=int, default=300_000)
    p.add_argument("--epochs", type=int, default=4, help="the two-tower's")
    p.add_argument("--tolerance", type=float, default=0.015, help="nDCG@10, absolute")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--devices",
        default="cpu,cuda",
        help="the reference's device and the checked one (cpu,cpu: a dry run of the check)",
    )
    args = p.parse_args(argv)
    devices = [d == "cuda" for d in args.devices.split(",")]
    if any(devices) and not torch.cuda.is_available():
        print("gpu check: no CUDA device is visible here; nothing to check", file=sys.stderr)
        return NO_GPU
    gpu_name = torch.cuda.get_device_name(0) if any(devices) else None
    ensure_ray(num_cpus=None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = args.data or world_split(Path(tmp), args.interactions)
        for label, (kind, params) in models(args.epochs).items():
            for i, gpu in enumerate(devices):
                rows.append(run(label, kind, params, data, gpu, Path(tmp) / str(i)))
    checks = []
    for label in models(args.epochs):
        cpu, gpu = (r for r in rows if r["model"] == label)
        speedup = (
            gpu["examples_per_s"] / cpu["examples_per_s"]
            if gpu["examples_per_s"] and cpu["examples_per_s"]
            else None
        )
        gap = abs(gpu["ndcg"] - cpu["ndcg"])
        checks.append(
            {"model": label, "ndcg_gap": gap, "passed": gap <= args.tolerance, "speedup": speedup}
        )
    lines = [
        "| model | device | nDCG@10 | examples/s per epoch | fit (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        rate = f"{r['examples_per_s']:,.0f}" if r["examples_per_s"] else "-"
        lines.append(
            f"| {r['model']} | {r['device']} | {r['ndcg']:.4f} | {rate} | {r['fit_s']:.1f} |"
        )
    result = {
        **results_header("gpu_check", accelerator=gpu_name if any(devices) else None),
        "config": {**vars(args), "data": str(args.data or "synthetic"), "out": str(args.out)},
        "rows": rows,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "table_markdown": "\n".join(lines),
    }
    write_json(result, args.out)
    print(result["table_markdown"])
    for c in checks:
        verdict = "ok" if c["passed"] else "FAILED"
        print(f"{c['model']}: nDCG gap {c['ndcg_gap']:.4f} (tolerance {args.tolerance}) {verdict}")
    print(f"results -> {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
