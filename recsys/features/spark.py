"""The Spark session the feature stage runs on, and Spark's reading of pandas' parquet.

Light to import (pyspark is imported when a session is asked for): the CLI stops the session
it may have started without importing Feast.
"""

from __future__ import annotations

import os
import sys

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

    return frame.select(
        *[
            F.timestamp_micros(F.floor(F.col(c) / 1000)).alias(c) if c in nanos else F.col(c)
            for c in frame.columns
        ]
    )


def remote_url(store=None) -> str | None:
    """The Spark Connect server of an offline store's config (``spark_remote``), else
    ``$SPARK_REMOTE``; None for a local session."""
    return (store and store.spark_remote) or os.environ.get("SPARK_REMOTE") or None


def spark_session(store=None):
    """The Spark session the join runs on, for ``store`` (an ``AsofOfflineStoreConfig``, or
    None for the environment's): a Spark Connect server (:func:`remote_url`), else
    ``spark_master`` (else ``$SPARK_MASTER``, else ``local[2]``); UTC, and ``spark_conf``."""
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
