"""Reading the prediction and event logs back, damage included, and joining the two."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from recsys.data.records import EventRecord, PredictionRecord
from recsys.features.events import EventLog, EventPolicy, parse_event
from recsys.monitoring.jsonl import read_jsonl
from recsys.monitoring.logs import (
    FEEDBACK_COLUMNS,
    PREDICTION_COLUMNS,
    join_feedback,
    load_feedback,
    load_predictions,
    sample_summary,
)
from serving.predlog import PredictionLog

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
FEATURES = {
    "age_bucket": 2,
    "gender": "M",
    "occupation": "writer",
    "user_interactions": 40,
    "user_mean_rating": 3.6,
    "last_items": ["50", "12", "7"],
    "genre_affinity": [0.5, 0.25, 0.25],
}


def answer(request_id, user="u1", at=T0, items=("50", "181"), scores=None, features=None):
    """A record shaped like ``serving/app.py``'s ``_observe`` writes."""
    scores = [round(0.9 - 0.1 * n, 2) for n in range(len(items))] if scores is None else scores
    return {
        "request_id": request_id,
        "ts": at.isoformat(),
        "request": {"user_id": user, "k": len(items), "exclude_seen": True, "filters": {}},
        "model_version": "pipeline-1",
        "user_features": FEATURES if features is None else features,
        "candidates": 3,
        "candidate_codes": [4, 5, 6],
        "candidate_scores": [0.9, 0.8, 0.1],
        "items": list(items),
        "scores": scores,
        "cold_start": features == {},
        "latency_ms": 12.3,
        "stage_ms": {"candidates": 4.0, "rank": 6.0, "order": 2.3},
    }


def write_log(directory, records) -> None:
    log = PredictionLog(directory)
    for record in records:
        log.log(PredictionRecord.parse(record))
    log.close()


def line(record: dict) -> str:
    return json.dumps(record) + "\n"


def write_lines(path, lines) -> None:
    path.write_bytes(b"".join(x if isinstance(x, bytes) else x.encode() for x in lines))


def event(user, item, kind, at, rating=None) -> EventRecord:
    """An accepted event exactly as ``EventIngestor.ingest`` logs it."""
    body = {"user_id": user, "item_id": item, "type": kind, "rating": rating}
    parsed = parse_event(body | {"timestamp": at.isoformat()}, EventPolicy(), T0 + timedelta(7))
    return EventRecord(**parsed.model_dump(), received=at)


# -- damaged files -----------------------------------------------------------------------------
def test_every_good_record_survives_damaged_and_unreadable_files(tmp_path):
    write_log(tmp_path, [answer(f"good{n}") for n in range(3)] + [answer("torn")])
    (written,) = tmp_path.glob("predictions-*.jsonl")
    with written.open("r+b") as f:  # the writer died mid-record
        f.truncate(written.stat().st_size - 40)
    mixed = tmp_path / "predictions-mixed.jsonl"
    mismatched = answer("mismatch", scores=[0.5])
    write_lines(
        mixed,
        [line(answer("good3")), '{"request_id": "x", "ts\n', "[1, 2]\n", line(mismatched)]
        + [b"\xff\xfe bad utf-8\n", "\n", line(answer("good4"))],
    )
    garbage = tmp_path / "predictions-bad.jsonl"
    garbage.write_bytes(gzip.compress(bytes(range(256)) * 20, mtime=0))
    (tmp_path / "predictions-dir.jsonl").mkdir()
    locked = tmp_path / "predictions-locked.jsonl"
    write_lines(locked, [line(answer("locked"))])
    locked.chmod(0)  # root reads it anyway: then it is simply one more good file

    frame, warnings = load_predictions(tmp_path)

    expected = {f"good{n}" for n in range(5)} | ({"locked"} if os.geteuid() == 0 else set())
    assert set(frame["request_id"]) == expected
    assert len(frame) == 2 * len(expected)
    text = "\n".join(warnings)
    for damaged in (written, mixed, garbage, tmp_path / "predictions-dir.jsonl"):
        assert str(damaged) in text
    assert f"{written}: skipped 1 of 4 lines (line 4: not JSON (half-written last line)" in text
    assert f"{mixed}: skipped 3 of 7 lines (first at line 2: not JSON" in text
    assert f"{mixed}: skipped 1 of 3 records (items and scores of different lengths: 1)" in text
    assert "predictions-dir.jsonl: unreadable" in text and "IsADirectoryError" in text
    if os.geteuid() != 0:
        assert "predictions-locked.jsonl: unreadable" in text and "PermissionError" in text


def test_read_jsonl_names_the_reason_and_logs_each_warning(tmp_path, caplog):
    path = tmp_path / "predictions-x.jsonl"
    write_lines(path, ['{"a": 1}\n', '"a string"\n', b'{"b": "\xc3"}\n', '{"c": 3}\n'])
    records, warnings = read_jsonl([path, tmp_path / "missing.jsonl"])
    assert records == [{"a": 1}, {"c": 3}]
    assert warnings[0].startswith(f"{path}: skipped 2 of 4 lines (first at line 2: not a JSON")
    assert "missing.jsonl: unreadable after 0 lines (FileNotFoundError" in warnings[1]
    assert [r.getMessage() for r in caplog.records] == warnings


def test_a_record_missing_a_required_key_is_counted(tmp_path):
    broken = [answer("a"), answer("b") | {"request": {}}, answer("c") | {"ts": "yesterday"}]
    write_lines(tmp_path / "predictions-1.jsonl", [line(r) for r in broken])
    frame, warnings = load_predictions(tmp_path)
    assert set(frame["request_id"]) == {"a"}
    assert warnings == [
        f"{tmp_path / 'predictions-1.jsonl'}: skipped 2 of 3 records "
        "(request: no user_id (a non-empty string): 1, ts: not an ISO 8601 time: 1)"
    ]


def test_an_empty_or_missing_directory_gives_an_empty_frame(tmp_path):
    for directory in (tmp_path, tmp_path / "nowhere"):
        frame, warnings = load_predictions(directory)
        assert list(frame.columns) == list(PREDICTION_COLUMNS) and frame.empty
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]" and len(warnings) == 1
        feedback, warnings = load_feedback(directory)
        assert list(feedback.columns) == list(FEEDBACK_COLUMNS) and feedback.empty
        assert len(warnings) == 1


# -- one row per item ----------------------------------------------------------------------
def test_rows_per_item_with_the_users_scalar_features_flattened(tmp_path):
    items = ("50", "181", "7")
    write_log(tmp_path, [answer("a", items=items), answer("b", user="new", features={})])
    frame, warnings = load_predictions(tmp_path)
    assert warnings == []
    assert list(frame.columns) == [
        *PREDICTION_COLUMNS,
        "user_age_bucket",
        "user_gender",
        "user_history_len",
        "user_interactions",
        "user_mean_rating",
        "user_occupation",
    ]
    a = frame[frame["request_id"] == "a"]
    assert a["item_id"].tolist() == list(items) and a["rank"].tolist() == [1, 2, 3]
    assert a["score"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert a["user_gender"].unique().tolist() == ["M"] and (a["user_history_len"] == 3).all()
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]" and (frame["ts"] == T0).all()
    b = frame[frame["request_id"] == "b"]
    assert b["cold_start"].all() and b["user_age_bucket"].isna().all()
    assert frame["rank"].dtype == "int64" and frame["score"].dtype == "float64"


def test_since_and_until_select_by_ts(tmp_path):
    write_log(tmp_path, [answer(str(h), at=T0 + timedelta(hours=h)) for h in range(4)])
    frame, _ = load_predictions(
        tmp_path, since=T0 + timedelta(hours=1), until=datetime(2024, 6, 1, 13)
    )  # a naive bound is UTC; since is inclusive, until exclusive
    assert sorted(frame["request_id"].unique()) == ["1", "2"]


# -- feedback ----------------------------------------------------------------------------------
def test_feedback_reads_accepted_events_only(tmp_path):
    log = EventLog(tmp_path)
    log.append(event("u1", "50", "click", T0), T0)
    log.append(event("u1", "181", "rating", T0 + timedelta(days=1), rating=5.0), T0)
    bad = {"user_id": "u1", "item_id": "9", "type": "like", "timestamp": "x", "received": "x"}
    with (tmp_path / "events-2024-06-01.jsonl").open("a") as f:
        f.write(line(bad))  # not an EventRecord: the reader counts it
    log.reject(b'{"user_id": 1}', "user_id: not a string", T0)
    frame, warnings = load_feedback(tmp_path)
    assert list(frame.columns) == list(FEEDBACK_COLUMNS)
    assert frame[["item_id", "type", "rating"]].to_dict("list") == {
        "item_id": ["50", "181"],
        "type": ["click", "rating"],
        "rating": [pytest.approx(float("nan"), nan_ok=True), 5.0],
    }
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["timestamp"].tolist() == [T0, T0 + timedelta(days=1)]
    assert len(warnings) == 1 and "events-2024-06-01.jsonl: skipped 1 of 3 records" in warnings[0]
    assert "type: Input should be 'view', 'click', 'rating' or 'purchase': 1" in warnings[0]
    assert "timestamp: not an ISO 8601 time: 1" in warnings[0]
    later, _ = load_feedback(tmp_path, since=T0 + timedelta(hours=1))
    assert later["item_id"].tolist() == ["181"]


# -- the join --------------------------------------------------------------------------------
def test_join_labels_positive_events_inside_the_window(tmp_path):
    cases = {  # item: (event type, hours after the prediction, rating), expected target
        "in-window": (("click", 2, None), 1),
        "late": (("click", 30, None), 0),
        "before": (("purchase", -1, None), 0),
        "view": (("view", 1, None), 0),
        "low-rating": (("rating", 1, 3.0), 0),
        "high-rating": (("rating", 1, 5.0), 1),
        "no-event": (None, 0),
    }
    write_log(tmp_path / "p", [answer("a", at=T0 + timedelta(hours=1), items=tuple(cases))])
    log = EventLog(tmp_path / "e")
    for item, (spec, _) in cases.items():
        if spec:
            kind, hours, rating = spec
            log.append(event("u1", item, kind, T0 + timedelta(hours=1 + hours), rating), T0)
    log.append(event("u2", "in-window", "click", T0 + timedelta(hours=2)), T0)  # another user
    predictions, _ = load_predictions(tmp_path / "p")
    feedback, _ = load_feedback(tmp_path / "e")

    joined = join_feedback(predictions, feedback)

    assert dict(zip(joined["item_id"], joined["target"], strict=True)) == {
        item: expected for item, (_, expected) in cases.items()
    }
    assert joined["target"].dtype == "int64" and joined.index.equals(predictions.index)
    wider = join_feedback(predictions, feedback, window=timedelta(hours=31), min_rating=3.0)
    assert wider.set_index("item_id")["target"][["late", "low-rating"]].tolist() == [1, 1]
    empty = join_feedback(predictions, feedback.iloc[:0])
    assert (empty["target"] == 0).all()


def test_sample_summary_counts_the_evidence(tmp_path):
    write_log(tmp_path / "p", [answer("a"), answer("b"), answer("c", user="u2")])
    log = EventLog(tmp_path / "e")
    log.append(event("u1", "50", "click", T0 + timedelta(hours=1)), T0)
    log.append(event("u9", "50", "view", T0 + timedelta(hours=1)), T0)
    predictions, _ = load_predictions(tmp_path / "p")
    feedback, _ = load_feedback(tmp_path / "e")
    expected = {
        "requests": 3,
        "users": 2,
        "prediction_rows": 6,
        "feedback_events": 2,
        "users_with_feedback": 1,
        "positives": 2,  # u1 was shown item 50 twice before the click
    }
    assert sample_summary(predictions, feedback) == expected
    assert sample_summary(join_feedback(predictions, feedback), feedback) == expected
    assert sample_summary(predictions.iloc[:0], feedback.iloc[:0])["positives"] == 0


def test_join_keeps_a_row_per_prediction_when_pairs_repeat():
    ts = pd.Timestamp(T0)
    predictions = pd.DataFrame(
        {
            "user_id": ["u"] * 4,
            "item_id": ["i"] * 4,
            "ts": [ts + pd.Timedelta(hours=h) for h in range(4)],
        }
    )
    feedback = pd.DataFrame(
        {
            "user_id": ["u"] * 3,
            "item_id": ["i"] * 3,
            "type": ["click"] * 3,
            "rating": [None] * 3,
            "timestamp": [ts + pd.Timedelta(minutes=m) for m in (30, 31, 32)],
        }
    )
    joined = join_feedback(predictions, feedback, window=timedelta(hours=1))
    assert joined["target"].tolist() == [1, 0, 0, 0]
