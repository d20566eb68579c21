"""``recsys train``: fit a model and write its model directory."""

from __future__ import annotations

import json
from pathlib import Path

import click

from recsys.config import RecsysError
from recsys.models import MODEL_KINDS, read_manifest
from recsys.models.api import DEFAULT_MAX_BAD_SHARE, TrainArgs
from recsys.models.api import train as train_model


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
def train(data, model, out, params, max_bad_share) -> None:
    """Train a recommender on interactions and save it as a model directory."""
    args = TrainArgs(
        data=data, model=model, out=out, params=parse_params(params), max_bad_share=max_bad_share
    )
    directory = train_model(args)
    manifest = read_manifest(directory)
    click.echo(
        f"{manifest.kind} {manifest.version}: {manifest.n_items} items, "
        f"{manifest.n_train_users} users -> {directory}"
    )
