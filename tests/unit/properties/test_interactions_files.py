"""Interactions files as users write them: CSV (any text, a BOM, quoted newlines, any quoting)
and parquet (every column type). No traceback; rows in = kept + quarantined with reasons; the
the documented exit codes; the same bytes out, run after run."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from .files_check import check_file
from .strategies import CHARS, DATETIMES, ID_TEXT, RATING_TEXT, TIMESTAMP_TEXT, fuzz

REQUIRED = ("user_id", "item_id", "timestamp")
EXTRA_NAMES = st.sampled_from(["row", "reason", "rating", "note", "user_id.1", "Ünïcode ✓"])


@st.composite
def csv_files(draw):
    columns = [*REQUIRED]
    if draw(st.booleans()):
        columns.insert(2, "rating")
    columns += draw(st.lists(EXTRA_NAMES, max_size=2))
    columns = list(dict.fromkeys(columns))  # a header names a column once
    columns = draw(st.permutations(columns))
    cell = {"user_id": ID_TEXT, "item_id": ID_TEXT, "timestamp": TIMESTAMP_TEXT}
    rows = draw(
        st.lists(st.tuples(*(cell.get(c, RATING_TEXT) for c in columns)).map(list), max_size=12)
    )
    # Minimal quoting quotes a field holding a line end only for the terminator's characters:
    # with "\n" a lone "\r" would go out bare, and every reader takes that for a line end.
    dialect = draw(
        st.sampled_from(
            [
                {"quoting": csv.QUOTE_MINIMAL, "lineterminator": "\r\n"},
                {"quoting": csv.QUOTE_ALL, "lineterminator": "\r\n"},
                {"quoting": csv.QUOTE_ALL, "lineterminator": "\n"},
            ]
        )
    )
    bom = draw(st.booleans())
    return columns, rows, dialect, bom


@given(csv_files())
@fuzz(1.0)
def test_any_csv_ends_in_kept_and_quarantined_rows(file):
    columns, rows, dialect, bom = file
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "ratings.csv"
        with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
            writer = csv.writer(f, **dialect)
            writer.writerow(columns)
            writer.writerows(rows)
        check_file(path, len(rows), work, must_load=True)


def _values(strategy, n):
    return st.lists(st.none() | strategy, min_size=n, max_size=n)


# (arrow type, values): every column type a parquet file can hold, with missing values.
COLUMN_TYPES = [
    (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    (pa.uint64(), st.integers(0, 2**64 - 1)),
    (pa.int8(), st.integers(-128, 127)),
    (pa.float64(), st.floats()),
    (pa.float32(), st.floats(width=32)),
    (pa.string(), st.text(CHARS, max_size=10)),
    (pa.large_string(), TIMESTAMP_TEXT),
    (pa.binary(), st.binary(max_size=10)),
    (pa.bool_(), st.booleans()),
    (pa.timestamp("s"), DATETIMES.map(lambda d: d.replace(tzinfo=None))),
    (pa.timestamp("ms", tz="+05:30"), DATETIMES),
    (pa.timestamp("us", tz="UTC"), DATETIMES),
    (pa.timestamp("ns"), st.datetimes(pd.Timestamp.min, pd.Timestamp.max)),
    (pa.date32(), st.dates()),
    (pa.duration("s"), st.integers(-(2**40), 2**40)),
    (pa.decimal128(20, 3), st.decimals(-(10**16), 10**16, places=3)),
    (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=3)),
    (pa.null(), st.none()),
    (pa.dictionary(pa.int32(), pa.string()), st.sampled_from(["a", "1700000000", "2024-01-01"])),
]
NULLABLE = {
    pa.int64(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
    pa.string(): pd.StringDtype(),
}


@st.composite
def parquet_tables(draw):
    n = draw(st.integers(0, 10))
    names = list(REQUIRED)
    if draw(st.booleans()):
        names.append("rating")
    names += draw(st.lists(EXTRA_NAMES, max_size=2))
    if draw(st.integers(0, 9)) == 0:
        names = [n_ for n_ in names if n_ != draw(st.sampled_from(REQUIRED))]
    arrays = []
    for _ in names:
        kind, values = draw(st.sampled_from(COLUMN_TYPES))
        data = draw(_values(values, n))
        if pa.types.is_dictionary(kind):
            arrays.append(pa.array(data, pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(data, kind))
    return pa.Table.from_arrays(arrays, names=names), draw(st.booleans())


@given(parquet_tables())
@fuzz(1.0)
def test_any_parquet_ends_in_kept_and_quarantined_rows(drawn):
    table, through_pandas = drawn
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "ratings.parquet"
        complete = set(REQUIRED) <= set(table.column_names)
        if through_pandas and len(set(table.column_names)) == len(table.column_names):
            # pandas' nullable dtypes (Int64, boolean, string), restored from the metadata
            table.to_pandas(types_mapper=NULLABLE.get).to_parquet(path, index=False)
        else:
            pq.write_table(table, path)
        unique = len(set(table.column_names)) == len(table.column_names)
        check_file(path, table.num_rows, work, must_load=complete and unique)
