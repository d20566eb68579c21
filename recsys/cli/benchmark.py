"""``recsys benchmark``: the benchmarks of ``benchmarks/``, reachable from the CLI."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path

import click

from recsys import workflows
from recsys.config import RecsysError, code_version, recsys_home
from recsys.data.io import write_json
from recsys.evaluation.report import markdown_table


@click.group()
def benchmark() -> None:
    """Quality and speed benchmarks; each prints a table and writes results JSON."""


def select_models(labels: str | None, available=workflows.BENCHMARK_MODELS) -> tuple:
    """The model specs named in a comma-separated list (all of ``available`` when None)."""
    if not labels:
        return tuple(available)
    by_label = {m.label: m for m in available}
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in wanted if label not in by_label]
    if unknown:
        raise RecsysError(f"--models: unknown {unknown}; expected some of {list(by_label)}")
    return tuple(by_label[label] for label in wanted)


def quality_benchmark(out: Path, workdir: Path, k: int = 10, models: tuple | None = None) -> dict:
    """MovieLens-100k, stratified protocol, every model we have, beside the published table."""
    rows = workflows.run_quality(
        workflows.QualityRun(workdir=workdir, k=k, models=models or workflows.BENCHMARK_MODELS),
        log=lambda m: click.echo(m, err=True),
    )
    table = markdown_table(
        [*rows, *workflows.PUBLISHED_MOVIELENS_100K], extra=(("fit_s", "fit s"),)
    )
    result = {
        "benchmark": "quality_movielens",
        "dataset": "movielens-100k",
        "protocol": "stratified: per item 75/25, seed 42 (MS Recommenders python_stratified_split)",
        "k": k,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} {_cpu_count()} cpus".strip(),
        "code_version": code_version(),
        "rows": rows,
        "published": workflows.PUBLISHED_MOVIELENS_100K,
        "table_markdown": table,
    }
    write_json(result, out)
    return result


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@benchmark.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("benchmarks/results/quality_movielens.json"),
    show_default=True,
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Models and recommendations (default: $RECSYS_HOME/runs/benchmark-quality).",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--models",
    default=None,
    help="Comma-separated subset: popularity,ease,two_tower,ranker,pipeline.",
)
def quality(out, workdir, k, models) -> None:
    """MovieLens-100k quality table next to the published Microsoft Recommenders figures."""
    result = quality_benchmark(
        out, workdir or recsys_home() / "runs" / "benchmark-quality", k, select_models(models)
    )
    click.echo(result["table_markdown"])
    click.echo(f"results -> {out}")


__all__ = ["benchmark", "quality_benchmark"]
