"""The Spark session the feature stage runs on, Spark's reading of pandas' parquet, and the
feature build's per-bucket functions run on Spark's executors.

Light to import (pyspark is imported when a session is asked for): the CLI stops the session
it may have started without importing Feast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def spark_parquet(spark, path: str):
    """A parquet file as Spark reads it, nanosecond timestamps (pandas' default, which Spark
    cannot read as timestamps) read as integers and turned into microsecond timestamps."""
    frame = spark.read.parquet(path)
    nanos = [
        f.name
        for f in pq.read_schema(path)
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns"
    ]
    if not nanos:
        return frame
    from pyspark.sql import functions as F

    def micros(c: str):  # floor(ns / 1000) in integers ("/" is a double: 53 bits, ns need 61)
        return F.expr(f"timestamp_micros((`{c}` - pmod(`{c}`, 1000)) div 1000)")

    return frame.select(*[micros(c).alias(c) if c in nanos else F.col(c) for c in frame.columns])


def remote_url(store=None) -> str | None:
    """The Spark Connect server of an offline store's config (``spark_remote``), else
    ``$SPARK_REMOTE``; None for a local session."""
    return (store and store.spark_remote) or os.environ.get("SPARK_REMOTE") or None


def spark_session(store=None):
    """The Spark session the feature stage runs on (the as-of join, the build's buckets), for
    ``store`` (an ``AsofOfflineStoreConfig``, or None for the environment's): a Spark Connect
    server (:func:`remote_url`), else ``spark_master`` (else ``$SPARK_MASTER``, else
    ``local[2]``); UTC, and ``spark_conf``."""
    from pyspark.sql import SparkSession

    conf = {  # SQL settings, which a Connect session may set too
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not INT96: tz kept
    }
    remote = remote_url(store)
    if remote:
        builder = SparkSession.builder.remote(remote)
    else:
        master = (store and store.spark_master) or os.environ.get("SPARK_MASTER", "local[2]")
        builder = SparkSession.builder.master(master).appName("recsys-point-in-time")
        conf |= {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.log.level": "ERROR",
        }
        # Python workers (applyInPandas) in this interpreter, not the first python3 on PATH (a
        # venv used without activating it: no pandas, no recsys there); pyspark reads the
        # variable when the context starts
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf |= store.spark_conf if store else {}
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def stop_spark() -> None:
    """Stop this process's Spark session, if one was started."""
    if "pyspark" not in sys.modules:
        return
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    from pyspark import SparkContext

    if SparkContext._gateway is not None:  # the JVM too, not only the session
        SparkContext._gateway.shutdown()
        SparkContext._gateway = SparkContext._jvm = None


def apply_in_buckets(
    events_path: str,
    key: str,
    fn: Callable[[pd.DataFrame], pd.DataFrame],
    sample: pd.DataFrame,
    buckets: int,
    out_dir: Path,
    timestamp: str,
) -> list[Path]:
    """``fn`` on Spark's executors, once per hash bucket of ``key``: the events of
    ``events_path`` grouped into ``buckets`` groups (every key's rows in one), each group handed
    to ``fn`` as a pandas frame in the embedded build's types and order (``timestamp`` in UTC;
    the events' ``_row`` column gives the order, and is dropped), the results
    written as parquet under ``out_dir``. ``fn(sample)`` gives the result's schema.

    Returns:
        The part files written, in order.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    spark = spark_session()
    schema = from_arrow_schema(pa.Table.from_pandas(fn(sample), preserve_index=False).schema)

    def run(frame: pd.DataFrame) -> pd.DataFrame:  # on an executor: the session's UTC, naive
        frame = frame.sort_values("_row").drop(columns=["_bucket", "_row"])
        frame[timestamp] = frame[timestamp].dt.tz_localize("UTC")
        return fn(frame)

    events = spark_parquet(spark, events_path)
    bucket = F.pmod(F.xxhash64(key), F.lit(buckets))
    grouped = events.withColumn("_bucket", bucket).groupBy("_bucket")
    grouped.applyInPandas(run, schema).write.mode("overwrite").parquet(str(out_dir))
    return sorted(Path(out_dir).glob("*.parquet"))


def read_parts(parts: list[Path], rows: int = 1 << 20):
    """The frames of Spark's part files, ``rows`` at a time, timestamps in nanoseconds (as the
    embedded build writes them)."""
    for part in parts:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=rows):
            yield batch.to_pandas(coerce_temporal_nanoseconds=True)
