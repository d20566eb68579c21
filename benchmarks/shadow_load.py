"""Shadow traffic's cost to the users' answers: closed-loop load at concurrency 16 on the local
app (fused replicas, HAProxy where installed), with no experiment and with a shadow experiment
mirroring every request, in alternating rounds of one run: p50/p99, req/s and errors of the
users' answers, and how many of the mirrored requests the challenger answered (the rest were
dropped by the Ingress's bounded mirror).

    python -m benchmarks.shadow_load [--workdir DIR] [--rounds 3] [--seconds 20]

The app, its feature store and models are the experiment demo's (``make demo-experiment``
first): the control is its multi-stage model; the challenger a twin of it under another
version name (a challenger of the control's own cost, the heaviest a shadow is likely to be),
or ``--challenger V`` from the demo's registry. Prints a table and writes
``benchmarks/results/shadow_load.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from benchmarks.serving_load import metered_loop, request_bodies
from recsys import serve_local, serve_ops
from recsys.config import RecsysError, local_ray, recsys_home
from recsys.data import movielens
from recsys.data.split import read_split
from recsys.evaluation.tables import markdown_table, publish, results_header
from recsys.registry import Registry

RESULTS = Path(__file__).resolve().parent / "results" / "shadow_load.json"
TARGET_P99_RATIO = 1.05  # the bound: shadow adds at most 5% to p99 at c16


def twin(registry: Registry, version: str) -> str:
    """``version`` registered again as ``<version>-twin`` (same model, another name)."""
    name = f"{version}-twin"
    if (registry.versions_dir() / name).exists():
        return name
    copy = registry.versions_dir().parent / "twin-staging" / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(registry.versions_dir() / version, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(manifest | {"version": name}))
    registry.register(copy, note="the shadow benchmark's challenger: a twin of the control")
    shutil.rmtree(copy.parent, ignore_errors=True)
    return name


def shadow_answers(predictions: Path, name: str) -> int:
    """How many shadow answers of experiment ``name`` the log holds."""
    n = 0
    for path in predictions.glob("predictions-*.jsonl"):
        for line in path.read_text().splitlines():
            if f'"experiment":"{name}"' in line and '"arm":"shadow"' in line:
                n += 1
    return n


def run(args) -> dict:
    workdir = Path(args.workdir)
    registry = demo_registry(workdir)
    control = registry.champion().version
    challenger = args.challenger or twin(registry, control)
    train, _, _ = read_split(workdir / "split")
    users = sorted(train["user_id"].astype(str).unique())
    bodies = request_bodies(users, 60_000, seed=7)
    app = workdir / "shadow-bench-app"
    shutil.rmtree(app, ignore_errors=True)
    url = serve_ops.start_local(
        registry.versions_dir(),
        control,
        workdir / "repo",
        movielens.fetch() / "items.parquet",
        app,
        args.port,
        print,
    )
    ours = local_ray() is not None
    rows = []
    try:
        # warm-up, the Shadow's replica started (it has none until a shadow experiment runs)
        warm = {"name": "bench-shadow-warm-up", "control": control, "challenger": challenger}
        shadow = {"mode": "shadow", "share": 1.0}
        serve_ops.set_user_config({"model_version": control, "experiment": warm | shadow})
        metered_loop(f"{url}/recommend", bodies[:2000], 16, 10)
        for n in range(args.rounds):
            for mode in ("none", "shadow"):
                name = f"bench-shadow-{n}"
                selection = {"model_version": control}
                if mode == "shadow":
                    experiment = {"name": name, "control": control, "challenger": challenger}
                    selection["experiment"] = experiment | shadow
                serve_ops.set_user_config(selection)
                start = (2 * n + (mode == "shadow")) * 8000 % len(bodies)
                row = metered_loop(f"{url}/recommend", bodies[start:], 16, args.seconds)
                serve_ops.set_user_config({"model_version": control})  # the shadow drains
                answered = shadow_answers(app / "predictions", name) if mode == "shadow" else 0
                row |= {"round": n, "mode": mode, "shadow_answered": answered}
                rows.append(row)
                print(json.dumps(row))
    finally:
        serve_local.stop(local_ray=ours)
    return summary(rows, control, challenger)


def summary(rows: list[dict], control: str, challenger: str) -> dict:
    """The median p99 and req/s of each mode and their ratios (same run, alternating)."""
    out = {"control": control, "challenger": challenger, "rows": rows}
    for mode in ("none", "shadow"):
        mine = [r for r in rows if r["mode"] == mode]
        out[mode] = {
            "p99_ms": float(np.median([r["p99_ms"] for r in mine])),
            "rps": float(np.median([r["rps"] for r in mine])),
            "errors": sum(r["errors"] for r in mine),
        }
    mirrored = [r for r in rows if r["mode"] == "shadow"]
    out["shadow"]["answered_share"] = sum(r["shadow_answered"] for r in mirrored) / max(
        sum(r["requests"] for r in mirrored), 1
    )
    out["p99_ratio"] = out["shadow"]["p99_ms"] / out["none"]["p99_ms"]
    out["rps_ratio"] = out["shadow"]["rps"] / out["none"]["rps"]
    out["target_p99_ratio"] = TARGET_P99_RATIO
    return out


def table(result: dict) -> str:
    extra = [("mode", "shadow"), ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")]
    extra += [("errors", "errors"), ("shadow_answered", "shadow answered"), ("requests", "of")]
    rows = markdown_table(result["rows"], name_key="round", extra=extra)
    none, shadow = result["none"], result["shadow"]
    return (
        f"{rows}\nmedian p99 {none['p99_ms']:.1f} -> {shadow['p99_ms']:.1f} ms "
        f"(x{result['p99_ratio']:.3f}; target <= x{TARGET_P99_RATIO}), req/s "
        f"x{result['rps_ratio']:.3f}, shadow answered {shadow['answered_share']:.1%}"
    )


def demo_main(name: str, doc: str, out: Path, run, table, options: dict[str, dict]) -> None:
    """The command line of a benchmark on the experiment demo's app: ``--workdir`` (the
    demo's), ``options`` (flag -> ``add_argument``'s keywords), ``--port``, ``--out``; then
    ``run(args)``, its ``table`` and the results file under the one header."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--workdir", default=str(recsys_home() / "runs" / "experiment-demo"))
    for flag, keywords in options.items():
        p.add_argument(flag, **keywords)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--out", type=Path, default=out)
    args = p.parse_args()
    result = {**results_header(name), "config": {**vars(args), "out": str(args.out)}}
    result |= run(args)
    result["table_markdown"] = table(result)
    publish(result, args.out)


def figures(rows: list[tuple[str, object]]) -> str:
    """A two-column markdown table, ``what`` and ``figure``, a row per pair."""
    return "| what | figure |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def demo_registry(workdir: Path) -> Registry:
    """The experiment demo's registry under ``workdir``; the error says how to make it."""
    if not (workdir / "registry").exists():
        raise RecsysError(f"{workdir}: no experiment demo here (run `make demo-experiment`)")
    return Registry(workdir / "registry")


def main() -> None:
    options = {
        "--challenger": {"default": None, "help": "a version in the demo's registry"},
        "--rounds": {"type": int, "default": 3},
        "--seconds": {"type": float, "default": 20},
    }
    demo_main("shadow_load", __doc__, RESULTS, run, table, options)


if __name__ == "__main__":
    main()
