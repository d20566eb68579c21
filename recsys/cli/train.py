"""``recsys train``: fit a model and write its model directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recsys.config import RecsysError
from recsys.data.validate import DEFAULT_MAX_BAD_SHARE
from recsys.models.kinds import MODEL_KINDS
from recsys.models.manifest import read_manifest
from recsys.training.api import TrainArgs
from recsys.training.api import train as train_model

# Shared with `recsys pipeline run` (the training pipeline's train task takes the same).
gpu_option = click.option(
    "--gpu", is_flag=True, help="Train neural models on CUDA through Ray Train."
)
num_workers_option = click.option(
    "--num-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ray Train workers (data-parallel).",
)


def parse_params(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RecsysError(f"--param {pair!r}: expected key=value")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@click.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Interactions file, split directory (train.parquet) or dataset directory.",
)
@click.option("--model", type=click.Choice(sorted(MODEL_KINDS)), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Model directory.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Hyper-parameter override, e.g. --param l2=500 (repeatable).",
)
@click.option(
    "--max-bad-share",
    type=click.FloatRange(0.0, 1.0),
    default=DEFAULT_MAX_BAD_SHARE,
    show_default=True,
)
@gpu_option
@num_workers_option
@click.option(
    "--resume", is_flag=True, help="Continue the run named --run-name from its latest checkpoint."
)
@click.option(
    "--storage-path",
    default=None,
    help="Checkpoint storage: a directory, s3:// or gs:// (default $RECSYS_HOME/checkpoints).",
)
@click.option("--run-name", default=None, help="Checkpoint run name (default: the --out name).")
@click.option(
    "--features",
    type=click.Path(path_type=Path),
    default=None,
    help="Feast repository: take user and item features from its point-in-time training set "
    "(get_historical_features) instead of the side tables.",
)
@click.option("--feature-service", default="ranker_v1", show_default=True)
def train(
    data,
    model,
    out,
    params,
    max_bad_share,
    gpu,
    num_workers,
    resume,
    storage_path,
    run_name,
    features,
    feature_service,
) -> None:
    """Train a recommender on interactions and save it as a model directory."""
    args = TrainArgs(
        data=data,
        model=model,
        out=out,
        params=parse_params(params),
        max_bad_share=max_bad_share,
        gpu=gpu,
        num_workers=num_workers,
        resume=resume,
        storage_path=storage_path,
        run_name=run_name,
        features=features,
        feature_service=feature_service,
    )
    directory = train_model(args)
    manifest = read_manifest(directory)
    click.echo(
        f"{manifest.kind} {manifest.version}: {manifest.n_items} items, "
        f"{manifest.n_train_users} users -> {directory}"
    )
