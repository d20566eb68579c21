"""Serving load: closed-loop HTTP load on the running Serve app, against the in-process floor.

For each topology (``composed``: Ingress → CandidateGenerator → Ranker over DeploymentHandles,
one call per batch of requests, the lists made in the Ingress; ``fused``: every stage inside
the Ingress replica), the app is deployed on a local Ray with the MovieLens multi-stage model,
and a closed-loop client (aiohttp, 127.0.0.1 only, bounded in requests and seconds) runs at
concurrency 1, 16 and 64: requests/s and p50/p95/p99 latency, errors, and the mean time per
stage from the app's own ``/metrics``.
In the same run the same stages are called in-process without HTTP or Ray: the floor.
The load generator shares the machine's CPUs with the app.

    python benchmarks/serving_load.py [--model-root DIR --version V]
        [--proxy default|haproxy] [--replicas N] [--requests 3000 --seconds 20] [--no-noop]

``--proxy haproxy`` sets RAY_SERVE_ENABLE_HA_PROXY=1 and RAY_SERVE_THROUGHPUT_OPTIMIZED=1
(needs Debian's ``haproxy``); each proxy's rows are kept in the one results file. After each
topology, a no-op app of the same shape (the same deployments, proxy and settings, no work)
runs the same load in the same run: each recommender row carries its share of the no-op's
req/s, and its replicas' resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import psutil

from recsys import serve_ops
from recsys.config import ensure_ray, free_port, recsys_home
from recsys.evaluation.tables import results_header
from recsys.recommend.batch import Ask
from recsys.registry import Registry
from serving.runtime import Runtime
from serving.schemas import AppArgs, RecommendRequest

RESULTS = Path(__file__).resolve().parent / "results" / "serving_load.json"
CONCURRENCY = (1, 16, 64)
TARGET = {"p99_ms_at_16": 50.0, "rps": 300.0}


def request_bodies(users: list[str], n: int, seed: int) -> list[bytes]:
    """Known users mostly, one in ten unknown (the cold-start path), a genre filter sometimes."""
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(n):
        body = {"user_id": str(rng.choice(users)), "k": 10}
        if i % 10 == 9:
            body["user_id"] = f"visitor-{i}"
        if i % 7 == 3:
            body["filters"] = {"include_genres": ["Comedy"]}
        bodies.append(json.dumps(body).encode())
    return bodies


async def timed_requests(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    max_s: float,
    *,
    cycle: bool = False,
    timeout_s: float = 300,
) -> list[tuple[float, float, bool]]:
    """A closed loop of ``concurrency`` clients POSTing ``bodies`` (once each, or round and
    round with ``cycle``) for at most ``max_s`` seconds; a request unanswered after
    ``timeout_s`` (aiohttp's default, 300) counts as failed.

    Returns:
        ``(finished at, latency ms, ok)`` per request, times in seconds since the start.
    """
    import aiohttp

    done: list[tuple[float, float, bool]] = []
    start = time.perf_counter()
    deadline = start + max_s
    cursor = 0

    async def worker(session) -> None:
        nonlocal cursor
        while (cycle or cursor < len(bodies)) and time.perf_counter() < deadline:
            body = bodies[cursor % len(bodies)]
            cursor += 1
            t0 = time.perf_counter()
            try:
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            now = time.perf_counter()
            done.append((now - start, (now - t0) * 1000, ok))

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return done


async def closed_loop(url: str, bodies: list[bytes], concurrency: int, max_s: float) -> dict:
    """Requests/s, latency percentiles and errors of :func:`timed_requests`."""
    t0 = time.perf_counter()
    done = await timed_requests(url, bodies, concurrency, max_s)
    elapsed = time.perf_counter() - t0
    lat = np.asarray([ms for _, ms, _ in done])
    return {
        "concurrency": concurrency,
        "requests": len(lat),
        "errors": sum(1 for *_, ok in done if not ok),
        "rps": round(len(lat) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p95_ms": round(float(np.percentile(lat, 95)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def metered_loop(url: str, bodies: list[bytes], concurrency: int, max_s: float) -> dict:
    """:func:`closed_loop`, with the CPU every process of the request path spent on it
    (``cpu_ms_per_request``, :class:`CpuMeter`)."""
    meter = CpuMeter()
    row = asyncio.run(closed_loop(url, bodies, concurrency, max_s))
    row["cpu_ms_per_request"] = meter.per_request_ms(row["requests"])
    return row


def stage_means(metrics_url: str) -> dict[str, tuple[float, int]]:
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    sums = dict(re.findall(r'recsys_stage_latency_seconds_sum\{stage="(\w+)"\} ([\d.e+-]+)', text))
    counts = dict(
        re.findall(r'recsys_stage_latency_seconds_count\{stage="(\w+)"\} ([\d.e+-]+)', text)
    )
    return {s: (float(sums[s]), int(float(counts[s]))) for s in sums}


def stage_delta(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for stage, (total, count) in after.items():
        t0, c0 = before.get(stage, (0.0, 0))
        if count > c0:
            out[stage] = round((total - t0) / (count - c0) * 1000, 2)
    return out


def in_process_floor(args, users: list[str], n: int, batch: int = 8) -> dict:
    """The stages called one after another in this process: no HTTP, no Ray (what the fused
    replica runs: the online read of the users' states, then the one recommendation path's
    three stage functions), for one request at a time and for batches of ``batch`` (what
    ``@serve.batch`` hands a replica under load)."""
    import torch

    torch.set_num_threads(1)
    runtime = Runtime(AppArgs(model_root=args.model_root, feature_repo=args.feature_repo))
    prepared = runtime.models.get(args.version)
    runtime.require_ready(prepared)
    bodies = [
        RecommendRequest.model_validate(json.loads(b))
        for b in request_bodies(users, n + 20, seed=1)
    ]
    out = {}
    for size in (1, batch):
        timings = []
        for s in range(0, len(bodies) - size + 1, size):
            t0 = time.perf_counter()
            asks = [Ask(args.version, b.user_id, b.request()) for b in bodies[s : s + size]]
            answers = runtime.recommend_batch(asks)
            total = time.perf_counter() - t0
            for a in answers:
                if isinstance(a, Exception):
                    raise a
            stage = answers[0].timings  # the batch's stage seconds
            timings.append((stage["candidates"], stage["rank"], stage["order"], total))
        ms = np.asarray(timings[max(20 // size, 1) :]) * 1000 / size  # per request
        out[size] = ms
    one, many = out[1], out[batch]
    return {
        "requests": len(one),
        "rps_one_thread": round(float(1000 / one[:, 3].mean()), 1),
        "p50_ms": round(float(np.percentile(one[:, 3], 50)), 2),
        "p99_ms": round(float(np.percentile(one[:, 3], 99)), 2),
        "stage_ms": {
            "candidates": round(float(one[:, 0].mean()), 2),
            "rank": round(float(one[:, 1].mean()), 2),
            "order": round(float(one[:, 2].mean()), 2),
        },
        "batch": batch,
        "batched_ms_per_request": round(float(many[:, 3].mean()), 3),
        "batched_rps_one_thread": round(float(1000 / many[:, 3].mean()), 1),
        "batched_stage_ms_per_request": {
            "candidates": round(float(many[:, 0].mean()), 3),
            "rank": round(float(many[:, 1].mean()), 3),
            "order": round(float(many[:, 2].mean()), 3),
        },
    }


def noop_app(topology: str, replicas: int):
    """A Serve app of the same shape that does no work: an Ingress (FastAPI, POST
    ``/recommend``) that answers at once (``fused``), or that first calls a no-op deployment
    that calls another over DeploymentHandles (``composed``: the recommender's two hops).
    Same replica settings as the recommender's deployments; what it costs is the proxy, HTTP,
    FastAPI and the hops alone."""
    from fastapi import FastAPI
    from ray import serve

    options = {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64}

    @serve.deployment(num_replicas=replicas, **options)
    class Hop:
        def __init__(self, after=None) -> None:
            self.after = after

        async def __call__(self, body: dict) -> dict:
            return await self.after.remote(body) if self.after is not None else body

    api = FastAPI()

    @serve.deployment(num_replicas=replicas, **options)
    @serve.ingress(api)
    class NoopIngress:
        def __init__(self, first=None) -> None:
            self.first = first

        @api.post("/recommend")
        async def recommend(self, body: dict) -> dict:
            if self.first is not None:
                await self.first.remote(body)
            return {"items": [], "model_version": "noop"}

    if topology == "composed":
        return NoopIngress.bind(Hop.bind(Hop.bind()))
    return NoopIngress.bind()


def run_noop(args, topology: str, users: list[str], url: str) -> list[dict]:
    """The no-op app of ``topology`` beside the recommender (same Serve, proxy and settings),
    loaded at each level; the rows carry the recommender's req/s as a share of it."""
    from ray import serve

    serve.run(noop_app(topology, args.replicas or 1), name="noop", route_prefix="/noop")
    rows = []
    try:
        asyncio.run(closed_loop(f"{url}/noop/recommend", request_bodies(users, 100, 2), 8, 10))
        for concurrency in CONCURRENCY:
            bodies = request_bodies(users, args.requests, seed=concurrency)
            row = metered_loop(f"{url}/noop/recommend", bodies, concurrency, args.seconds)
            replicas = args.replicas or "auto"
            noop = f"no-op {topology}"
            rows.append({"topology": noop, "proxy": args.proxy, "replicas": replicas, **row})
            rows[-1]["stage_ms"] = {}
            print(rows[-1], flush=True)
    finally:
        serve.delete("noop")
    return rows


def replica_deployment(cmdline: str) -> tuple[str, str] | None:
    """``(app, deployment)`` of a Serve replica process (its command line reads
    ``ray::ServeReplica:<app>:<deployment>``); None for any other process."""
    if not cmdline.startswith("ray::ServeReplica:"):
        return None
    return tuple(cmdline.split()[0].split(":")[3:5])


def process_class(proc: psutil.Process) -> str | None:
    """Which part of the request path a process on this machine is (None: not one)."""
    try:
        cmdline = " ".join(proc.cmdline())
        name = proc.name()
    except (psutil.Error, OSError):
        return None
    if proc.pid == os.getpid():
        return "load generator (+ Ray driver)"
    if name.startswith("haproxy"):
        return "haproxy"
    if replica := replica_deployment(cmdline):
        return f"replica {replica[1]}"
    if "ProxyActor" in cmdline:
        return "Serve proxy actor"
    if "ServeController" in cmdline:
        return "Serve controller"
    daemons = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py")
    if cmdline.startswith("ray::") or any(k in cmdline for k in daemons):
        return "Ray's own processes"
    return None


class CpuMeter:
    """CPU seconds of every process of the request path while a load runs: per request, per
    kind of process (the client, HAProxy, each deployment's replicas, Serve and Ray)."""

    def __init__(self) -> None:
        kinds = {p: process_class(p) for p in psutil.process_iter()}
        self.procs = {p.pid: p for p, kind in kinds.items() if kind}
        self.kind = {p.pid: kind for p, kind in kinds.items() if kind}
        self.before = self._times()

    def _times(self) -> dict[int, float]:
        out = {}
        for pid, proc in self.procs.items():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            out[pid] = t.user + t.system
        return out

    def per_request_ms(self, requests: int) -> dict[str, float]:
        after, out = self._times(), {}
        for pid, t in after.items():
            kind = self.kind[pid]
            out[kind] = out.get(kind, 0.0) + t - self.before.get(pid, t)
        ms = {k: round(v * 1000 / max(requests, 1), 3) for k, v in out.items()}
        ms = dict(sorted(ms.items(), key=lambda kv: -kv[1]))
        ms["total"] = round(sum(ms.values()), 3)
        return ms


def replica_rss_mb() -> dict[str, float]:
    """Resident memory of each Serve replica process of the recommender, MB."""
    out: dict[str, float] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "memory_info"]):
        replica = replica_deployment(" ".join(proc.info["cmdline"] or []))
        if replica and replica[0] == serve_ops.APP:
            key = f"{replica[1]} (pid {proc.info['pid']})"
            out[key] = round(proc.info["memory_info"].rss / 2**20, 1)
    return out


def run_topology(args, topology: str, users: list[str], port: int) -> list[dict]:
    """Deploy ``topology`` (replacing the app already there) and load it at each level."""
    config = serve_ops.serve_config(
        model_version=args.version,
        args={
            "model_root": args.model_root,
            "feature_repo": args.feature_repo,
            "prediction_log_dir": str(Path(args.workdir) / "predictions"),
            "events_dir": str(Path(args.workdir) / "events"),
            **(
                {"batch_wait_timeout_s": args.batch_wait_s} if args.batch_wait_s is not None else {}
            ),
        },
        host="127.0.0.1",
        port=port,
        topology=topology,
    )
    if args.replicas:  # a fixed replica count per deployment instead of autoscaling
        serve_ops.fix_replicas(config, args.replicas)
    rows = []
    url = serve_ops.start(config)
    warm = request_bodies(users, 100, seed=2)
    asyncio.run(closed_loop(f"{url}/recommend", warm, 8, 30))
    for concurrency in CONCURRENCY:
        before = stage_means(f"{url}/metrics")
        bodies = request_bodies(users, args.requests, seed=concurrency)
        row = metered_loop(f"{url}/recommend", bodies, concurrency, args.seconds)
        row["stage_ms"] = stage_delta(before, stage_means(f"{url}/metrics"))
        replicas = args.replicas or "auto"
        rows.append({"topology": topology, "proxy": args.proxy, "replicas": replicas, **row})
        print(rows[-1], flush=True)
    rss = replica_rss_mb()
    for row in rows:
        row["replica_rss_mb"] = rss
    if args.noop:  # the same shape doing nothing, under the same proxy, in the same run
        noop = run_noop(args, topology, users, url)
        for row, base in zip(rows, noop, strict=True):
            row["noop_rps"] = base["rps"]
            row["share_of_noop"] = round(row["rps"] / base["rps"], 3) if base["rps"] else None
        rows += noop
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-root", default=None, help="default: the registry's versions")
    parser.add_argument("--version", default=None, help="default: the registry's champion")
    parser.add_argument("--feature-repo", default="feature_repo")
    parser.add_argument("--proxy", choices=["default", "haproxy"], default="default")
    parser.add_argument("--topologies", default="composed,fused")
    parser.add_argument("--replicas", type=int, default=0, help="fixed replicas (0: autoscale)")
    parser.add_argument(
        "--batch-wait-s", type=float, default=None, help="@serve.batch wait (default: the app's)"
    )
    parser.add_argument("--requests", type=int, default=3000, help="per concurrency level")
    parser.add_argument("--seconds", type=float, default=20, help="per concurrency level")
    parser.add_argument("--workdir", default=str(recsys_home() / "runs" / "serving-bench"))
    parser.add_argument(
        "--no-noop", dest="noop", action="store_false", help="skip the no-op app of each shape"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.model_root is None or args.version is None:
        registry = Registry()  # $RECSYS_REGISTRY or $RECSYS_HOME/registry: the demo's champion
        champion = registry.champion()
        if champion is None:
            raise SystemExit(f"no champion in the registry {registry.uri}; run `make demo` first")
        args.model_root = args.model_root or str(registry.versions_dir())
        args.version = args.version or champion.version
    if not (Path(args.model_root) / args.version / "manifest.json").exists():
        raise SystemExit(f"{args.model_root}/{args.version}: no model; run `make demo` first")
    if args.proxy == "haproxy":  # before Ray starts: the Serve controller reads them
        os.environ.update(serve_ops.FAST_PROXY)
    os.environ.setdefault("FEAST_USAGE", "False")
    import pandas as pd

    activity = Path(args.feature_repo) / "data" / "user_state.parquet"
    users = sorted(pd.read_parquet(activity, columns=["user_id"]).user_id.unique())
    floor = in_process_floor(args, users, 500)
    print("in-process floor:", floor, flush=True)
    ensure_ray()
    from ray import serve

    rows, port = [], free_port()
    try:
        for topology in args.topologies.split(","):
            rows += run_topology(args, topology, users, port)
    finally:
        serve.shutdown()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    shapes = args.topologies.split(",")
    shapes += [f"no-op {t}" for t in shapes] if args.noop else []
    ran = {(args.proxy, t, args.replicas or "auto") for t in shapes}
    kept = [
        r
        for r in previous.get("rows", [])
        if (r.get("proxy"), r.get("topology"), r.get("replicas", "auto")) not in ran
    ]
    result = {
        **results_header("serving_load"),
        "model": f"{args.model_root}/{args.version}",
        "target": TARGET,
        "in_process_floor": floor,
        "rows": kept + rows,
    }
    result["table_markdown"] = table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table_markdown"])
    print(f"results -> {args.out}")


def table(result: dict) -> str:
    floor = result["in_process_floor"]
    lines = [
        "| proxy | topology | replicas | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors | "
        "candidates / rank / order ms | share of no-op |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["stage_ms"]
        stage = " / ".join(str(s.get(k, "-")) for k in ("candidates", "rank", "order"))
        lines.append(
            f"| {r['proxy']} | {r['topology']} | {r.get('replicas', 'auto')} | {r['concurrency']} "
            f"| {r['rps']} | {r['p50_ms']} "
            f"| {r['p95_ms']} | {r['p99_ms']} | {r['errors']} | {stage} "
            f"| {r.get('share_of_noop', '')} |"
        )
    fs, fb = floor["stage_ms"], floor.get("batched_stage_ms_per_request")
    lines.append(
        f"| — | in-process floor | — | 1 | {floor['rps_one_thread']} | {floor['p50_ms']} | — "
        f"| {floor['p99_ms']} | 0 | {fs['candidates']} / {fs['rank']} / {fs['order']} | |"
    )
    if fb:
        lines.append(
            f"| — | in-process floor, batches of {floor['batch']} | — | {floor['batch']} "
            f"| {floor['batched_rps_one_thread']} | — | — | — | 0 "
            f"| {fb['candidates']} / {fb['rank']} / {fb['order']} per request | |"
        )
    lines += ["", cpu_table(result["rows"])]
    return "\n".join(lines)


def cpu_table(rows: list[dict], concurrency: int = 16) -> str:
    """Where the machine's CPU goes per request at ``concurrency``: one column per kind of
    process, one row per (proxy, topology)."""
    measured = [r for r in rows if r["concurrency"] == concurrency and "cpu_ms_per_request" in r]
    kinds = list(dict.fromkeys(k for r in measured for k in r["cpu_ms_per_request"]))
    kinds = [k for k in kinds if k != "total"] + ["total"]
    lines = [
        f"CPU ms per request at concurrency {concurrency}, by process:",
        "",
        "| proxy | topology | req/s | " + " | ".join(kinds) + " |",
        "|---|---|---|" + "---|" * len(kinds),
    ]
    for r in measured:
        cpu = r["cpu_ms_per_request"]
        cells = " | ".join(str(cpu.get(k, "")) for k in kinds)
        lines.append(f"| {r['proxy']} | {r['topology']} | {r['rps']} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
