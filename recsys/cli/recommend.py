"""``recsys recommend``: top-k items per user from a model directory."""

from __future__ import annotations

import click

from recsys.cli.options import path_option
from recsys.recommend.offline import RecommendArgs, recommend_files


@click.command()
@path_option("--model", required=True, help="Model directory.")
@path_option("--data", required=True, help="Interactions giving each user's history (seen items).")
@click.option(
    "--users",
    default="all",
    show_default=True,
    help="'all' (every user in --data) or a file of user ids.",
)
@path_option(
    "--candidates",
    help="Only these items: a file of item ids (one per line, or a parquet/CSV with an "
    "item_id column); the model ranks every one it knows.",
)
@path_option(
    "--new-items",
    help="An items_dir (the Serve app's, or recsys items add's): the items added since the "
    "model trained join its catalog, as the app serves them.",
)
@click.option("--k", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--exclude-seen/--include-seen", default=True, show_default=True)
@path_option(
    "--out",
    required=True,
    help="Output parquet: user_id, item_id, score, rank, reason, source.",
)
def recommend(**options) -> None:
    """Recommend k items to each user and write them as parquet."""
    args = RecommendArgs(**options)
    recs = recommend_files(args)
    n_users = recs["user_id"].nunique()
    click.echo(f"{len(recs)} recommendations for {n_users} users -> {args.out}")
    if unknown := recs.attrs.get("unknown_candidates"):
        click.echo(f"({unknown} --candidates ids not in the model: left out)")
