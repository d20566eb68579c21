"""``recsys items``: add new items to the catalog at run time (the ``POST /items`` path)."""

from __future__ import annotations

from pathlib import Path

import click

from recsys.cli.options import online_option, path_option, repo_option
from recsys.config import RecsysError
from recsys.data.io import ITEM, read_table
from recsys.data.new_items import REJECTED_FILE, ItemLog, items_of_file
from recsys.features.item_ingest import ItemIngestor
from recsys.features.repository import default_repo
from recsys.features.store import FeatureStore


@click.group()
def items() -> None:
    """New items: recommendable from their text, with no retraining."""


@items.command()
@click.argument("file", type=click.Path(path_type=Path))
@path_option(
    "--items-dir",
    help="The item log (the Serve app's items_dir; default: $RECSYS_HOME/items). A running "
    "app serves the items on its next request; the next retraining's snapshot includes them.",
)
@path_option("--catalog", help="An items table whose ids are refused as already known.")
@click.option("--push/--no-push", default=True, show_default=True, help="Push the profiles.")
@repo_option
@online_option
def add(
    file: Path,
    items_dir: Path | None,
    catalog: Path | None,
    push: bool,
    repo: Path | None,
    online: str | None,
) -> None:
    """Add the items of FILE (JSON lines, a JSON list, parquet or CSV: item_id, title, and
    optionally genres, release_year, description), each validated, logged durably, and its
    profile pushed to the feature store's online store where one is built.

    Exit status 1 when any row was refused (the rows kept are logged all the same; the
    refused ones are in rejected-items.jsonl with their reasons).
    """
    rows = items_of_file(file)
    store = FeatureStore(repo or default_repo(), online) if push else None
    online_store = store.open() if store is not None and store.built else None
    log = ItemLog(items_dir)
    known = set(read_table(catalog)[ITEM].astype(str)) if catalog else set()
    result = ItemIngestor(log, online_store).ingest(rows, known)
    if result.unavailable:
        raise RecsysError(f"{file}: nothing added: {result.reason}")
    pushed = (
        "pushed to the online store"
        if result.pushed
        else result.reason or "not pushed (no built feature repository)"
    )
    click.echo(f"added {len(result.accepted)} items to {log.path} ({pushed})")
    if result.known:
        click.echo(f"already in the catalog, left as they are: {', '.join(result.known)}")
    for r in result.rejected:
        named = f" ({r.item_id!r})" if r.item_id else ""
        click.echo(f"row {r.row}{named}: refused: {r.reason}", err=True)
    if result.rejected:
        raise RecsysError(
            f"{len(result.rejected)} of {len(rows)} rows refused; kept in "
            f"{log.directory / REJECTED_FILE}"
        )
