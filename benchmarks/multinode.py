"""Beyond one machine, in simulation: the scale benchmark's loop on a local multi-node Ray
cluster, its training and its serving spread over the nodes.

    python -m benchmarks.multinode [--nodes 2] [--cpus-per-node 2] [--record FILE]
        [scale.py's options]

A ``ray.cluster_utils.Cluster`` starts a head node with no CPUs (the driver's: it schedules
nothing) and ``--nodes`` worker nodes, each a raylet of its own with its own node id, object
store and worker processes, on this machine. The scale benchmark (:mod:`benchmarks.scale`,
every option of it) then joins that cluster as it would join a real one (``RAY_ADDRESS``):
the learned parts train with ``--num-workers`` Ray Train workers (default: one per node,
placed ``SPREAD``) and the fused app serves with its replicas on the worker nodes and its
proxy on the head (``HeadOnly``: the nodes share one machine's ports).

The run's record (appended to ``benchmarks/results/multinode.json``) is the scale record plus
``cluster``: the nodes, and on which node each Ray Train worker and each Serve replica ran
(from Ray's GCS), so that "across nodes" is measured, not assumed.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from benchmarks import scale
from recsys.config import proxy_settings
from recsys.evaluation.tables import append_run, results_header

RESULTS = Path(__file__).resolve().parent / "results" / "multinode.json"
WORKER_CLASSES = ("RayTrainWorker",)  # Ray Train's worker actors (Torch and LightGBM)
REPLICA_PREFIX = "ServeReplica:"  # Serve's replica actors: ServeReplica:<app>:<deployment>


def placement() -> dict:
    """On which node each Ray Train worker and each Serve replica of this cluster ran (the
    GCS keeps the dead actors too; no dashboard needed): per kind, ``{node: actors}``."""
    import ray
    from ray._private.state import actors

    count = {"train_workers": Counter(), "replicas": Counter()}
    for actor in actors().values():
        name = actor["ActorClassName"]
        kind = (
            "train_workers"
            if name in WORKER_CLASSES
            else "replicas"
            if name.startswith(REPLICA_PREFIX)
            else None
        )
        if kind:
            count[kind][actor["Address"]["NodeID"]] += 1
    return {
        "nodes": [
            {"node_id": n["NodeID"], "cpus": n["Resources"].get("CPU", 0)}
            for n in ray.nodes()
            if n["Alive"]
        ],
        **{kind: dict(c) for kind, c in count.items()},
        "train_nodes": len(count["train_workers"]),
        "replica_nodes": len(count["replicas"]),
    }


def main() -> None:
    cluster_options, rest = _split_args(sys.argv[1:])
    nodes, cpus = cluster_options["--nodes"], cluster_options["--cpus-per-node"]
    # one worker per node, spread; one proxy (the nodes share this machine's ports)
    defaults = {
        "--num-workers": str(nodes),
        "--placement": "SPREAD",
        "--proxy-location": "HeadOnly",
    }
    given = {arg.partition("=")[0] for arg in rest}
    rest += [a for name, value in defaults.items() if name not in given for a in (name, value)]
    args = scale.parse_args(rest)
    from ray.cluster_utils import Cluster

    proxy_settings()  # HAProxy where installed: the raylets inherit this environment
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    for _ in range(nodes):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        record = scale.run_once(args)
        record["cluster"] = placement() | {"worker_nodes": nodes, "cpus_per_node": cpus}
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
        os.environ.pop("RAY_ADDRESS", None)
    record |= results_header("multinode")
    append_run("multinode", record, Path(cluster_options.get("--record", RESULTS)), table)


def _split_args(argv: list[str]) -> tuple[dict, list[str]]:
    """``--nodes``, ``--cpus-per-node`` and ``--record`` (the results file: default
    :data:`RESULTS`), this script's; the rest, scale.py's."""
    mine, rest, it = {"--nodes": 2, "--cpus-per-node": 2}, [], iter(argv)
    for arg in it:
        name, _, value = arg.partition("=")
        if name in mine:
            mine[name] = int(value or next(it))
        elif name == "--record":
            mine[name] = value or next(it)
        else:
            rest.append(arg)
    return mine, rest


COLUMNS = (
    "interactions",
    "worker nodes × CPUs",
    "train workers per node",
    "replicas per node",
    "multistage s",
    "serve",
    "lists equal",
)


def table(runs: list[dict]) -> str:
    rows = [COLUMNS, ("---",) * len(COLUMNS), *(_cells(r) for r in runs)]
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def _cells(run: dict) -> tuple:
    c, stages = run["cluster"], {s["name"]: s for s in run["stages"]}
    train = stages.get("multistage (Ray Train)", {})
    serve = stages.get("serve (Ray Serve, HTTP)", {})
    return (
        f"{run['interactions']:,}",
        f"{c['worker_nodes']} × {c['cpus_per_node']}",
        sorted(c["train_workers"].values()),
        sorted(c["replicas"].values()),
        train.get("seconds", ""),
        f"{serve.get('rps', '')} req/s, p99 {serve.get('p99_ms', '')} ms",
        f"{serve.get('parity_equal', '')} of {serve.get('parity_users', '')}",
    )


if __name__ == "__main__":
    main()
