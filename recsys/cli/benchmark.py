"""``recsys benchmark``: the benchmarks of ``benchmarks/``, reachable from the CLI."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.cli.options import k_option, path_option, workdir_option
from recsys.config import recsys_home
from recsys.workflows.quality import quality_benchmark, select_models


@click.group()
def benchmark() -> None:
    """Quality and speed benchmarks; each prints a table and writes results JSON."""


@benchmark.command()
@path_option("--out", default=Path("benchmarks/results/quality_movielens.json"), show_default=True)
@workdir_option("Models and recommendations (default: $RECSYS_HOME/runs/benchmark-quality).")
@k_option
@click.option(
    "--models",
    default=None,
    help="Comma-separated rows: popularity, ease, rp3beta, two_tower, multistage, "
    "multistage-dcn, multistage-random, multistage-user-time, multistage-time; the option "
    "multistage-two-tower only by name (default: all but the option).",
)
@click.option(
    "--protocols",
    default="stratified",
    show_default=True,
    help="Comma-separated: stratified,temporal (also global-time, leave-last-out).",
)
@click.option("--seeds", default="42", show_default=True, help="Training seeds of the pipeline.")
@click.option("--validation", is_flag=True, help="Also on a validation split carved from train.")
def quality(out, workdir, k, models, protocols, seeds, validation) -> None:
    """MovieLens-100k quality tables next to the published Microsoft Recommenders figures."""
    result = quality_benchmark(
        out,
        workdir or recsys_home() / "runs" / "benchmark-quality",
        k,
        select_models(models),
        tuple(p.strip() for p in protocols.split(",") if p.strip()),
        tuple(int(s) for s in seeds.split(",") if s.strip()),
        validation,
        log=lambda m: click.echo(m, err=True),
    )
    click.echo(result["table_markdown"])
    click.echo(f"results -> {out}")


__all__ = ["benchmark"]
