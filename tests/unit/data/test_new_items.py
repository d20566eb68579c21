"""New items at run time: each row validated (the refused ones named, with the field), the
durable log read back in order from any offset, and the catalog the next training reads."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.data.new_items import (
    LOG_FILE,
    REJECTED_FILE,
    ItemLog,
    NewItem,
    check_items,
    items_of_body,
    items_of_file,
    merged_catalog,
)

GOOD = {"item_id": "n1", "title": "Space Rocket", "genres": ["Sci-Fi", "Action"]}


def test_rows_are_checked_one_by_one_and_each_refusal_names_the_field():
    rows = [
        GOOD,
        {"item_id": "n2", "genres": "Drama"},  # no title
        {"item_id": "n3", "title": "Old", "release_year": "1999"},  # a string is not a year
        {"item_id": "i1", "title": "Known"},
        {**GOOD, "title": "Again"},
        {"item_id": "n4", "title": "  Padded  ", "colour": "red"},
        {"item_id": " ", "title": "Blank id"},
        "not an object",
        {"item_id": "n5", "title": "Fine", "genres": "Comedy|Drama", "release_year": 2001},
    ]
    checked = check_items(rows, known={"i1"})
    assert [i.item_id for i in checked.items] == ["n1", "n5"] and checked.known == ["i1", "n1"]
    assert checked.items[0].genres == "Sci-Fi|Action"  # a list kept as one "a|b" value
    why = {r.row: r.reason for r in checked.rejected}
    assert why[1] == "missing title"
    assert why[2].startswith("release_year:")
    assert 3 not in why  # known already: left as it is (a client's retry is no error)
    assert 4 not in why  # its id met earlier in the batch: known, the first row wins
    assert why[5] == "colour: unknown field"
    assert why[6].startswith("item_id:") and "blank" in why[6]
    assert 7 in why and [r.item_id for r in checked.rejected][:2] == ["n2", "n3"]


def test_a_body_is_a_list_an_object_or_items_and_a_bad_one_says_which():
    assert items_of_body(json.dumps({"items": [GOOD]})) == [GOOD]
    assert items_of_body(json.dumps([GOOD, GOOD])) == [GOOD, GOOD]
    assert items_of_body(json.dumps(GOOD)) == [GOOD]
    for body, message in (
        (b"{nope", "not JSON"),
        (b"[]", "no items"),
        (b"3", "expected"),
        (json.dumps([GOOD] * 257), "at most 256"),
    ):
        with pytest.raises(ValueError, match=message):
            items_of_body(body)


def test_files_of_json_lines_csv_and_parquet(tmp_path):
    lines = tmp_path / "new.jsonl"
    lines.write_text(json.dumps(GOOD) + "\n{broken\n" + json.dumps({"item_id": "n2"}) + "\n")
    rows = items_of_file(lines)
    checked = check_items(rows)
    assert [i.item_id for i in checked.items] == ["n1"]
    assert [r.reason for r in checked.rejected] == [
        "line 2: not JSON (Expecting property name enclosed in double quotes)",
        "missing title",
    ]
    table = pd.DataFrame({"item_id": [7, 8], "title": ["A", "B"], "release_year": [1999.0, None]})
    table.to_csv(tmp_path / "new.csv", index=False)
    table.to_parquet(tmp_path / "new.parquet")
    for name in ("new.csv", "new.parquet"):
        checked = check_items(items_of_file(tmp_path / name))
        assert [(i.item_id, i.release_year) for i in checked.items] == [("7", 1999), ("8", None)]
    pd.DataFrame({"id": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(RecsysError, match="bad.csv: no item_id column"):
        items_of_file(tmp_path / "bad.csv")
    with pytest.raises(RecsysError, match="no such file"):
        items_of_file(tmp_path / "missing.jsonl")


def test_the_log_reads_back_in_order_from_any_offset_and_waits_for_a_whole_line(tmp_path):
    log = ItemLog(tmp_path / "items")
    assert log.size() == 0 and log.read()[0].empty
    log.append([NewItem.model_validate(GOOD)])
    first = log.size()
    log.append(
        [NewItem(item_id="n2", title="B", release_year=1990), NewItem(item_id="n3", title="C")]
    )
    items, end = log.read()
    assert items.item_id.tolist() == ["n1", "n2", "n3"] and end == log.size()
    assert items.genres.tolist() == ["Sci-Fi|Action", "", ""]
    assert items.release_year.tolist()[1] == 1990 and pd.isna(items.release_year.iloc[0])
    later, _ = log.read(first)
    assert later.item_id.tolist() == ["n2", "n3"]
    with open(log.path, "a") as f:
        f.write('{"item_id": "half')  # a writer mid-line: not read until its newline
    waiting, at = log.read(end)
    assert waiting.empty and at == end
    with open(log.path, "a") as f:
        f.write('"}\n')  # not a record: skipped with a warning, the offset moves on
    with pytest.warns(UserWarning, match="skipped an unreadable line"):
        skipped, after = log.read(end)
    assert skipped.empty and after == log.size()
    with pytest.warns(UserWarning):
        assert log.ids() == {"n1", "n2", "n3"}


def test_refused_rows_are_quarantined_with_their_reasons(tmp_path):
    log = ItemLog(tmp_path)
    rows = [{"item_id": "x"}]
    log.reject(check_items(rows).rejected, rows)
    kept = json.loads((tmp_path / REJECTED_FILE).read_text())
    assert kept["reason"] == "missing title" and kept["input"] == {"item_id": "x"}
    assert not (tmp_path / LOG_FILE).exists()


def test_the_next_trainings_catalog_holds_the_added_items_once():
    base = pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"], "url": ["u", "v"]})
    added = pd.DataFrame(
        {"item_id": ["2", "9"], "title": ["b again", "new"], "genres": ["", "Drama"]}
    )
    merged = merged_catalog(base, added)
    assert merged.item_id.tolist() == ["1", "2", "9"]
    assert merged.title.tolist() == ["a", "b", "new"] and list(merged.columns) == [
        "item_id",
        "title",
        "url",
    ]
    assert merged_catalog(None, added) is added and merged_catalog(base, added.iloc[:0]) is base
