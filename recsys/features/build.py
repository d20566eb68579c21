"""Feature tables as parquet, every row stamped with the time from which it is true.

``build_features`` turns interactions plus the user and item side tables into the five Feast
sources of ``feature_repo/``: profiles, activity and item statistics as of each event, and
each user's state (seen set and recent window, one row per user). The per-event tables are
the folds of ``recsys.state`` (``state_table``, ``user_activity``, ``item_stats``), run here a
bucket at a time; this module assembles and writes them.
Aggregates are computed as of each event: the row that includes an event at time t is stamped
t + 1 µs, so Feast's point-in-time join (latest row with ``event_timestamp <= entity time``)
gives an interaction the state just *before* it — never its own item nor anything later.
Sliding-window counts also get a row when an event leaves the window, so a quiet item's 7-day
popularity falls back to 0 instead of staying stale.
"""

from __future__ import annotations

import functools
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from recsys.data.io import (
    GENRE_SEP,
    ITEM,
    TS,
    USER,
    age_bucket,
    genre_names,
    interactions_checksum,
    split_genres,
)
from recsys.features.spark import apply_in_buckets, read_parts
from recsys.files import atomic_path, read_json_model, write_json
from recsys.state.activity import user_activity
from recsys.state.items import item_stats
from recsys.state.offline import sorted_events
from recsys.state.user import DEFAULT_RECENT_N, EVENT_TS, state_table

META_FILE = "feature_meta.json"
TEXT = ("title", "description")  # the item_content view's columns
USER_TABLES = ("user_profile", "user_activity", "user_state")
TABLES = (*USER_TABLES, "item_profile", "item_stats", "item_content")
ENGINES = ("pandas", "spark")


@dataclass
class FeatureConfig:
    """How the feature tables are computed."""

    recent_n: int = DEFAULT_RECENT_N  # the user state's recent window (models read up to this)
    windows_days: tuple[int, ...] = (7, 30)  # popularity_7d, popularity_30d
    # Per-event tables are built over buckets of users (items) of about this many events each,
    # a bucket at a time, so memory follows a bucket, not the data (20M events: 10 buckets).
    events_per_bucket: int = 2_000_000
    # Where the per-event tables' buckets run: "pandas" (here, one after the other) or "spark"
    # (the same functions on Spark's executors, ``recsys.features.spark.apply_in_buckets``).
    # None: the feature stage's engine, ``$RECSYS_OFFLINE_ENGINE`` ("spark", else pandas).
    engine: str | None = None

    def __post_init__(self) -> None:
        if self.engine is None:
            spark = os.environ.get("RECSYS_OFFLINE_ENGINE") == "spark"
            self.engine = "spark" if spark else "pandas"
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")


def build_features(
    interactions: pd.DataFrame,
    users: pd.DataFrame | None,
    items: pd.DataFrame | None,
    out_dir: str | Path,
    config: FeatureConfig | None = None,
    lineage: list[str] | None = None,
) -> dict[str, int]:
    """Write the five feature tables and ``feature_meta.json`` into ``out_dir``.

    Args:
        interactions: validated interactions (``user_id, item_id, rating?, timestamp``).
        users: the user side table (``age, gender, occupation``), or None.
        items: the item side table (``genres`` as "a|b", ``release_year``), or None.
        out_dir: the feature repository's data directory.
        config: window lengths.
        lineage: the data checksums these interactions stand for (a split's ``lineage``);
            default the checksum of ``interactions``. Serving compares it with the model's.

    Returns:
        Rows written per table.
    """
    config = config or FeatureConfig()
    out_dir = Path(out_dir)
    events = sorted_events(interactions)
    genres = genre_vocabulary(items)
    item_genres = _item_genre_matrix(items, genres)
    buckets = max(1, -(-len(events) // config.events_per_bucket))  # ceil
    per_event = {  # table -> (the key its buckets hash, the function of one bucket)
        "user_activity": (
            USER,
            functools.partial(user_activity, item_genres=item_genres, n_genres=len(genres)),
        ),
        "user_state": (USER, functools.partial(state_table, recent_n=config.recent_n)),
        "item_stats": (ITEM, functools.partial(item_stats, windows_days=config.windows_days)),
    }
    run = _on_spark if config.engine == "spark" and len(events) else _in_buckets
    with run(events, buckets, out_dir) as parts_of:
        tables = {
            "user_profile": [user_profile(users, events)],
            **{name: parts_of(name, key, fn) for name, (key, fn) in per_event.items()},
            "item_profile": [item_profile(items, events)],
            "item_content": [item_content(items, events)],
        }
        rows = {name: _write_parts(tables[name], out_dir / f"{name}.parquet") for name in TABLES}
    probe = pq.read_table(out_dir / "user_state.parquet", columns=[USER]).slice(0, 1)
    meta = StoreMeta(
        build_id=f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        lineage=lineage or [interactions_checksum(interactions)],
        recent_n=config.recent_n,
        genres=genres,
        windows_days=list(config.windows_days),
        probe_user=str(probe[USER][0]) if probe.num_rows else None,
    )
    write_json(meta.model_dump(), out_dir / META_FILE)
    return rows


@contextmanager
def _in_buckets(events: pd.DataFrame, buckets: int, out_dir: Path):
    """The per-event tables' parts here: ``fn`` on one bucket of ``key`` at a time."""

    def parts_of(name: str, key: str, fn):
        return (fn(events[mask]) for mask in _buckets(events[key], buckets))

    yield parts_of


@contextmanager
def _on_spark(events: pd.DataFrame, buckets: int, out_dir: Path):
    """The per-event tables' parts computed on Spark (the same functions, one bucket of ``key``
    per call on an executor), read back a slice at a time; the events are staged as parquet
    beside the tables for the executors (on a cluster: the shared volume) and removed after."""
    work = out_dir / f".spark-build-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        # the row's place in time order: ties keep the order the embedded build sees
        events.assign(_row=np.arange(len(events))).to_parquet(work / "events.parquet", index=False)
        sample = events[events[USER].isin(events[USER].head(100))]

        def parts_of(name: str, key: str, fn):
            path, out = str(work / "events.parquet"), work / name
            return read_parts(apply_in_buckets(path, key, fn, sample, buckets, out, TS))

        yield parts_of
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _buckets(ids: pd.Series, n: int) -> list[np.ndarray]:
    """``n`` boolean masks splitting the rows by a hash of ``ids`` (every id's rows in one)."""
    if n == 1:
        return [np.ones(len(ids), dtype=bool)]
    bucket = pd.util.hash_array(ids.to_numpy(dtype=object)) % n
    return [bucket == b for b in range(n)]


def _write_parts(parts, path: Path) -> int:
    """Write the frames of ``parts`` (an iterable, consumed one at a time) into one parquet
    file, in the first frame's schema; written to a temporary name, then renamed.

    Returns:
        Rows written.
    """
    rows, writer, empty = 0, None, None
    with atomic_path(path) as tmp:
        try:
            for frame in parts:
                if not len(frame):  # an empty frame's types are unknown: its schema only if all are
                    empty = frame if empty is None else empty
                    continue
                if writer is None:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = pq.ParquetWriter(tmp, table.schema)
                else:
                    table = pa.Table.from_pandas(frame, schema=writer.schema, preserve_index=False)
                writer.write_table(table)
                rows += len(frame)
        finally:
            if writer is not None:
                writer.close()
        if writer is None and empty is not None:
            empty.to_parquet(tmp, index=False)
    return rows


class StoreMeta(BaseModel):
    """``data/feature_meta.json``: what a feature build holds, for the readiness check.

    ``lineage`` names the training data the build was made from (its checksum, and that of
    the data it extends); ``probe_user`` is a user whose state the online store must hold
    once materialized.
    """

    model_config = ConfigDict(extra="forbid")

    build_id: str
    lineage: list[str]
    recent_n: int
    genres: list[str] = []
    windows_days: list[int] = []
    probe_user: str | None = None


def read_store_meta(data_dir: str | Path) -> StoreMeta | None:
    """The build's metadata, or None when the repository was never built."""
    path = Path(data_dir) / META_FILE
    if not path.exists():
        return None
    return read_json_model(path, StoreMeta, "feature build")


def genre_vocabulary(items: pd.DataFrame | None) -> list[str]:
    """The genres in a fixed (sorted) order: the positions of ``genre_affinity``."""
    if items is None or "genres" not in items:
        return []
    return genre_names(items["genres"])


def _item_genre_matrix(items: pd.DataFrame | None, genres: list[str]) -> pd.DataFrame:
    """``item_id`` → one 0/1 column per genre."""
    if items is None or not genres:
        return pd.DataFrame(columns=genres, dtype=np.float32)
    side = items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)
    onehot = side.set_index(ITEM)["genres"].fillna("").astype(str).str.get_dummies(GENRE_SEP)
    return onehot.reindex(columns=genres, fill_value=0).astype(np.float32)


def _first_seen(events: pd.DataFrame, key: str, ids: pd.Series) -> pd.Series:
    """Each id's first event time (the earliest event overall for ids without events)."""
    first = events.groupby(key)[TS].min()
    default = events[TS].min() if len(events) else pd.Timestamp(0, tz="UTC")
    return ids.map(first).fillna(default)


def user_profile(users: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """Static attributes, stamped at the user's first event (known from then on)."""
    if users is None or not len(users):
        users = pd.DataFrame({USER: events[USER].unique()})
    u = users.assign(**{USER: users[USER].astype(str)}).drop_duplicates(USER)
    age = pd.to_numeric(u["age"], errors="coerce") if "age" in u else pd.Series(np.nan, u.index)
    return pd.DataFrame(
        {
            USER: u[USER].to_numpy(),
            "age_bucket": age_bucket(age).to_numpy(),
            "gender": u.get("gender", pd.Series(None, u.index, dtype=object)).to_numpy(),
            "occupation": u.get("occupation", pd.Series(None, u.index, dtype=object)).to_numpy(),
            EVENT_TS: _first_seen(events, USER, u[USER]).array,
        }
    )


def item_content(items: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """The item's text (title, description; empty where the catalog has none), stamped at
    the item's first event: what its content vector is encoded from."""
    it = _catalog_rows(items, events)
    text = {c: it.get(c, pd.Series("", it.index)).fillna("").astype(str) for c in TEXT}
    return pd.DataFrame(
        {ITEM: it[ITEM].to_numpy(), **{c: v.to_numpy() for c, v in text.items()}}
        | {EVENT_TS: _first_seen(events, ITEM, it[ITEM]).array}
    )


def _catalog_rows(items: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """The catalog's rows, each item once with a string id; without a catalog, one row per
    item the events name."""
    if items is None or not len(items):
        items = pd.DataFrame({ITEM: events[ITEM].unique()})
    return items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)


def item_profile(items: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """Genres (a list) and release year, stamped at the item's first event."""
    it = _catalog_rows(items, events)
    genres = it.get("genres", pd.Series("", it.index)).fillna("").astype(str)
    year = pd.to_numeric(it.get("release_year", pd.Series(np.nan, it.index)), errors="coerce")
    return pd.DataFrame(
        {
            ITEM: it[ITEM].to_numpy(),
            "genres": [split_genres(v) for v in genres],
            "release_year": year.astype("Int64").to_numpy(),
            EVENT_TS: _first_seen(events, ITEM, it[ITEM]).array,
        }
    )
