"""Validation: every reason is caught, bad rows are kept with their reason, nothing lost."""

import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.data.validate import load_interactions, validate_interactions

NOW = pd.Timestamp("2025-01-01", tz="UTC")


def raw(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_each_reason_is_detected_and_rows_are_kept():
    df = raw(
        [
            ["1", "10", "4", "1700000000"],  # good
            [None, "10", "4", "1700000000"],  # missing user
            ["2", "", "4", "1700000000"],  # missing item (blank)
            ["3", "10", "great", "1700000000"],  # non-numeric rating
            ["4", "10", "9", "1700000000"],  # out of range
            ["5", "10", "3", "yesterday"],  # unparseable timestamp
            ["6", "10", "3", "2030-01-01T00:00:00Z"],  # future
            ["1", "10", "4", "1700000000"],  # exact duplicate of row 0
            ["7", "11", None, "2024-02-03T04:05:06+01:00"],  # implicit feedback, ISO time: good
        ]
    )
    result = validate_interactions(df, now=NOW)
    assert result.counts == {
        "missing_user_id": 1,
        "missing_item_id": 1,
        "non_numeric_rating": 1,
        "rating_out_of_range": 1,
        "unparseable_timestamp": 1,
        "future_timestamp": 1,
        "duplicate_row": 1,
    }
    assert len(result.clean) + len(result.quarantine) == len(df)
    assert result.quarantine["row"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert result.quarantine.loc[2, "rating"] == "great"  # original value kept
    clean = result.clean
    assert clean["user_id"].tolist() == ["1", "7"]
    assert str(clean["timestamp"].dt.tz) == "UTC"
    assert clean.loc[1, "timestamp"] == pd.Timestamp("2024-02-03T03:05:06Z")
    assert pd.isna(clean.loc[1, "rating"])


def test_row_with_two_problems_lists_both():
    result = validate_interactions(raw([[None, "1", "x", "1700000000"]]), now=NOW)
    assert result.quarantine.loc[0, "reason"] == "missing_user_id; non_numeric_rating"


def test_numeric_ids_become_plain_strings():
    df = pd.DataFrame(
        {
            "user_id": [196.0, 186.0],
            "item_id": [242, 302],
            "rating": [3, 3],
            "timestamp": [881250949, 891717742],
        }
    )
    clean = validate_interactions(df, now=NOW).clean
    assert clean["user_id"].tolist() == ["196", "186"]
    assert clean["item_id"].tolist() == ["242", "302"]


def test_missing_column_names_it():
    with pytest.raises(RecsysError, match=r"missing required column\(s\) \['timestamp'\]"):
        validate_interactions(pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}))


def test_load_quarantines_beside_input_and_enforces_threshold(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,2,4,1700000000\n,3,4,1700000000\n")
    with pytest.raises(RecsysError, match="50.00% of 2 rows failed") as err:
        load_interactions(path, max_bad_share=0.1)
    assert err.value.exit_code == 3
    quarantine = pd.read_parquet(tmp_path / "events.quarantine.parquet")
    assert quarantine["reason"].tolist() == ["missing_user_id"]
    clean, result = load_interactions(path, max_bad_share=0.5)
    assert len(clean) == 1 and result.bad_share == 0.5
