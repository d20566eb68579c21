"""A serving replica lost under load: the local app (fused topology, two replicas, the demo's
champion, HAProxy when it is installed) under a closed-loop client at concurrency 16; one
replica's process is killed (SIGKILL) mid-run. Reports the failed requests, the seconds until
throughput is back to 90% of what it was before the kill, and whether Serve replaced the
replica. Writes ``benchmarks/results/replica_loss.json`` and prints a table.

    python -m benchmarks.replica_loss [--seconds 40] [--kill-at 12] [--concurrency 16]

Run it after ``make demo`` (it serves the registry's champion from ``feature_repo``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from benchmarks.serving_load import request_bodies, timed_requests
from recsys import serve_ops
from recsys.config import ensure_ray, free_port, recsys_home
from recsys.evaluation.tables import results_header
from recsys.registry import Registry

RESULTS = Path(__file__).resolve().parent / "results" / "replica_loss.json"
TARGET = {"failed_share": 0.001, "recovery_s": 10.0}
REPLICA_CLASS = f"ServeReplica:{serve_ops.APP}:Ingress"


def replica_pids() -> list[int]:
    """The process ids of the Ingress replicas alive now (Ray titles each actor's process
    ``ray::<class>``; the state API would need the dashboard, which a local Ray here lacks)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if cmdline.startswith(f"ray::{REPLICA_CLASS}"):
            found.append(int(proc.info["pid"]))
    return sorted(found)


def recovery(done: list[tuple[float, float, bool]], kill_at: float, seconds: float) -> dict:
    """Per-second throughput before and after the kill, and when it came back."""
    ok_times = np.asarray([t for t, _, ok in done if ok])
    per_second = np.histogram(ok_times, bins=np.arange(0, int(seconds) + 1))[0]
    before = per_second[2 : int(kill_at)]  # the first seconds warm the connections
    baseline = float(before.mean()) if len(before) else 0.0
    back = None
    for s in range(int(kill_at), len(per_second) - 2):
        if (per_second[s : s + 3] >= 0.9 * baseline).all():
            back = s - kill_at
            break
    return {
        "rps_before": round(baseline, 1),
        "rps_after": round(float(per_second[int(kill_at) + 1 :].mean()), 1),
        "recovery_s": None if back is None else round(max(back, 0.0), 1),
        "per_second": per_second.tolist(),
    }


def table(result: dict) -> str:
    return (
        "| requests | failed | failed share | req/s before | after | recovery s | replaced |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['requests']} | {result['failed']} | {result['failed_share']:.3%} "
        f"| {result['rps_before']} | {result['rps_after']} | {result['recovery_s']} "
        f"| {result['replaced']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--kill-at", type=float, default=12)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--feature-repo", default="feature_repo")
    parser.add_argument("--workdir", default=str(recsys_home() / "runs" / "replica-loss"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    registry = Registry()
    champion = registry.champion()
    if champion is None:
        raise SystemExit(f"no champion in the registry {registry.uri}; run `make demo` first")
    os.environ.setdefault("FEAST_USAGE", "False")
    proxy = serve_ops.proxy_settings()
    ensure_ray()
    config = serve_ops.serve_config(
        model_version=champion.version,
        args={
            "model_root": str(registry.versions_dir()),
            "feature_repo": args.feature_repo,
            "prediction_log_dir": str(Path(args.workdir) / "predictions"),
            "events_dir": str(Path(args.workdir) / "events"),
        },
        host="127.0.0.1",
        port=free_port(),
        topology="fused",
    )
    serve_ops.fix_replicas(config, 2)
    state = Path(args.feature_repo) / "data" / "user_state.parquet"
    users = sorted(pd.read_parquet(state, columns=["user_id"]).user_id.unique())
    try:
        url = serve_ops.start(config)
        pids = replica_pids()
        victim = pids[0]
        bodies = request_bodies(users, 5000, seed=3)
        killer = threading.Timer(args.kill_at, os.kill, (victim, signal.SIGKILL))
        killer.start()
        done = asyncio.run(
            timed_requests(
                f"{url}/recommend", bodies, args.concurrency, args.seconds, cycle=True, timeout_s=30
            )
        )
        killer.join()
        serve_ops.wait_running(120)
        after = replica_pids()
    finally:
        serve_ops.stop(local_ray=True)
    failed = sum(1 for *_, ok in done if not ok)
    result = {
        **results_header("replica_loss"),
        "model": champion.version,
        "proxy": proxy,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "kill_at_s": args.kill_at,
        "requests": len(done),
        "failed": failed,
        "failed_share": round(failed / max(len(done), 1), 5),
        "replaced": victim not in after and len(after) == 2,
        "replicas_before": pids,
        "replicas_after": after,
        "target": TARGET,
        **recovery(done, args.kill_at, args.seconds),
    }
    result["table_markdown"] = table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table_markdown"])
    print(f"results -> {args.out}")


if __name__ == "__main__":
    main()
