"""The as-of join's SQL on DuckDB, on hand-made rows: ties, duplicates, TTLs, missing keys
(the Feast views of the repository exercise neither TTLs nor created timestamps)."""

from __future__ import annotations

import pandas as pd

from recsys.features.asof import AsofOfflineStoreConfig, _duckdb
from tests.helpers import asof_case as case
from tests.helpers import check_asof as check


def test_the_latest_row_at_or_before_each_entity_row_within_its_ttl(tmp_path):
    sql, entity, paths, expected = case(tmp_path)
    store = AsofOfflineStoreConfig(engine="duckdb")
    check(_duckdb(store, sql, entity, paths).to_pandas(), expected)


def test_a_saved_result_is_written_whole_by_the_engine(tmp_path):
    sql, entity, paths, expected = case(tmp_path)
    out = tmp_path / "saved.parquet"
    assert _duckdb(AsofOfflineStoreConfig(engine="duckdb"), sql, entity, paths, out) is None
    check(pd.read_parquet(out), expected)
