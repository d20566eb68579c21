"""Tables of metrics: markdown for people, JSON for machines, and the header every benchmark's
results file opens with (what ran, when, on which code and machine)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from recsys.config import code_version
from recsys.files import write_json

COLUMNS = (
    ("ndcg", "nDCG@k"),
    ("map", "MAP"),
    ("precision", "P@k"),
    ("recall", "R@k"),
    ("f1", "F1@k"),
    ("hit_rate", "HR@k"),
    ("mrr", "MRR"),
    ("map_at_k", "MAP@k"),
    ("catalog_coverage", "Coverage"),
    ("novelty", "Novelty"),
    ("arp", "ARP"),
)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.4f}"
    return str(value)


def markdown_table(
    rows: Sequence[Mapping[str, object]],
    *,
    name_key: str = "model",
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """A markdown table with one row per mapping; absent metrics print as a dash."""
    cols = [(name_key, name_key.capitalize()), *COLUMNS, *extra]
    present = [(k, h) for k, h in cols if any(r.get(k) is not None for r in rows) or k == name_key]
    lines = [
        "| " + " | ".join(h for _, h in present) + " |",
        "|" + "|".join("---" for _ in present) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for k, _ in present) + " |")
    return "\n".join(lines)


def results_header(benchmark: str, accelerator: str | None = None) -> dict[str, object]:
    """The head of a ``benchmarks/results/*.json`` file, one shape for every benchmark.

    Args:
        benchmark: the benchmark's name (its results file's stem).
        accelerator: the accelerator the numbers were measured on (a GPU's name), if any.

    Returns:
        ``benchmark``, ``when`` (UTC, ISO 8601), ``code_version`` and ``machine``: platform,
        Python version, the CPUs this process may run on, memory in GiB and the accelerator.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "benchmark": benchmark,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": cpus,
            "memory_gib": round(memory / 2**30, 1),
            "accelerator": accelerator,
        },
    }


def publish(result: dict, out: Path) -> None:
    """Write a benchmark's results to ``out`` and print its table and where it went."""
    write_json(result, out)
    print(result["table_markdown"])
    print(f"results -> {out}")


def append_run(benchmark: str, record: dict, out: Path, table, more_tables=None) -> None:
    """Add one run's ``record`` to the runs already in ``out`` (one record per run, with its
    settings), the file's table made by ``table(runs)`` and its other tables (name -> markdown
    with its run's provenance) by ``more_tables(runs)``; print this run's table."""
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = [*previous.get("runs", []), record]
    result = {"benchmark": benchmark, "runs": runs, "table_markdown": table(runs)}
    if more_tables is not None:
        result["tables_markdown"] = more_tables(runs)
    write_json(result, out)
    print(table([record]))
    print(f"results -> {out}")
