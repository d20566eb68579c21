"""``recsys quickstart``: the end-to-end job on the embedded default (MovieLens-100k)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from recsys import serve_local
from recsys.cli.pipeline import print_result, retrain, run_training
from recsys.config import RecsysError, check_ray_address, recsys_home
from recsys.data import movielens
from recsys.data.io import read_dataset_info
from recsys.evaluation.quality import DEMO_MODELS, PUBLISHED_MOVIELENS_100K
from recsys.evaluation.tables import markdown_table
from recsys.features.store import default_repo
from recsys.files import write_json
from recsys.registry import Registry
from recsys.workflows.loop import closed_loop
from recsys.workflows.quality import QualityRun, run_quality
from recsys.workflows.quickstart import serve_demo


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the run writes (default: $RECSYS_HOME/runs/quickstart).",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--feature-repo",
    type=click.Path(path_type=Path),
    default=None,
    help="Feast repository the models' features come from (default: $RECSYS_FEATURE_REPO or "
    "./feature_repo when it exists).",
)
@click.option("--no-features", is_flag=True, help="Read the side tables directly, not via Feast.")
@click.option(
    "--registry",
    "registry_uri",
    default=None,
    help="Model registry (default: $RECSYS_REGISTRY or $RECSYS_HOME/registry).",
)
@click.option("--params", default=None, help="Pipeline-model hyper-parameters: JSON or @file.")
@click.option("--no-serve", is_flag=True, help="Skip the Ray Serve step.")
@click.option(
    "--drift",
    is_flag=True,
    help="Then the closed loop: replay held-out and drifted traffic, monitor, retrain, gate, "
    "hot-reload.",
)
@click.option("--port", type=int, default=8000, show_default=True, help="HTTP port of the demo.")
def quickstart(
    workdir: Path | None,
    k: int,
    feature_repo: Path | None,
    no_features: bool,
    registry_uri: str | None,
    params: str | None,
    no_serve: bool,
    drift: bool,
    port: int,
) -> None:
    """Fetch MovieLens-100k; run the Kubeflow training pipeline on kfp.local (validate, split,
    Feast features, train the two-tower + ranker pipeline on Ray Train, evaluate against the
    champion and the baselines, gate, register, deploy); print the table and the gate's
    decision; the same model kinds on the temporal protocol; then serve the champion on Ray
    Serve and send it real HTTP requests.

    Run it twice: the second run, on unchanged data, keeps the champion. With --drift, the
    closed loop follows (about 8 more minutes)."""
    workdir = (workdir or recsys_home() / "runs" / "quickstart").resolve()
    if os.environ.get("RAY_ADDRESS"):
        check_ray_address(os.environ["RAY_ADDRESS"])
    if not no_serve:  # a taken port fails now, not after training
        serve_local.end_stale(click.echo)
        serve_local.check_port("127.0.0.1", port)
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
        f"{info.n_interactions} ratings, {info.n_users} users, {info.n_items} items "
        f"(source: {info.source}) -> {dataset}"
    )
    click.echo(
        "== 2. the training pipeline on kfp.local: ingest -> Feast features -> training set -> "
        "train (Ray Train) -> evaluate (+ Evidently) -> gate -> register -> deploy"
    )
    result = run_training(
        source=movielens.NAME,
        feature_repo=repo,
        no_features=repo is None,
        params=params,
        registry_uri=registry_uri,
        k=k,
        workdir=workdir / "kfp",
    )
    click.echo(f"== 3. results at k={k} (stratified protocol), with published reference rows")
    print_result(result)
    click.echo(markdown_table(PUBLISHED_MOVIELENS_100K))
    write_json(result["evaluation"], workdir / "metrics.json")
    click.echo(f"metrics.json under {workdir}")
    click.echo(
        f"== 3b. the temporal protocol at k={k}: each user's latest 25% held out; the "
        "multi-stage model learns what comes next (crossfit=user-time, the recent window)"
    )
    temporal = run_quality(
        QualityRun(workdir=workdir / "temporal", models=DEMO_MODELS, protocols=("temporal",), k=k),
        log=lambda _: None,
    )
    click.echo(markdown_table(temporal))
    write_json(temporal, workdir / "temporal.json")
    if no_serve:
        return
    registry = Registry(registry_uri)
    champion = registry.champion()
    click.echo(
        f"== 4. serve the champion {champion.version}: "
        "candidates -> ranker -> ordering in one Ray Serve replica (the cluster's chart gives "
        "the candidates and the ranker deployments of their own)"
    )
    serve_demo(
        workdir,
        registry.local_path(champion.version).parent,
        champion.version,
        repo,
        dataset / "items.parquet",
        users=["196", "405"],
        port=port,
        log=click.echo,
    )
    if drift:
        click.echo(
            "== 5. the closed loop: held-out traffic -> drifted traffic -> Evidently -> "
            "retrain -> gate -> hot reload"
        )

        def start(snapshot: Path, train_repo: Path | None, serve_address: str) -> dict:
            return retrain(
                snapshot,
                feature_repo=train_repo,
                no_features=train_repo is None,
                registry_uri=registry_uri,
                serve_address=serve_address,
                workdir=workdir / "loop" / "retraining",
            )

        closed_loop(workdir, repo, registry_uri, port, start, log=click.echo)
