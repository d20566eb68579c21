"""The as-of join's SQL on DuckDB, on hand-made rows: ties, duplicates, TTLs, missing keys
(the Feast views of the repository exercise neither TTLs nor created timestamps)."""

from __future__ import annotations

import pandas as pd

from recsys.features.asof import ROW, AsofOfflineStoreConfig, ViewJoin, _duckdb, asof_sql

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def at(seconds: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def case(tmp_path) -> tuple[str, pd.DataFrame, dict, pd.DataFrame]:
    """``(sql, entity rows, {relation: parquet path}, expected)``: view ``v0`` (no TTL) and
    view ``v1`` (TTL 30 s, duplicates at one stamp told apart by their created time)."""
    plain = pd.DataFrame({"k": ["a", "a"], "x": [1, 2], "ts": [at(10), at(20)]})
    expiring = pd.DataFrame(
        {
            "key": ["a", "a", "a"],
            "y": [10, 30, 20],
            "ts": [at(10), at(20), at(20)],
            "created": [at(0), at(2), at(1)],
        }
    )
    paths = {"v0": str(tmp_path / "plain.parquet"), "v1": str(tmp_path / "expiring.parquet")}
    plain.to_parquet(paths["v0"])
    expiring.to_parquet(paths["v1"])
    seconds = [5, 10, 15, 20, 49, 51, 20]
    entity = pd.DataFrame({"user": ["a"] * 6 + ["b"], "event_timestamp": [at(s) for s in seconds]})
    entity[ROW] = range(len(entity))
    views = [
        ViewJoin("v0", {"k": "user"}, "ts", {"x": "x"}),
        ViewJoin("v1", {"key": "user"}, "ts", {"y": "v1__y"}, "created", 30),
    ]
    sql = asof_sql("entity", "event_timestamp", ["user", "event_timestamp", ROW], views)
    expected = entity.assign(
        x=[None, 1, 1, 2, 2, 2, None],  # a tie goes to the feature row; "b" has none
        v1__y=[None, 10, 10, 30, 30, None, None],  # the latest created; expired after 30 s
    )
    return sql, entity, paths, expected


def check(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = result.sort_values(ROW).reset_index(drop=True)
    for col in ("x", "v1__y"):
        assert got[col].astype("Int64").tolist() == expected[col].astype("Int64").tolist(), col
    assert got["event_timestamp"].tolist() == expected["event_timestamp"].tolist()


def test_the_latest_row_at_or_before_each_entity_row_within_its_ttl(tmp_path):
    sql, entity, paths, expected = case(tmp_path)
    store = AsofOfflineStoreConfig(engine="duckdb")
    check(_duckdb(store, sql, entity, paths).to_pandas(), expected)


def test_a_saved_result_is_written_whole_by_the_engine(tmp_path):
    sql, entity, paths, expected = case(tmp_path)
    out = tmp_path / "saved.parquet"
    assert _duckdb(AsofOfflineStoreConfig(engine="duckdb"), sql, entity, paths, out) is None
    check(pd.read_parquet(out), expected)
