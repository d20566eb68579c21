"""The offline half of :class:`recsys.features.store.FeatureStore`, over one
``feast.FeatureStore``: materialization into the online store, point-in-time training sets,
the item catalog, and the side tables the models take.
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, RATING, TS, USER
from recsys.features.duck import duckdb_connection
from recsys.state.user import EVENT_TS

ROW = "__row"


@contextlib.contextmanager
def offline_query():
    """ibis (under Feast's DuckDB offline store) calls a method DuckDB now deprecates; the
    warning says nothing to our users (Feast's imports turn deprecation warnings on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*fetch_arrow_table", category=DeprecationWarning
        )
        # create_saved_dataset's notice; the saved file is plain parquet, read as such
        warnings.filterwarnings("ignore", message="Saving dataset is an experimental feature")
        yield


def materialize(store, end: datetime) -> dict:
    """Load the latest feature values up to ``end`` into the online store of ``store``.

    A view never materialized gets the latest row of each key up to ``end``, read by DuckDB
    from its parquet and written a batch at a time (:func:`_materialize_latest`); later calls
    are Feast's incremental materialization from that end time. (Feast's own first
    materialization reads a view whole into pandas: 17+ GB at 20M interactions; and
    ``feast materialize-incremental`` would start a year back for ``ttl=0`` views.)

    Args:
        store: a ``feast.FeatureStore``.
        end: the latest event time to load.

    Returns:
        ``{"rows": {view: rows in the source up to end}, "seconds": elapsed}``.
    """
    views = [v for v in store.list_feature_views() if v.online]  # item_content: offline only
    fresh = [v for v in views if v.most_recent_end_time is None]
    t0 = time.perf_counter()
    with offline_query(), contextlib.redirect_stdout(io.StringIO()):  # Feast prints per view
        for view in fresh:
            _materialize_latest(store, view, end)
        done = [v.name for v in views if v.most_recent_end_time is not None]
        if done:
            store.materialize_incremental(end_date=end, feature_views=done)
    seconds = time.perf_counter() - t0
    rows = {v.name: _rows_until(store, v, end) for v in views}
    return {"rows": rows, "seconds": seconds}


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
    path = source_path(store, source)
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
        return con.sql(query, params=[source_path(store, source), end]).fetchall()[0][0]


def training_set(store, interactions: pd.DataFrame, service: str) -> pd.DataFrame:
    """Interactions joined point-in-time to the features of ``service``.

    Each interaction's time is its entity timestamp: it gets the latest feature rows stamped at
    or before it, so nothing it or later events caused reaches its row. Row order is kept.

    Returns:
        ``user_id, item_id, rating?, timestamp`` plus one column per feature.
    """
    entity = _entity_rows(interactions)
    with offline_query():
        df = _historical(store, entity, service).to_df()
    df = df.sort_values(ROW).drop(columns=[ROW]).reset_index(drop=True)
    return df.rename(columns={EVENT_TS: TS})


def save_training_set(store, interactions: pd.DataFrame, path: str | Path, service: str) -> Path:
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
    with offline_query():
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
    path = source_path(store, source)
    ids = pd.read_parquet(path, columns=[ITEM])[ITEM].astype(str).unique()
    entity = pd.DataFrame({ITEM: ids, EVENT_TS: pd.Timestamp(as_of)})
    features = ["item_profile:genres", "item_profile:release_year"]
    features += ["item_content:title", "item_content:description"]
    with offline_query():
        return store.get_historical_features(entity_df=entity, features=features).to_df()


def source_path(store, source) -> str:
    """The parquet file of a view's ``source``, resolved against the repository."""
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
    icols = [c for c in ("genres", "release_year", "title", "description") if c in items]
    items = items[[ITEM, *icols]].reset_index(drop=True)
    if "genres" in items:
        items["genres"] = items["genres"].map(_join_genres)
    return users, items


def _join_genres(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return "|".join(str(g) for g in value)
