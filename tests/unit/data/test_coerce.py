"""Values from users' files: no NaN ever reaches a unit conversion (pandas-dev/pandas#58419),
and every value a CSV or parquet column can hold converts or becomes missing, never a crash."""

import gc

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import RecsysError
from recsys.data.coerce import ids_to_str, parse_timestamps
from recsys.data.validate import load_interactions, validate_interactions

NOW = pd.Timestamp("2025-01-01", tz="UTC")
# The column of the CSV that crashed: ISO text with blanks (NaN once read).
ISO_WITH_BLANKS = pd.Series(
    ["2024-02-03T04:05:06+01:00", np.nan, "2024-02-03 04:05:06", None, "", "x", "1700000000"] * 10,
    dtype=object,
)


def test_iso_text_with_blanks_parses_the_same_200_times_under_memory_churn(monkeypatch):
    """The issue's loop: arrays allocated and freed between calls left garbage where pandas 2
    read an uninitialised buffer; 2,841 of 3,000 calls raised before the fix (200 calls all
    passing by chance, at that rate: under 1e-250)."""
    unit_calls = []
    to_datetime = pd.to_datetime

    def spy(arg, *args, **kwargs):
        if kwargs.get("unit") is not None:
            unit_calls.append(np.asarray(arg, dtype=object))
        return to_datetime(arg, *args, **kwargs)

    monkeypatch.setattr(pd, "to_datetime", spy)
    rng = np.random.default_rng(0)
    first = parse_timestamps(ISO_WITH_BLANKS)
    ok = 0
    for i in range(200):
        junk = [rng.standard_normal(int(n)) * 1e300 for n in rng.integers(1, 5000, size=8)]
        junk.append(np.full(len(ISO_WITH_BLANKS), np.nan))
        del junk  # freed: the next allocations reuse these bytes
        if i % 100 == 0:
            gc.collect()
        ok += parse_timestamps(ISO_WITH_BLANKS).equals(first)
    assert ok == 200
    assert first.iloc[:7].tolist()[:3] == [
        pd.Timestamp("2024-02-03T03:05:06Z"),
        pd.NaT,
        pd.Timestamp("2024-02-03T04:05:06Z"),
    ]
    assert not any(pd.isna(a).any() for a in unit_calls), "NaN reached a unit conversion"


def test_epoch_seconds_of_every_numeric_dtype_and_nan_inf_huge():
    got = parse_timestamps(pd.Series([1.7e9, np.nan, np.inf, -1.5, 1e19, -1e300]))
    assert got.iloc[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert got.iloc[3] == pd.Timestamp("1969-12-31T23:59:58.5Z")
    assert got.iloc[[1, 2, 4, 5]].isna().all()
    ints = parse_timestamps(pd.Series([1_700_000_000, 2**62, -(2**63)], dtype="int64"))
    assert ints.iloc[0] == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    assert ints.iloc[1:].isna().all()
    nullable = parse_timestamps(pd.Series([5, None], dtype="Int64"))
    assert nullable.iloc[0] == pd.Timestamp(5, unit="s", tz="UTC") and pd.isna(nullable.iloc[1])


def test_datetimes_past_the_nanosecond_range_are_missing_not_a_crash():
    """A parquet timestamp[s] column holding year 9999 raised OutOfBoundsDatetime."""
    values = pd.Series(np.array(["9999-01-01", "2024-01-01", "NaT"], dtype="datetime64[s]"))
    got = parse_timestamps(values)
    assert str(got.dtype) == "datetime64[ns, UTC]"
    assert pd.isna(got.iloc[0]) and got.iloc[1] == pd.Timestamp("2024-01-01", tz="UTC")


def test_a_naive_iso_time_is_utc_whatever_the_rows_above_it():
    """pandas 2 gave a naive time the offset of an aware one parsed before it in one call."""
    got = parse_timestamps(pd.Series(["2024-02-03T04:05:06+01:00", "2024-02-03 04:05:06"]))
    assert got.tolist() == [
        pd.Timestamp("2024-02-03T03:05:06Z"),
        pd.Timestamp("2024-02-03T04:05:06Z"),
    ]


def test_booleans_and_durations_are_not_times_and_labels_do_not_matter():
    assert parse_timestamps(pd.Series([True, False])).isna().all()
    assert parse_timestamps(pd.Series([True, "1"], dtype=object)).isna().tolist() == [True, False]
    assert parse_timestamps(pd.Series(pd.to_timedelta([1], unit="s"))).isna().all()
    # a repeated index label once made the text of one row overwrite the other's time
    got = parse_timestamps(pd.Series(["1", "x"], index=[0, 0]))
    assert got.iloc[0] == pd.Timestamp(1, unit="s", tz="UTC") and pd.isna(got.iloc[1])


def test_huge_integral_float_ids_stay_floats_not_a_crash():
    """``astype("Int64")`` raised on 1e300, integral but past int64."""
    assert ids_to_str(pd.Series([196.0, 1e300])).tolist() == ["196.0", "1e+300"]
    assert ids_to_str(pd.Series([196.0, np.nan])).iloc[0] == "196"


def test_bytes_that_are_not_utf8_are_escaped_not_a_crash():
    """A parquet binary id column raised UnicodeDecodeError."""
    ids = ids_to_str(pd.Series([b"u1", b"\xff", None], dtype=object))
    assert ids.iloc[:2].tolist() == ["u1", "\\xff"] and pd.isna(ids.iloc[2])


def test_input_columns_named_row_or_reason_are_kept_beside_the_quarantine_columns():
    """``quarantine.insert(0, "row", ...)`` raised on an input with its own ``row`` column."""
    df = pd.DataFrame(
        {"user_id": [None], "item_id": ["i"], "timestamp": ["1"], "row": ["7"], "reason": ["r"]}
    )
    q = validate_interactions(df, now=NOW).quarantine
    assert list(q.columns) == [
        "row",
        "user_id",
        "item_id",
        "timestamp",
        "input:row",
        "input:reason",
        "reason",
    ]
    assert q.loc[0, "input:row"] == "7" and q.loc[0, "reason"] == "missing_user_id"


def test_duplicate_columns_in_parquet_name_the_column(tmp_path):
    path = tmp_path / "dup.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["u"]), pa.array(["i"]), pa.array([1]), pa.array(["1"])],
        names=["user_id", "item_id", "timestamp", "user_id"],
    )
    pq.write_table(table, path)
    with pytest.raises(RecsysError, match="user_id"):
        load_interactions(path)
