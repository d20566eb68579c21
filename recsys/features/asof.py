"""Point-in-time joins that scale: a Feast offline store whose ``get_historical_features`` is
an as-of join written once in plain SQL and run by DuckDB (embedded) or Spark (a cluster, or
pyspark's local mode).

Feast's DuckDB store pairs every entity row with every feature row of its key and keeps the
latest: ``sum(rows per key x entity rows per key)`` pairs, 23.5 billion for one view at 1M
interactions. The as-of join instead sorts each view's rows together with the entity rows by
key and time, once: per key, a running maximum of the feature rows' timestamps gives each
entity row the stamp of the latest row at or before it (ties go to the feature row), and an
equi-join on ``(key, stamp)`` fetches the values. Sorts and hash joins only: n log n.

Configure it in ``feature_store.yaml``::

    offline_store:
      type: recsys.features.asof.AsofOfflineStore
      engine: spark             # default $RECSYS_OFFLINE_ENGINE, else duckdb
      memory_limit: 8GB         # DuckDB spills past it
      spark_master: local[2]    # spark's local mode (a JRE 17+ on this machine), or
      spark_remote: sc://recsys-spark-connect:15002   # a Spark Connect server (the chart's)

Everything else is Feast's DuckDB store unchanged. (A view's first materialization does not
go through it: ``FeatureStore.materialize`` reads each key's latest row with DuckDB,
because Feast's local engine reads a view whole into pandas.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.infra.offline_stores.duckdb import DuckDBOfflineStore, DuckDBOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from pydantic import Field, StrictStr

from recsys.features.duck import duckdb_connection
from recsys.features.spark import remote_url, spark_parquet, spark_session

ROW = "__asof_row"


class AsofOfflineStoreConfig(DuckDBOfflineStoreConfig):
    """``offline_store:`` of ``feature_store.yaml`` (Feast's strict config: a typo fails)."""

    type: StrictStr = "recsys.features.asof.AsofOfflineStore"
    engine: Literal["duckdb", "spark"] = Field(
        default_factory=lambda: os.environ.get("RECSYS_OFFLINE_ENGINE", "duckdb")
    )
    """Where the join runs; unset, ``$RECSYS_OFFLINE_ENGINE``, else DuckDB."""
    memory_limit: str | None = None
    """DuckDB's memory limit (e.g. ``8GB``) for the join and for a view's first
    materialization; past it the sorts spill to a temp directory."""
    spark_master: str | None = None
    """Spark's master URL; default ``$SPARK_MASTER``, else ``local[2]``."""
    spark_remote: str | None = None
    """A Spark Connect server (``sc://host:15002``), default ``$SPARK_REMOTE``: the cluster
    form. The server reads the feature parquet at the same paths (a shared volume)."""
    spark_conf: dict[str, str] = {}


@dataclass(frozen=True)
class ViewJoin:
    """One feature view as the join reads it: ``relation`` (a table name the engine knows),
    ``keys`` (feature column -> entity column), ``features`` (source column -> output name)."""

    relation: str
    keys: dict[str, str]
    timestamp: str
    features: dict[str, str]
    created: str | None = None
    ttl_seconds: int = 0


def asof_sql(entity: str, entity_ts: str, entity_columns: list[str], views: list[ViewJoin]) -> str:
    """The point-in-time join as SQL that DuckDB and Spark both run: ``entity`` (with the row
    number column ``ROW``) joined to the latest row of each view stamped at or before the
    entity row's ``entity_ts`` (and, with a TTL, no older than it), one output row per entity
    row, in no particular order (``ROW`` says which). Each view's rows are first made unique
    per (key, stamp), keeping the latest created."""
    ctes, joins, selects = [], [], [f"e.`{c}`" for c in entity_columns]
    for i, v in enumerate(views):
        fkeys = list(v.keys)
        part = ", ".join(f"`{k}`" for k in fkeys)
        created = f"`{v.created}` DESC" if v.created else f"`{v.timestamp}`"
        ctes.append(
            f"d{i} AS (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {part}, "
            f"`{v.timestamp}` ORDER BY {created}) AS __rn FROM {v.relation}) t WHERE __rn = 1)"
        )
        union = (
            f"SELECT {', '.join(f'e.`{v.keys[k]}` AS `{k}`' for k in fkeys)}, "
            f"e.`{entity_ts}` AS __ts, 1 AS __kind, e.{ROW} AS __row, NULL AS __fts FROM {entity} e"
            f" UNION ALL SELECT {part}, `{v.timestamp}`, 0, NULL, `{v.timestamp}` FROM d{i}"
        )
        ctes.append(
            f"m{i} AS (SELECT __row, __fts FROM (SELECT __row, __kind, max(__fts) OVER "
            f"(PARTITION BY {part} ORDER BY __ts, __kind ROWS BETWEEN UNBOUNDED PRECEDING "
            f"AND CURRENT ROW) AS __fts FROM ({union}) u) w WHERE __kind = 1)"
        )
        on = " AND ".join(f"f{i}.`{k}` = e.`{v.keys[k]}`" for k in fkeys)
        ttl = (
            f" AND f{i}.`{v.timestamp}` >= e.`{entity_ts}` - INTERVAL '{v.ttl_seconds}' SECOND"
            if v.ttl_seconds
            else ""
        )
        joins.append(
            f"LEFT JOIN m{i} ON m{i}.__row = e.{ROW} LEFT JOIN d{i} f{i} ON {on} "
            f"AND f{i}.`{v.timestamp}` = m{i}.__fts{ttl}"
        )
        selects += [f"f{i}.`{src}` AS `{out}`" for src, out in v.features.items()]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(selects)} FROM {entity} e {' '.join(joins)}"


def view_joins(feature_views, feature_refs: list[str], full_feature_names: bool) -> list:
    """``(file source, ViewJoin)`` for each feature view of a request, as Feast names its
    output columns (``view__feature`` with ``full_feature_names``)."""
    out = []
    for i, fv in enumerate(feature_views):
        source = fv.batch_source
        if not isinstance(source, FileSource):
            raise ValueError(
                f"feature view {fv.name!r}: the as-of offline store reads file sources "
                f"(parquet), not {type(source).__name__}"
            )
        prefix = fv.projection.name_to_use()
        wanted = [r.split(":", 1)[1] for r in feature_refs if r.startswith(f"{prefix}:")]
        reverse = {v: k for k, v in source.field_mapping.items()}  # feature -> source column
        base = fv.projection.name_alias or fv.name
        features = {reverse.get(f, f): f"{base}__{f}" if full_feature_names else f for f in wanted}
        keys = fv.projection.join_key_map or {e.name: e.name for e in fv.entity_columns}
        keys = {reverse.get(k, k): v for k, v in keys.items()}
        ttl = int(fv.ttl.total_seconds()) if fv.ttl else 0
        join = ViewJoin(
            f"v{i}",
            keys,
            source.timestamp_field,
            features,
            source.created_timestamp_column or None,
            ttl,
        )
        out.append((source, join))
    return out


class AsofOfflineStore(DuckDBOfflineStore):
    """DuckDB's offline store with :func:`asof_sql` as its point-in-time join."""

    @staticmethod
    def get_historical_features(
        config,
        feature_views,
        feature_refs,
        entity_df,
        registry,
        project,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
    ) -> RetrievalJob:
        from feast.on_demand_feature_view import OnDemandFeatureView

        if not isinstance(entity_df, pd.DataFrame):
            raise ValueError("the as-of offline store takes the entity rows as a DataFrame")
        if OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry):
            raise ValueError("the as-of offline store does not compute on-demand feature views")
        ts = _entity_timestamp(entity_df)
        entity = entity_df.copy(deep=False)  # columns shared; the two below are new
        entity[ts] = pd.to_datetime(entity[ts], utc=True)
        columns = list(entity.columns)
        entity[ROW] = range(len(entity))
        joins = view_joins(feature_views, feature_refs, full_feature_names)
        sql = asof_sql("entity", ts, columns, [j for _, j in joins])
        paths = {
            j.relation: FileSource.get_uri_for_file_path(config.repo_path, s.path) for s, j in joins
        }
        store = config.offline_store
        run = _duckdb if store.engine == "duckdb" else _spark
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in columns if c != ts],
            min_event_timestamp=entity[ts].min().to_pydatetime(),
            max_event_timestamp=entity[ts].max().to_pydatetime(),
        )
        return AsofRetrievalJob(
            lambda out=None: run(store, sql, entity, paths, out), full_feature_names, metadata
        )


class AsofRetrievalJob(RetrievalJob):
    """Runs the join when its result is asked for, once per ask, as Feast's jobs do."""

    def __init__(self, run, full_feature_names: bool, metadata: RetrievalMetadata) -> None:
        super().__init__()
        self._run, self._full, self._metadata = run, full_feature_names, metadata

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self._run()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._run().to_pandas()

    @property
    def full_feature_names(self) -> bool:
        return self._full

    @property
    def on_demand_feature_views(self) -> list:
        return []

    @property
    def metadata(self) -> RetrievalMetadata:
        return self._metadata

    def persist(self, storage, allow_overwrite: bool = False, timeout: int | None = None):
        """Write the result to ``storage``'s path as the engine streams it (a parquet file
        from DuckDB, a folder of parquet parts from Spark), never whole in this process:
        to a temporary name, then renamed."""
        path = Path(storage.to_data_source().path)
        if path.exists() and not allow_overwrite:
            raise FileExistsError(f"{path}: a saved dataset is there already")
        tmp = path.with_name(f".{path.name}.tmp")
        _remove(tmp)
        self._run(tmp)
        _remove(path)
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _entity_timestamp(entity_df: pd.DataFrame) -> str:
    from feast.infra.offline_stores import offline_utils

    schema = dict(zip(entity_df.columns, entity_df.dtypes, strict=True))
    return offline_utils.infer_event_timestamp_from_entity_df(schema)


def _duckdb(
    store: AsofOfflineStoreConfig, sql: str, entity: pd.DataFrame, paths: dict, out=None
) -> pa.Table | None:
    """The join on DuckDB: as an Arrow table, or streamed into the parquet file ``out``."""
    with duckdb_connection(store.memory_limit) as con:
        con.execute("SET preserve_insertion_order = false")  # less memory; rows carry ROW
        con.register("entity", entity)
        for name, path in paths.items():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
        query = sql.replace("`", '"')
        if out is None:
            return con.sql(query).to_arrow_table()
        con.execute(f"COPY ({query}) TO '{out}' (FORMAT parquet)")
        return None


def _spark(
    store: AsofOfflineStoreConfig, sql: str, entity: pd.DataFrame, paths: dict, out=None
) -> pa.Table | None:
    """The join on Spark: as an Arrow table, or written as parquet parts into folder ``out``."""
    spark = spark_session(store)
    with tempfile.TemporaryDirectory(prefix="recsys-asof-") as tmp:
        if remote_url(store):  # the server cannot read this machine's files: send the rows
            spark.createDataFrame(entity).createOrReplaceTempView("entity")
        else:
            entity_path = Path(tmp) / "entity.parquet"
            pq.write_table(
                pa.Table.from_pandas(entity, preserve_index=False),
                entity_path,
                coerce_timestamps="us",
                allow_truncated_timestamps=True,
            )
            spark.read.parquet(str(entity_path)).createOrReplaceTempView("entity")
        for name, path in paths.items():
            spark_parquet(spark, path).createOrReplaceTempView(name)
        result = spark.sql(sql)
        if out is None:
            return result.toArrow()
        result.write.parquet(str(out))
        return None
