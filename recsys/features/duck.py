"""The DuckDB connection the feature stage's queries run on (the as-of join, the first
materialization): UTC, held to the offline store's ``memory_limit``, spilling past it into a
temporary directory removed afterwards. Light to import (duckdb is imported when a
connection is asked for)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def duckdb_connection(memory_limit: str | None = None) -> Iterator:
    """A fresh in-memory DuckDB connection, closed (then its spill directory removed) on exit."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="recsys-duckdb-") as spill:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET temp_directory = '{spill}'")
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            yield con
        finally:
            con.close()
