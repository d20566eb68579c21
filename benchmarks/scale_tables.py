"""The scale runs' tables beyond the stage table: the item index end to end, and the capacity
model (each stage's measured cost at 20M interactions, what it grows with, and a linear
extrapolation to 1B interactions, 50M users and 10M items).

Both are rendered from the records in ``benchmarks/results/scale.json`` (``tables(runs)``:
``scale.py`` refreshes them after every run; ``docs_tables`` renders them into the docs, each
with the when, where and code version of the run it reads).

    python -m benchmarks.scale_tables   # refresh them in scale.json from its records
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
# The capacity model's target: 1B interactions, 50M users, 10M items, 10,000 requests a second.
TARGET = {"interactions": 1e9, "users": 50e6, "items": 10e6, "rps": 10_000}
USER_ID_BYTES = 64 * 4  # the two-tower's user-id row: 64 float32
# The interaction-driven stages: (stage name, label, how it scales out).
BY_INTERACTIONS = (
    ("validate", "validate", "parallel by file (Spark executors)"),
    ("split", "temporal split", "a sort by (user, time) on Spark"),
    ("feature build", "feature build", "`--build-engine spark`"),
    ("training set", "point-in-time training set", "Spark, the same as-of SQL"),
)


def tables(runs: list[dict]) -> dict[str, dict]:
    """The tables these ``runs`` give (name -> markdown with its run's provenance); a table
    whose run is not there yet is left out."""
    out = {}
    with_variants = [r for r in runs if _stage(r, "index variants")]
    if with_variants:  # the largest catalog's, its latest run
        run = max(with_variants, key=lambda r: (r["items"], r["interactions"], r["when"]))
        out["index_variants"] = _with_provenance(run, index_table)
    at_20m = [r for r in runs if r["interactions"] == 20_000_000 and r.get("completed")]
    if at_20m:
        out["capacity"] = _with_provenance(at_20m[-1], capacity_table)
    return out


def _with_provenance(run: dict, render) -> dict:
    keys = ("when", "machine", "code_version")
    return {"markdown": render(run), **{k: run.get(k) for k in keys}}


def _stage(run: dict, name: str) -> dict | None:
    return next((s for s in run["stages"] if s["name"].startswith(name)), None)


def index_table(run: dict) -> str:
    """The same trained model served from each item index: bytes, build, recall against exact
    fp32 search, query time, and the served model's and its two-tower's quality."""
    lines = [
        f"{run['interactions']:,} interactions, {run['items']:,} items, "
        f"{_stage(run, 'evaluate')['users']:,} users evaluated",
        "",
        "| index | bytes / item | build s | recall@100 vs exact fp32 | query ms "
        "| multi-stage recall@100 | nDCG@10 | two-tower alone recall@100 | nDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in _stage(run, "index variants")["variants"]:
        alone = v["two_tower_alone"]
        lines.append(
            f"| {v['kind']} {v['precision']} | {v['bytes_per_item']} | {v['build_seconds']} "
            f"| {v['index_recall_at_100']} | {v['query_ms']} | {v['recall_at_100']} "
            f"| {v['ndcg_at_10']} | {alone['recall_at_100']} | {alone['ndcg_at_10']} |"
        )
    return "\n".join(lines)


def capacity_table(run: dict) -> str:
    """Each stage's cost in ``run`` (a 20M record), what it grows with, its unit cost here and
    a linear extrapolation to :data:`TARGET` (perfect parallel speed-up: an estimate)."""
    cpus = (run.get("machine") or {}).get("cpus") or 1
    scale = TARGET["interactions"] / run["interactions"]
    lines = [
        f"| stage | at {run['interactions'] / 1e6:.0f}M | grows with | unit cost here "
        "| at 1B interactions / 50M users / 10M items (extrapolated) |",
        "|---|---|---|---|---|",
    ]
    for name, label, out in BY_INTERACTIONS:
        if s := _stage(run, name):
            per_m = s["seconds"] / (run["interactions"] / 1e6)
            core_h = s["seconds"] * scale * cpus / 3600
            lines.append(
                f"| {label} | {s['seconds']:.0f} s | interactions | {per_m:.1f} s per 1M "
                f"({cpus} CPUs) | {core_h:.1f} core-hours; {out} |"
            )
    if s := _stage(run, "materialize"):
        entities = run["users"] + run["items"]
        ms = 1000 * s["seconds"] / entities
        hours = ms * (TARGET["users"] + TARGET["items"]) / 1000 / 3600
        lines.append(
            f"| materialize | {s['seconds']:.0f} s | entities ({entities / 1e6:.1f}M) "
            f"| {ms:.2f} ms per entity, one writer | {hours:.1f} h with one writer; "
            "Redis with parallel writers |"
        )
    if s := _stage(run, "multistage"):
        fits = [t for t in s.get("steps", []) if _fits_step(t["step"])]
        rows = sum(_rows(t["step"]) for t in fits)
        seconds = sum(t["seconds"] for t in fits)
        which = "the folds' and the full fit's"
        if run.get("two_tower_full_fit") == "continue" and fits:
            # the full fit continues from the fold's: every training row once in all
            rows = max(_rows(t["step"]) for t in fits)
            which = "the fold's, then the rest from its weights"
        if rows:
            cpu_s = seconds * cpus / (rows / 1e6)
            train_rows = rows * scale  # the fits' rows grow with the interactions
            cpu_h = cpu_s * train_rows / 1e6 / 3600
            lines.append(
                f"| two-tower and source fits, one epoch | {seconds:.0f} s on {rows / 1e6:.1f}M "
                f"rows ({which}) | training rows | {cpu_s:.0f} s x {cpus} "
                f"CPUs per 1M rows | {cpu_h:.0f} CPU-hours: Ray Train workers (CPUs or GPUs) |"
            )
        rest = s["seconds"] - seconds
        lines.append(
            f"| the rest of the model (candidates, ranker rows, trees) | {rest:.0f} s "
            f"| its user sample ({s.get('ranker_users', 0):,} users) "
            "| — | the same |"
        )
    if s := _stage(run, "evaluate"):
        lines.append(
            f"| evaluate {s['users']:,} users | {s['seconds']:.1f} s | the sample "
            f"| {1000 * s['seconds'] / s['users']:.1f} ms a user | the same |"
        )
    if s := _stage(run, "serve"):
        per_cpu = s["rps"] / cpus
        rss = max(s["replica_rss_mb"].values()) / 1024
        users_gb = TARGET["users"] * USER_ID_BYTES / 1e9
        lines += [
            f"| serving | {s['rps']} req/s on {cpus} CPUs (p99 {s['p99_ms']} ms) | requests "
            f"| {per_cpu:.0f} req/s a CPU | {TARGET['rps']:,} req/s: "
            f"~{TARGET['rps'] / per_cpu:.0f} CPUs of replicas |",
            f"| replica memory | {rss:.2f} GiB | users (the two-tower's user-id table, "
            f"{USER_ID_BYTES} B a user) and items | — | {users_gb:.1f} GB of user-id table "
            "at 50M users, mapped from the model file: a lookup maps the pages around its "
            "row too, so under random users the whole table becomes resident (the page "
            "cache's, shared by the replicas of a node) |",
        ]
    return "\n".join(lines)


def _fits_step(step: str) -> bool:
    return step.startswith("two-tower sources") or "sources fitted on" in step


def _rows(step: str) -> int:
    found = re.search(r"fitted on (\d+) rows", step)
    return int(found.group(1)) if found else 0


def main() -> None:
    result = json.loads(RESULTS.read_text())
    result["tables_markdown"] = tables(result["runs"])
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for name, table in result["tables_markdown"].items():
        print(f"{name}:\n{table['markdown']}\n")


if __name__ == "__main__":
    main()
