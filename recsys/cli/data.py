"""``recsys data``: fetch, synth, validate, split."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.cli.options import SHARE, Number
from recsys.config import RecsysError
from recsys.data import movielens
from recsys.data.io import read_dataset_info, resolve_interactions
from recsys.data.split import COLD_SHARE, PROTOCOLS, split, write_split
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import WORLDS, config_for
from recsys.data.validate import load_interactions

DATASETS = {"movielens-100k": movielens.fetch}
SEED = click.IntRange(0, 2**32 - 1)  # what numpy's generators take


@click.group()
def data() -> None:
    """Datasets: fetch, generate, validate and split interactions."""


@data.command()
@click.argument("name", type=click.Choice(sorted(DATASETS)))
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset directory to write (default: $RECSYS_HOME/datasets/NAME).",
)
def fetch(name: str, dest: Path | None) -> None:
    """Fetch a public dataset, verify it and cache it as a dataset directory."""
    directory = DATASETS[name](dest)
    info = read_dataset_info(directory)
    click.echo(
        f"{info.name}: {info.n_interactions} interactions, {info.n_users} users, "
        f"{info.n_items} items (source: {info.source}, sha256 {info.checksum[:12]})"
    )
    click.echo(str(directory))


@data.command()
@click.option("--users", "n_users", type=click.IntRange(min=1), required=True)
@click.option("--items", "n_items", type=click.IntRange(min=1), required=True)
@click.option("--interactions", "n_interactions", type=click.IntRange(min=1), required=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--drift",
    type=SHARE,
    default=0.0,
    show_default=True,
    help="Shift user features and item popularity (monitoring experiments).",
)
@click.option(
    "--world",
    type=click.Choice(sorted(WORLDS)),
    default="independent",
    show_default=True,
    help="The world's shape: 'movielens' has MovieLens-100k's popularity curve, activity "
    "spread and sequence (fitted by benchmarks/data_statistics.py --fit); 'independent' draws "
    "each interaction on its own from a Zipf popularity.",
)
@click.option("--chunk-size", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def synth(out, no_progress, world, **config) -> None:
    """Generate a synthetic dataset with latent-factor ground truth (chunked, bounded memory)."""
    config = config_for(world, **config)  # every other option is a field of the config
    info = generate(config, out, progress=not no_progress)
    click.echo(
        f"synthetic: {info.n_interactions} interactions, {info.n_users} users, "
        f"{info.n_items} items -> {out}"
    )


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--max-bad-share",
    type=SHARE,
    default=0.0,
    show_default=True,
    help="Exit 3 when a larger share of rows is bad.",
)
@click.option("--rating-min", type=Number(), default=0.0, show_default=True)
@click.option("--rating-max", type=Number(), default=5.0, show_default=True)
@click.option(
    "--quarantine",
    type=click.Path(path_type=Path),
    default=None,
    help="Where bad rows go (default: beside the input, *.quarantine.parquet).",
)
def validate(path, max_bad_share, rating_min, rating_max, quarantine) -> None:
    """Check an interactions file or directory; quarantine bad rows with their reason."""
    if rating_min > rating_max:
        raise RecsysError(f"--rating-min {rating_min} is above --rating-max {rating_max}")
    file, _ = resolve_interactions(path)
    target = quarantine or file.with_suffix(".quarantine.parquet")
    try:
        _, result = load_interactions(
            file,
            quarantine_to=target,
            max_bad_share=max_bad_share,
            rating_range=(rating_min, rating_max),
        )
    except RecsysError:
        if target.exists():
            click.echo(f"quarantined rows: {target}", err=True)
        raise
    click.echo(f"{file}: {result.summary()}")
    if len(result.quarantine):
        click.echo(f"quarantined rows: {target}")


@data.command("split")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="stratified", show_default=True)
@click.option(
    "--ratio",
    type=Number(),
    default=0.75,
    show_default=True,
    help="Train share (stratified, temporal, global-time).",
)
@click.option(
    "--n-last",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Held-out interactions per user (leave-last-out).",
)
@click.option(
    "--cold-share",
    type=Number(0.0, 1.0, min_open=True, max_open=True),
    default=COLD_SHARE,
    show_default=True,
    help="The share of the items made cold (cold-items: all their interactions held out).",
)
@click.option("--seed", type=SEED, default=42, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def split_cmd(dataset, protocol, ratio, n_last, cold_share, seed, out) -> None:
    """Split a dataset into train.parquet and test.parquet."""
    file, side_dir = resolve_interactions(dataset)
    interactions, _ = load_interactions(file, rating_range=None)
    train, test = split(
        interactions, protocol, ratio=ratio, seed=seed, n_last=n_last, cold_share=cold_share
    )
    params = {
        "protocol": protocol,
        "ratio": ratio,
        "n_last": n_last,
        "seed": seed,
        "source": str(file),
    }
    if protocol == "cold-items":
        params |= {"cold_share": cold_share, "cold_items": int(test["item_id"].nunique())}
    write_split(train, test, out, params=params, side_from=side_dir)
    click.echo(f"{protocol}: {len(train)} train / {len(test)} test rows -> {out}")
