"""``recsys quickstart``: the end-to-end job on the embedded default (MovieLens-100k)."""

from __future__ import annotations

from pathlib import Path

import click

from recsys import workflows
from recsys.cli.benchmark import select_models
from recsys.config import RecsysError, recsys_home
from recsys.data import movielens
from recsys.data.io import read_dataset_info, write_json
from recsys.evaluation.report import markdown_table
from recsys.features.store import default_repo


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the run writes (default: $RECSYS_HOME/runs/quickstart).",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--models",
    default=None,
    help="Comma-separated subset of popularity,ease,pipeline (default: all three).",
)
@click.option(
    "--feature-repo",
    type=click.Path(path_type=Path),
    default=None,
    help="Feast repository the models' features come from (default: $RECSYS_FEATURE_REPO or "
    "./feature_repo when it exists).",
)
@click.option("--no-features", is_flag=True, help="Read the side tables directly, not via Feast.")
@click.option("--no-serve", is_flag=True, help="Skip the Ray Serve step.")
@click.option("--port", type=int, default=8000, show_default=True, help="HTTP port of the demo.")
def quickstart(
    workdir: Path | None,
    k: int,
    models: str | None,
    feature_repo: Path | None,
    no_features: bool,
    no_serve: bool,
    port: int,
) -> None:
    """Fetch MovieLens-100k, validate, split, build + apply + materialize the Feast features,
    train the baselines and the pipeline model (two-tower + ranker on Ray Train) from the
    point-in-time training set, evaluate, print the table; then serve the pipeline model on
    Ray Serve and send it real HTTP requests."""
    workdir = workdir or recsys_home() / "runs" / "quickstart"
    repo = None if no_features else (feature_repo or default_repo())
    if repo is not None and not (repo / "feature_store.yaml").exists():
        if feature_repo is not None:
            raise RecsysError(f"--feature-repo {repo}: no feature_store.yaml there")
        click.echo(f"(no Feast repository at {repo}: training from the side tables)")
        repo = None
    click.echo("== 1. data: MovieLens-100k (fetched once, then cached)")
    dataset = movielens.fetch()
    info = read_dataset_info(dataset)
    click.echo(
        f"{info.n_interactions} ratings, {info.n_users} users, {info.n_items} items, "
        f"validated (source: {info.source}) -> {dataset}"
    )
    click.echo("== 2. split, train, recommend (exclude seen), evaluate")
    rows = workflows.run_quality(
        workflows.QualityRun(
            workdir=workdir,
            dataset=dataset,
            k=k,
            models=select_models(models, workflows.DEMO_MODELS),
            feature_repo=repo,
        ),
        log=click.echo,
    )
    click.echo(f"== 3. results at k={k} (stratified protocol), with published reference rows")
    click.echo(markdown_table([*rows, *workflows.PUBLISHED_MOVIELENS_100K]))
    write_json({"k": k, "rows": rows}, workdir / "metrics.json")
    click.echo(f"models, recommendations and metrics.json under {workdir}")
    if no_serve or "pipeline" not in {r["model"] for r in rows}:
        return
    click.echo("== 4. serve: Ingress -> CandidateGenerator -> Ranker -> Ordering on Ray Serve")
    workflows.serve_demo(
        workdir,
        repo,
        dataset / "items.parquet",
        users=["196", "405"],
        port=port,
        log=click.echo,
    )
