"""The Feast repository from Python: open, apply, materialize, point-in-time training sets.

The online store is chosen by configuration only: ``feature_store.yaml`` (SQLite, the embedded
default) or ``feature_store.redis.yaml`` (Redis at ``$REDIS_CONNECTION_STRING``), picked with
``online="redis"`` or ``RECSYS_FEAST_ONLINE=redis``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, RATING, TS, USER
from recsys.features.build import TABLES
from recsys.features.duck import duckdb_connection
from recsys.files import atomic_path
from recsys.state.user import EVENT_TS

Online = Literal["sqlite", "redis"]
YAML = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
DEFAULT_SERVICE = "ranker_v1"
ROW = "__row"


@contextlib.contextmanager
def _offline_query():
    """ibis (under Feast's DuckDB offline store) calls a method DuckDB now deprecates; the
    warning says nothing to our users (Feast's imports turn deprecation warnings on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*fetch_arrow_table", category=DeprecationWarning
        )
        # create_saved_dataset's notice; the saved file is plain parquet, read as such
        warnings.filterwarnings("ignore", message="Saving dataset is an experimental feature")
        yield


def default_repo() -> Path:
    """``$RECSYS_FEATURE_REPO``, else ``./feature_repo``."""
    return Path(os.environ.get("RECSYS_FEATURE_REPO", "feature_repo"))


def copy_definitions(
    source: str | Path, dest: str | Path, overrides: dict[str, Path] | None = None
) -> Path:
    """A repository at ``dest`` with the definitions of ``source`` (its ``.py`` and ``.yaml``
    files) and ``overrides`` (``{name: file}``, added or replacing); ``data/`` is left as it
    is. Each file is written to a temporary name and renamed, so concurrent copies (one per
    pod) never expose a half-written definition to a reader."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in Path(source).iterdir() if p.suffix in (".py", ".yaml")}
    for name, path in {**files, **(overrides or {})}.items():
        with atomic_path(dest / name) as tmp:
            shutil.copyfile(path, tmp)
    return dest


def init_repo(source: str | Path, dest: str | Path, store_yaml: str | Path | None = None) -> Path:
    """Make ``dest`` a repository with the definitions of ``source``, and with ``store_yaml``
    (when given) as its Redis configuration; ``data/`` is created or kept."""
    source = Path(source)
    if not any(source.glob("*.py")):
        raise RecsysError(f"{source}: no Feast definitions (*.py) to copy")
    overrides = None
    if store_yaml is not None:
        if not Path(store_yaml).is_file():
            raise RecsysError(f"{store_yaml}: no such store configuration")
        overrides = {YAML["redis"]: Path(store_yaml)}
    dest = copy_definitions(source, dest, overrides)
    (dest / "data").mkdir(exist_ok=True)
    return dest


def online_kind(online: str | None = None) -> Online:
    kind = online or os.environ.get("RECSYS_FEAST_ONLINE", "sqlite")
    if kind not in YAML:
        raise RecsysError(f"online store {kind!r}: expected one of {sorted(YAML)}")
    return kind  # type: ignore[return-value]


def store_yaml(repo: str | Path, online: str | None = None) -> Path:
    """The ``feature_store*.yaml`` of ``repo`` for the chosen online store."""
    repo = Path(repo)
    path = repo / YAML[online_kind(online)]
    if not path.exists():
        raise RecsysError(f"{repo}: not a Feast repository (no {path.name})")
    if online_kind(online) == "redis" and not os.environ.get("REDIS_CONNECTION_STRING"):
        raise RecsysError("the Redis online store needs REDIS_CONNECTION_STRING (host:port)")
    return path


def open_store(repo: str | Path, online: str | None = None):
    """A ``feast.FeatureStore`` on ``repo`` with the chosen online store."""
    os.environ.setdefault("FEAST_USAGE", "False")
    from feast import FeatureStore

    path = store_yaml(repo, online)
    return FeatureStore(repo_path=str(path.parent.resolve()), fs_yaml_file=path.resolve())


def apply(repo: str | Path, online: str | None = None) -> str:
    """``feast apply`` on the repository (the real CLI, in a child process: Feast imports the
    repository's modules, and a fresh process keeps one repository's modules from another's).

    Returns:
        The CLI's output.
    """
    repo = Path(repo).resolve()
    missing = [t for t in TABLES if not (repo / "data" / f"{t}.parquet").exists()]
    if missing:
        raise RecsysError(
            f"{repo}/data: no {', '.join(missing)} table(s); run `recsys features build` first"
        )
    env = {**os.environ, "FEAST_USAGE": "False"}
    cmd = [sys.executable, "-m", "feast.cli.cli", "-f", str(store_yaml(repo, online)), "apply"]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RecsysError(f"feast apply in {repo} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def materialize(repo: str | Path, online: str | None = None, end: datetime | None = None) -> dict:
    """Load the latest feature values up to ``end`` (default now) into the online store.

    A view never materialized gets the latest row of each key up to ``end``, read by DuckDB
    from its parquet and written a batch at a time (:func:`_materialize_latest`); later calls
    are Feast's incremental materialization from that end time. (Feast's own first
    materialization reads a view whole into pandas: 17+ GB at 20M interactions; and
    ``feast materialize-incremental`` would start a year back for ``ttl=0`` views.)

    Returns:
        ``{view: rows in the source up to end}`` and the elapsed seconds.
    """
    import time

    store = open_store(repo, online)
    end = end or datetime.now(UTC)
    views = store.list_feature_views()
    fresh = [v for v in views if v.most_recent_end_time is None]
    t0 = time.perf_counter()
    with _offline_query(), contextlib.redirect_stdout(io.StringIO()):  # Feast prints per view
        for view in fresh:
            _materialize_latest(store, view, end)
        done = [v.name for v in views if v.most_recent_end_time is not None]
        if done:
            store.materialize_incremental(end_date=end, feature_views=done)
    seconds = time.perf_counter() - t0
    rows = {v.name: _rows_until(store, v, end) for v in views}
    return {"rows": rows, "seconds": seconds, "online": online_kind(online)}


def _materialize_latest(store, view, end: datetime, batch_rows: int = 50_000) -> None:
    """The latest row of each key of ``view`` stamped at or before ``end``, from its parquet
    through DuckDB (held to the offline store's ``memory_limit``), into the online store a
    batch at a time; then the interval recorded in the registry as Feast's materialize does."""
    source = view.batch_source
    keys = ", ".join(f'"{e.name}"' for e in view.entity_columns)
    order = f'"{source.timestamp_field}" DESC'
    if source.created_timestamp_column:
        order += f', "{source.created_timestamp_column}" DESC'
    query = (
        f'SELECT * FROM read_parquet(?) WHERE "{source.timestamp_field}" <= ? '
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
    )
    limit = getattr(store.config.offline_store, "memory_limit", None)
    path = _source_path(store, source)
    with duckdb_connection(limit) as con:
        start = con.sql(
            f'SELECT min("{source.timestamp_field}") FROM read_parquet(?)',
            params=[path],
        ).fetchall()[0][0]
        relation = con.sql(query, params=[path, end])
        reader = relation.to_arrow_reader(batch_rows)  # streamed, not the whole result
        for batch in reader:
            store.write_to_online_store(view.name, batch.to_pandas())
    start = (start or end) - timedelta(seconds=1)
    store.registry.apply_materialization(view, store.project, start, end)


def _rows_until(store, view, end: datetime) -> int:
    source = view.batch_source
    with duckdb_connection() as con:  # UTC, as the materialization it counts
        query = f'SELECT count(*) FROM read_parquet(?) WHERE "{source.timestamp_field}" <= ?'
        return con.sql(query, params=[_source_path(store, source), end]).fetchall()[0][0]


def training_set(store, interactions: pd.DataFrame, service: str = DEFAULT_SERVICE) -> pd.DataFrame:
    """Interactions joined point-in-time to the features of ``service``.

    Each interaction's time is its entity timestamp: it gets the latest feature rows stamped at
    or before it, so nothing it or later events caused reaches its row. Row order is kept.

    Returns:
        ``user_id, item_id, rating?, timestamp`` plus one column per feature.
    """
    entity = _entity_rows(interactions)
    with _offline_query():
        df = _historical(store, entity, service).to_df()
    df = df.sort_values(ROW).drop(columns=[ROW]).reset_index(drop=True)
    return df.rename(columns={EVENT_TS: TS})


def save_training_set(
    store, interactions: pd.DataFrame, path: str | Path, service: str = DEFAULT_SERVICE
) -> Path:
    """The training set of :func:`training_set`, written by the offline store's engine to
    ``path`` and registered as a Feast saved dataset named after the file: the form for data
    too large to hold in this process (rows in the engine's order, ``__row`` the entity row,
    ``event_timestamp`` the interaction's time).

    Returns:
        ``path``.
    """
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    path = Path(path)
    job = _historical(store, _entity_rows(interactions), service)
    with _offline_query():
        store.create_saved_dataset(
            from_=job,
            name=path.stem,
            storage=SavedDatasetFileStorage(path=str(path.resolve())),
            allow_overwrite=True,
        )
    return path


def _entity_rows(interactions: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in (USER, ITEM, RATING) if c in interactions]
    entity = interactions[cols].copy()
    entity[USER] = entity[USER].astype(str)
    entity[ITEM] = entity[ITEM].astype(str)
    entity[EVENT_TS] = pd.to_datetime(interactions[TS], utc=True)
    entity[ROW] = np.arange(len(entity))
    return entity


def _historical(store, entity: pd.DataFrame, service: str):
    try:
        feature_service = store.get_feature_service(service)
    except Exception as exc:  # FeatureServiceNotFoundException and registry errors
        raise RecsysError(
            f"feature service {service!r}: {exc} (run `recsys features apply`)"
        ) from None
    return store.get_historical_features(entity_df=entity, features=feature_service)


def catalog(store, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every item of the ``item`` entity's profile source with its profile as of ``as_of``
    (items nobody interacted with included: the two-tower scores cold items by features)."""
    source = store.get_feature_view("item_profile").batch_source
    path = _source_path(store, source)
    ids = pd.read_parquet(path, columns=[ITEM])[ITEM].astype(str).unique()
    entity = pd.DataFrame({ITEM: ids, EVENT_TS: pd.Timestamp(as_of)})
    features = ["item_profile:genres", "item_profile:release_year"]
    with _offline_query():
        return store.get_historical_features(entity_df=entity, features=features).to_df()


def _source_path(store, source) -> str:
    from feast.infra.offline_stores.file_source import FileSource

    return FileSource.get_uri_for_file_path(store.repo_path, source.path)


def side_tables(
    train_set: pd.DataFrame, items: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The users' and items' static attributes as the models take them: users from a training
    set (each id's latest joined row), items from ``items`` (see :func:`catalog`) or else from
    the training set too."""
    latest = train_set.sort_values(TS, kind="mergesort")
    ucols = [c for c in ("age_bucket", "gender", "occupation") if c in latest]
    users = latest.drop_duplicates(USER, keep="last")[[USER, *ucols]].reset_index(drop=True)
    if items is None:
        items = latest.drop_duplicates(ITEM, keep="last")
    icols = [c for c in ("genres", "release_year") if c in items]
    items = items[[ITEM, *icols]].reset_index(drop=True)
    if "genres" in items:
        items["genres"] = items["genres"].map(_join_genres)
    return users, items


def _join_genres(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return "|".join(str(g) for g in value)
