"""An A/B split's assignment over HTTP on the real app: 2,000 users, each asking three times,
through HAProxy to two fused replicas. Every user must get one arm on every request, from
whichever replica answers (each replica's prediction log, one file per process, says which
answered), and the arms' shares must pass the sample-ratio check.

    python -m benchmarks.assignment_http [--users 2000] [--share 0.5]

The app, its store and models are the experiment demo's (``make demo-experiment`` first).
Prints a table and writes ``benchmarks/results/assignment_http.json``.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.shadow_load import demo_main, demo_registry, figures
from recsys import serve_local, serve_ops
from recsys.config import local_ray
from recsys.data import movielens
from recsys.experiments.sequential import srm_p_value
from recsys.experiments.spec import Experiment
from recsys.workflows import experiment as flow
from recsys.workflows.http_demo import post

RESULTS = Path(__file__).resolve().parent / "results" / "assignment_http.json"
SRM_ALPHA = 0.001  # the sample-ratio check flags below this


def replica_arms(predictions: Path, name: str) -> dict[str, dict[str, set[str]]]:
    """``{replica log: {user: arms}}`` of experiment ``name``'s answers (one file per
    replica process: ``predictions-<start>-<pid>-<n>.jsonl``)."""
    out: dict[str, dict[str, set[str]]] = {}
    for path in predictions.glob("predictions-*.jsonl"):
        pid = path.stem.split("-")[2]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("experiment") == name:
                user = record["request"]["user_id"]
                out.setdefault(pid, defaultdict(set))[user].add(record["arm"])
    return out


def run(args) -> dict:
    workdir = Path(args.workdir)
    registry = demo_registry(workdir)
    control = registry.champion().version
    challenger = next(v.version for v in registry.versions() if v.version != control)
    app = workdir / "assignment-bench-app"
    shutil.rmtree(app, ignore_errors=True)
    catalog = movielens.fetch() / "items.parquet"
    url = serve_ops.start_local(
        registry.versions_dir(), control, workdir / "repo", catalog, app, args.port, print, 2
    )
    ours = local_ray() is not None
    spec = Experiment(
        name="bench-assignment", control=control, challenger=challenger, share=args.share
    )
    users = [f"visitor-{n}" for n in range(args.users)]
    try:
        flow.start(str(registry.uri), spec)
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(lambda u: (u, post(url, "/recommend", {"user_id": u})[1]), users * 3)
            )
        logs = {"predictions": app / "predictions", "events": app / "events"}
        flow.stop(str(registry.uri), spec.name, **logs)
    finally:
        serve_local.stop(local_ray=ours)
    arms: dict[str, set[str]] = defaultdict(set)
    for user, body in answers:
        arms[user].add(body["experiment"]["arm"])
    logged = replica_arms(app / "predictions", spec.name)
    by_user: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for pid, seen in logged.items():
        for user, got in seen.items():
            by_user[user][pid] = got
    both = [u for u, replicas in by_user.items() if len(replicas) > 1]
    counts = {arm: sum(a == {arm} for a in arms.values()) for arm in ("control", "challenger")}
    return {
        "control": control,
        "challenger": challenger,
        "share": args.share,
        "users": len(arms),
        "requests": len(answers),
        "replicas": len(logged),
        "users_answered_by_both_replicas": len(both),
        "users_with_two_arms": sum(len(a) > 1 for a in arms.values()),
        "users_with_two_arms_across_replicas": sum(
            len(set().union(*by_user[u].values())) > 1 for u in both
        ),
        "users_per_arm": counts,
        "srm_p_value": srm_p_value(counts, spec.expected_shares()),
    }


def table(r: dict) -> str:
    rows = [
        ("users (requests)", f"{r['users']} ({r['requests']})"),
        ("replicas answering", r["replicas"]),
        ("users answered by both replicas", r["users_answered_by_both_replicas"]),
        ("users given two arms (any replica)", r["users_with_two_arms"]),
        ("of them across replicas", r["users_with_two_arms_across_replicas"]),
        ("users per arm", ", ".join(f"{k} {v}" for k, v in r["users_per_arm"].items())),
        ("sample ratio check", f"p={r['srm_p_value']:.3f} (flagged below {SRM_ALPHA})"),
    ]
    return figures(rows)


def main() -> None:
    options = {
        "--users": {"type": int, "default": 2000},
        "--share": {"type": float, "default": 0.5},
    }
    demo_main("assignment_http", __doc__, RESULTS, run, table, options)


if __name__ == "__main__":
    main()
