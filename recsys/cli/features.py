"""``recsys features``: build, apply, materialize, training sets, online reads, events.

The plain ``feast`` CLI keeps working inside ``feature_repo/`` (``feast plan``, ``feast apply``,
``feast serve``); these commands add the steps Feast leaves to us.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path

import click

from recsys.cli.options import online_option, path_option, repo_option
from recsys.config import RecsysError, recsys_home
from recsys.data.io import read_side_tables, resolve_interactions
from recsys.data.split import split_lineage
from recsys.data.validate import load_interactions
from recsys.features.build import ENGINES, FeatureConfig, build_features
from recsys.features.events import EventIngestor, EventLog
from recsys.features.repository import default_repo, init_repo
from recsys.features.spark import stop_spark
from recsys.features.store import DEFAULT_SERVICE, FeatureStore
from recsys.files import write_parquet
from recsys.state.user import DEFAULT_RECENT_N


def _repo(repo: Path | None) -> Path:
    return repo or default_repo()


def _interactions(data: Path):
    file, side_dir = resolve_interactions(data)
    interactions, _ = load_interactions(file, quarantine_to=None, rating_range=None)
    return interactions, *read_side_tables(side_dir)


@click.group()
def features() -> None:
    """The Feast feature store: tables, registry, online store, real-time events."""


@features.command()
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Repository whose definitions to copy (the image's /app/feature_repo).",
)
@path_option(
    "--store-yaml",
    help="Install this file as the repository's Redis configuration (feature_store.redis.yaml).",
)
@repo_option
def init(source: Path, store_yaml: Path | None, repo: Path | None) -> None:
    """Make REPO a Feast repository with the definitions of --from (data/ is kept)."""
    dest = init_repo(source, _repo(repo), store_yaml)
    click.echo(f"feature repository -> {dest}")


@features.command()
@path_option("--data", required=True, help="Dataset or split.")
@click.option(
    "--recent-n",
    type=click.IntRange(min=1),
    default=DEFAULT_RECENT_N,
    show_default=True,
    help="The users' recent window: at least what the served model reads.",
)
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default=None,
    help="Where the per-event tables are computed: here in buckets (pandas) or on Spark "
    "(local mode, or $SPARK_REMOTE); default spark when $RECSYS_OFFLINE_ENGINE is, else pandas.",
)
@repo_option
def build(data: Path, recent_n: int, engine: str | None, repo: Path | None) -> None:
    """Write the point-in-time feature tables and the users' state (parquet) into REPO/data."""
    interactions, users, items = _interactions(data)
    out = _repo(repo) / "data"
    lineage = split_lineage(data) if Path(data).is_dir() else None
    config = FeatureConfig(recent_n=recent_n, engine=engine)
    try:
        rows = build_features(interactions, users, items, out, config, lineage)
    finally:
        stop_spark()
    for name, n in rows.items():
        click.echo(f"{name}: {n} rows")
    click.echo(f"-> {out}")


@features.command()
@repo_option
@online_option
def apply(repo: Path | None, online: str | None) -> None:
    """Register the entities, views and services (``feast apply``)."""
    click.echo(FeatureStore(_repo(repo), online).apply().strip())


@features.command()
@click.option("--end", type=click.DateTime(), default=None, help="Up to this UTC time.")
@repo_option
@online_option
def materialize(end: datetime | None, repo: Path | None, online: str | None) -> None:
    """Load the latest values into the online store (first run: from the earliest row)."""
    from datetime import UTC

    store = FeatureStore(_repo(repo), online)
    result = store.materialize(end.replace(tzinfo=UTC) if end else None)
    total = sum(result["rows"].values())
    click.echo(
        f"materialized {total} source rows into {result['online']} in {result['seconds']:.1f}s "
        f"({total / max(result['seconds'], 1e-9):,.0f} rows/s)"
    )


@features.command("training-set")
@path_option("--data", required=True)
@path_option("--out", required=True, help="Parquet to write.")
@click.option("--service", default=DEFAULT_SERVICE, show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default=None,
    help="Where the as-of join runs (default: the store's configuration, "
    "$RECSYS_OFFLINE_ENGINE, else duckdb).",
)
@repo_option
def training_set(
    data: Path, out: Path, service: str, engine: str | None, repo: Path | None
) -> None:
    """Interactions joined point-in-time to a feature service (get_historical_features)."""
    interactions, _, _ = _interactions(data)
    if engine:  # read when the store's configuration is, unless the YAML names one
        os.environ["RECSYS_OFFLINE_ENGINE"] = engine
    store = FeatureStore(_repo(repo))  # opened in the join, after the engine is chosen
    try:
        frame = store.training_set(interactions, service)
    finally:
        stop_spark()
    write_parquet(frame, out)
    click.echo(f"{len(frame)} rows x {frame.shape[1]} columns ({service}) -> {out}")


@features.command()
@click.option("--user", "user_id", required=True)
@click.option("--items", default="", help="Comma-separated item ids.")
@click.option("--service", default=DEFAULT_SERVICE, show_default=True)
@repo_option
@online_option
def get(user_id: str, items: str, service: str, repo: Path | None, online: str | None) -> None:
    """Print a user's online state and features (and some items') as JSON."""
    reader = FeatureStore(_repo(repo), online).online(service)
    result = reader.read(user_id, [i for i in items.split(",") if i])
    state = {"seen_items": list(result.state.seen), "recent_items": list(result.state.recent)}
    payload = {"user": result.user, "state": state, "items": result.items.to_dict("records")}
    click.echo(json.dumps(payload, default=_jsonable, indent=1))


def _jsonable(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


@features.command()
@click.argument("payload", default="-")
@path_option("--events-dir", help="Event logs (default: $RECSYS_HOME/events).")
@repo_option
@online_option
def event(payload: str, events_dir: Path | None, repo: Path | None, online: str | None) -> None:
    """Ingest interaction events: PAYLOAD is one JSON object, or '-' for JSON lines on stdin.

    Exit status 1 when any event was rejected (see the rejected-*.jsonl log).
    """
    ingestor = EventIngestor(
        FeatureStore(_repo(repo), online).open(),
        EventLog(events_dir or recsys_home() / "events"),
    )
    lines = sys.stdin.read().splitlines() if payload == "-" else [payload]
    rejected = 0
    for n, line in enumerate((x for x in lines if x.strip()), start=1):
        result = ingestor.ingest(line)
        if result.unavailable:  # nothing from here on can be kept: stop, say which were
            raise RecsysError(f"event {n}: not kept: {result.reason}; events before it were")
        if not result.accepted:
            rejected += 1
            click.echo(f"event {n}: rejected: {result.reason}", err=True)
        else:
            state = "new user" if result.new_user else "known user"
            pushed = "pushed" if result.pushed else "not pushed"
            warning = f"; {result.reason}" if result.reason else ""
            click.echo(f"event {n}: accepted ({state}, {pushed}{warning})")
    if rejected:
        raise RecsysError(f"{rejected} event(s) rejected; logged in {ingestor.log.directory}")
