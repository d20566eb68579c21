"""``recsys train``: fit a model and write its model directory.

A neural kind trains on Ray Train: what trains is imported in a thread while this one starts Ray
(the one function-level import of the CLI, for that reason; Ray's processes stay tied to the
main thread, which outlives them).
"""

from __future__ import annotations

import importlib
import threading

import click

from recsys.cli.options import (
    SHARE,
    Number,
    gpu_option,
    num_workers_option,
    param_option,
    parse_params,
    path_option,
)
from recsys.config import ensure_ray
from recsys.data.validate import DEFAULT_MAX_BAD_SHARE
from recsys.features.store import DEFAULT_SERVICE
from recsys.models.manifest import read_manifest
from recsys.models.names import KIND_NAMES, NEURAL_KINDS
from recsys.training.args import TrainArgs
from recsys.training.runs import CHECKPOINT_EVERY_S

TRAINING = "recsys.training.train"


@click.command()
@path_option(
    "--data",
    required=True,
    help="Interactions file, split directory (train.parquet) or dataset directory.",
)
@click.option("--model", type=click.Choice(sorted(KIND_NAMES)), required=True)
@path_option("--out", required=True, help="Model directory.")
@param_option("Hyper-parameter override, e.g. --param l2=500 (repeatable).")
@click.option(
    "--max-bad-share",
    type=SHARE,
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
    "--checkpoint-every",
    "checkpoint_every_s",
    type=Number(min=0),
    default=CHECKPOINT_EVERY_S,
    show_default=True,
    help="Seconds between checkpoints (one is always written after the last epoch; 0: after "
    "every epoch).",
)
@path_option(
    "--features",
    help="Feast repository: take user and item features from its point-in-time training set "
    "(get_historical_features) instead of the side tables.",
)
@click.option("--feature-service", default=DEFAULT_SERVICE, show_default=True)
def train(params: tuple[str, ...], **options) -> None:
    """Train a recommender on interactions and save it as a model directory."""
    args = TrainArgs(params=parse_params(params), **options)
    if args.model in NEURAL_KINDS:  # its training starts sooner: import while Ray starts
        importing = threading.Thread(target=importlib.import_module, args=(TRAINING,), daemon=True)
        importing.start()
        ensure_ray()
        importing.join()
    from recsys.training.train import train as train_model

    directory = train_model(args)
    manifest = read_manifest(directory)
    click.echo(
        f"{manifest.kind} {manifest.version}: {manifest.n_items} items, "
        f"{manifest.n_train_users} users -> {directory}"
    )
