"""``recsys benchmark``: the benchmarks of ``benchmarks/``, reachable from the CLI."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.cli.options import k_option, path_option, workdir_option
from recsys.config import RecsysError, recsys_home
from recsys.evaluation.quality import (
    BENCHMARK_MODELS,
    OPTION_MODELS,
    PUBLISHED_MOVIELENS_100K,
    quality_summary,
)
from recsys.evaluation.tables import markdown_table, results_header
from recsys.files import write_json
from recsys.workflows.quality import QualityRun, run_quality


@click.group()
def benchmark() -> None:
    """Quality and speed benchmarks; each prints a table and writes results JSON."""


def select_models(labels: str | None, available=BENCHMARK_MODELS) -> tuple:
    """The model specs named in a comma-separated list (all of ``available`` when None; the
    options, :data:`OPTION_MODELS`, only by name)."""
    if not labels:
        return tuple(available)
    by_label = {m.label: m for m in (*available, *OPTION_MODELS)}
    wanted = [label.strip() for label in labels.split(",") if label.strip()]
    unknown = [label for label in wanted if label not in by_label]
    if unknown:
        raise RecsysError(f"--models: unknown {unknown}; expected some of {list(by_label)}")
    return tuple(by_label[label] for label in wanted)


def quality_benchmark(
    out: Path,
    workdir: Path,
    k: int = 10,
    models: tuple | None = None,
    protocols: tuple[str, ...] = ("stratified",),
    seeds: tuple[int, ...] = (42,),
    validation: bool = False,
) -> dict:
    """MovieLens-100k per protocol, every model we have (the shipped one per seed), each
    candidate source's recall, beside the published table (stratified protocol)."""
    run = QualityRun(
        workdir=workdir,
        k=k,
        models=models or BENCHMARK_MODELS,
        protocols=protocols,
        seeds=seeds,
        validation=validation,
    )

    def write(rows: list[dict]) -> dict:
        return _write_quality(out, rows, k, seeds)

    rows = run_quality(run, log=lambda m: click.echo(m, err=True), on_rows=write)
    return write(rows)


def _write_quality(out: Path, rows: list[dict], k: int, seeds: tuple[int, ...]) -> dict:
    tables = []
    for protocol in dict.fromkeys(r["protocol"] for r in rows):
        mine = [
            {**r, "model": r["model"] + (f" (seed {r['seed']})" if r["seed"] is not None else "")}
            for r in rows
            if r["protocol"] == protocol
        ]
        published = PUBLISHED_MOVIELENS_100K if protocol == "stratified" else []
        table = markdown_table([*mine, *published], extra=(("fit_s", "fit s"),))
        tables.append(f"{protocol} protocol, k={k}\n\n{table}")
        sources = [(r["model"], r["sources"]) for r in mine if r.get("sources")]
        for model, recall in sources:
            figures = ", ".join(f"{name} {value}" for name, value in recall.items())
            tables.append(f"{protocol}: {model} candidate sources: {figures}")
    result = {
        **results_header("quality_movielens"),
        "dataset": "movielens-100k",
        "protocols": {
            "stratified": "per item 75/25, seed 42 (MS Recommenders python_stratified_split)",
            "temporal": "per user, the latest 25% of interactions held out (MS Recommenders "
            "python_chrono_split by user)",
            "*-validation": "the same protocol again inside the training split (80/20): "
            "where the choices are made",
        },
        "k": k,
        "seeds": list(seeds),
        "rows": rows,
        "summary": quality_summary(rows, k),
        "published": PUBLISHED_MOVIELENS_100K,
        "table_markdown": "\n\n".join(tables),
    }
    write_json(result, out)
    return result


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
    )
    click.echo(result["table_markdown"])
    click.echo(f"results -> {out}")


__all__ = ["benchmark", "quality_benchmark"]
