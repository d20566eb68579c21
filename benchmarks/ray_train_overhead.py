"""Ray Train's fixed cost on a local Ray: a TorchTrainer run whose workers do nothing but
report (each report with a checkpoint, as our loops report an epoch), timed end to end, at the
controller poll interval ``ensure_ray`` sets for a local Ray and at Ray's default.

Each setting runs in a fresh process with its own local Ray (the interval is read when the
controller starts), in one invocation:

    python benchmarks/ray_train_overhead.py [--reports 5] [--repeats 2]

Prints a table and writes ``benchmarks/results/ray_train_overhead.json``.
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

from recsys.config import TRAIN_POLL_S, ensure_ray
from recsys.evaluation.tables import results_header

RESULTS = Path(__file__).parent / "results" / "ray_train_overhead.json"
RAY_DEFAULT_POLL_S = "2.0"


def report_only(config: dict) -> None:
    """A training function with no training: ``reports`` checkpointed reports."""
    import ray.train

    for epoch in range(config["reports"]):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "state").write_text(str(epoch))
            ray.train.report({"epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def runs(reports: int, repeats: int) -> list[float]:
    """Seconds per ``TorchTrainer.fit`` (here, on a local Ray that ``ensure_ray`` starts)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ensure_ray()
    seconds = []
    with tempfile.TemporaryDirectory() as storage:
        for i in range(repeats):
            trainer = TorchTrainer(
                report_only,
                train_loop_config={"reports": reports},
                scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                run_config=RunConfig(name=f"overhead-{i}", storage_path=storage),
            )
            start = time.perf_counter()
            trainer.fit()
            seconds.append(round(time.perf_counter() - start, 2))
    return seconds


def table(result: dict) -> str:
    lines = [
        f"| setting | poll s | fit s ({result['reports']} checkpointed reports, each run) |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['setting']} | {row['poll_s']} | {', '.join(map(str, row['fit_s']))} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(runs(args.reports, args.repeats)))
        return
    rows = []
    for name, poll in (("ours", TRAIN_POLL_S), ("ray default", RAY_DEFAULT_POLL_S)):
        env = {**os.environ, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": poll}
        cmd = [sys.executable, __file__, "--child", "--reports", str(args.reports)]
        cmd += ["--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        seconds = json.loads(out.strip().splitlines()[-1])
        rows.append({"setting": name, "poll_s": float(poll), "fit_s": seconds})
    result = {**results_header("ray_train_overhead"), "reports": args.reports, "rows": rows}
    result["table_markdown"] = table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
