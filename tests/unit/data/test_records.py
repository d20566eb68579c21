"""The log records (``recsys.data.records``): what the writers write is what the readers read,
field for field; a record off the schema is refused with the field named; the lines are the
ones the services wrote before the schemas."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recsys.data.records import (
    EVENT_TYPES,
    EventRecord,
    PredictionRecord,
    RecordError,
    event_frame,
    record_line,
)
from recsys.features.events import Event, EventLog
from recsys.models.base import Candidates
from recsys.monitoring.jsonl import read_records
from recsys.monitoring.logs import load_feedback, load_predictions
from recsys.recommend.batch import Served
from recsys.recommend.stages import Answer, Recommendation
from serving.predlog import PredictionLog, prediction_record
from serving.schemas import RecommendRequest, RecommendResponse

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def served_answer() -> tuple[RecommendRequest, RecommendResponse, Served]:
    """One answer as the Ingress holds it after the stages: two items, the second a fill."""
    body = RecommendRequest(user_id="u7", k=2)
    items = [
        Recommendation(item_id="50", score=0.75, rank=1, reason="because"),
        Recommendation(item_id="9", score=0.5, rank=2, reason="popular", source="popular"),
    ]
    answer = Answer(user_id="u7", items=items, cold_start=False)
    candidates = Candidates(codes=np.array([4, 8, 15], dtype=np.int64), known=True)
    scores = np.array([0.123456, -np.inf, 2.5], dtype=np.float32)
    features = {"age_bucket": 2, "gender": "F", "last_items": ["1", "2"], "history_len": 2}
    timings = {"candidates": 0.0012345, "rank": 0.002, "order": 0.0005}
    served = Served(answer, candidates, scores, features, timings)
    response = RecommendResponse(
        user_id="u7", model_version="v3", items=items, cold_start=False, took_ms=4.5
    )
    return body, response, served


def test_a_served_answer_reads_back_field_for_field(tmp_path):
    body, response, served = served_answer()
    record = prediction_record("r-1", body, response, served, took_ms=4.56789)
    log = PredictionLog(tmp_path)
    log.log(record)
    log.close()
    (path,) = tmp_path.glob("predictions-*.jsonl")
    (line,) = path.read_text().splitlines()

    back = PredictionRecord.parse(json.loads(line))

    # the schema's fields, in order (an experiment's only within one: test_experiment_status,
    # test_shadow)
    plain = [
        f
        for f in PredictionRecord.model_fields
        if f not in ("experiment", "arm", "teams", "shadow_of")
    ]
    assert list(record) == plain
    assert back.request_id == "r-1" and back.ts == record["ts"] and back.ts.tzinfo == UTC
    assert back.request == body.model_dump() and back.user_id == "u7"
    assert back.model_version == "v3" and back.user_features == served.features
    assert back.candidates == 3 and back.candidate_codes == [4, 8, 15]
    assert back.candidate_scores[0] == 0.1235 and back.candidate_scores[1] == -math.inf
    assert back.items == ["50", "9"] and back.scores == [0.75, 0.5]
    assert back.sources == ["model", "popular"] and back.cold_start is False
    assert back.latency_ms == 4.568 and back.stage_ms == {
        "candidates": 1.234,
        "rank": 2.0,
        "order": 0.5,
    }
    assert set(plain) == set(back.model_fields_set)  # every field
    frame, warnings = load_predictions(tmp_path)
    assert warnings == [] and frame["item_id"].tolist() == ["50", "9"]
    assert frame["source"].tolist() == ["model", "popular"] and (frame["user_id"] == "u7").all()
    assert frame["user_gender"].tolist() == ["F", "F"] and (frame["user_history_len"] == 2).all()


def test_the_prediction_line_is_the_one_the_app_wrote_before_the_schema():
    body, response, served = served_answer()
    record = prediction_record("r-1", body, response, served, took_ms=4.56789)
    before = {  # what serving/app.py's _observe logged, and how the writer printed it
        "request_id": "r-1",
        "ts": record["ts"].isoformat(),
        "request": body.model_dump(),
        "model_version": "v3",
        "user_features": served.features,
        "candidates": 3,
        "candidate_codes": [4, 8, 15],
        "candidate_scores": np.round(served.scores.astype(np.float64), 4).tolist(),
        "items": ["50", "9"],
        "scores": [0.75, 0.5],
        "sources": ["model", "popular"],
        "cold_start": False,
        "latency_ms": 4.568,
        "stage_ms": {"candidates": 1.234, "rank": 2.0, "order": 0.5},
    }
    assert record_line(record) == json.dumps(before, separators=(",", ":"))


def test_an_accepted_event_reads_back_field_for_field(tmp_path):
    event = Event(user_id="u1", item_id="i9", type="rating", rating=4, timestamp=T0)
    late = T0 + timedelta(seconds=3)
    record = EventRecord(**event.model_dump(), received=late, client_timestamp="2999-01-01")
    log = EventLog(tmp_path)
    log.append(record, late)
    (path,) = tmp_path.glob("events-*.jsonl")
    line = path.read_text()
    # the line EventIngestor.ingest wrote before the schema
    before = {**event.model_dump(mode="json"), "received": late.isoformat()}
    assert line == json.dumps(before | {"client_timestamp": "2999-01-01"}, sort_keys=True) + "\n"

    assert EventRecord.parse(json.loads(line)) == record
    (row,) = log.read().to_dict("records")
    assert row == {
        "user_id": "u1",
        "item_id": "i9",
        "type": "rating",
        "rating": 4.0,
        "timestamp": pd.Timestamp(T0),
        "received": pd.Timestamp(late),
        "client_timestamp": "2999-01-01",
    }
    feedback, warnings = load_feedback(tmp_path)
    assert warnings == [] and feedback.to_dict("records") == [
        {k: row[k] for k in ("user_id", "item_id", "type", "rating", "timestamp")}
    ]
    plain = EventRecord(user_id="u", item_id="i", type="view", timestamp=T0, received=T0)
    assert "client_timestamp" not in plain.line()  # only when the client's time was replaced


GOOD_ANSWER = {
    "request_id": "a",
    "ts": "2026-03-01T09:30:00+00:00",
    "request": {"user_id": "u1", "k": 2},
    "model_version": "v1",
    "items": ["1", "2"],
    "scores": [0.5, 0.25],
    "cold_start": False,
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "PredictionRecord: colour: unknown field"),
        ({"items": "1,2"}, "items: Input should be a valid list"),
        ({"request": {"k": 2}}, "request: no user_id (a non-empty string)"),
        ({"ts": "last tuesday"}, "ts: not an ISO 8601 time"),
        ({"ts": 1767225600}, "ts: not an ISO 8601 time"),
        ({"scores": [0.5, "0.25"]}, "scores.1: Input should be a valid number"),
        ({"scores": [0.5, True]}, "scores.1: Input should be a valid number"),
        ({"scores": [0.5]}, "items and scores of different lengths"),
        ({"sources": ["model", "fill"]}, "sources.1: Input should be 'model' or 'popular'"),
    ],
)
def test_a_prediction_off_the_schema_is_refused_naming_the_field(change, message):
    assert PredictionRecord.parse(GOOD_ANSWER).items == ["1", "2"]
    with pytest.raises(RecordError, match="^PredictionRecord: ") as info:
        PredictionRecord.parse(GOOD_ANSWER | change)
    assert message in str(info.value)


def test_a_missing_field_is_named():
    with pytest.raises(RecordError) as info:
        PredictionRecord.parse({k: v for k, v in GOOD_ANSWER.items() if k != "model_version"})
    assert str(info.value) == "PredictionRecord: missing model_version"
    with pytest.raises(RecordError) as info:
        EventRecord.parse(
            {"user_id": "u", "item_id": "i", "type": "view", "timestamp": "2026-01-01"}
        )
    assert str(info.value) == "EventRecord: missing received"


GOOD_EVENT = {
    "user_id": "u1",
    "item_id": "i1",
    "type": "click",
    "rating": None,
    "timestamp": "2026-03-01T09:30:00Z",
    "received": "2026-03-01T09:30:01.5+00:00",
}
EVENT_CASES = [
    {},
    {"rating": 4},
    {"rating": 4.5, "type": "rating"},
    {"client_timestamp": 1.0e16},
    {"timestamp": "2026-03-01T09:30:00"},  # naive: UTC
    {"timestamp": "2026-03-01T11:30:00+02:00"},
    {"colour": "red"},
    {"user_id": ""},
    {"user_id": 7},
    {"item_id": None},
    {"type": "like"},
    {"type": ["click"]},
    {"type": "rating"},
    {"rating": "4"},
    {"rating": True},
    {"rating": math.nan},
    {"rating": math.inf},
    {"rating": 10**400},
    {"timestamp": "yesterday"},
    {"timestamp": 1767225600},
    {"timestamp": "0001-01-01T00:00:00+01:00"},
    {"received": None},
]


def same_reading(kind, value, tmp_path) -> None:
    """A log line is read (parsed and checked in one pass) as its object is parsed."""
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(value) + "\n")
    read, warnings = read_records(path, kind)
    try:
        expected = kind.parse(value)
    except RecordError as exc:
        assert read == [] and len(warnings) == 1
        assert f"{path}: skipped 1 of 1 records (" in warnings[0]
        reason = warnings[0].split(" records (")[1]  # the same field (the words may differ:
        field = reason.split(":")[0]  # JSON has objects, Python dictionaries)
        assert f"{kind.__name__}: {field}" in str(exc) or f"; {field}" in str(exc)
        return
    assert warnings == [] and read == [expected]


@pytest.mark.parametrize("change", EVENT_CASES)
def test_an_event_line_reads_as_its_object_parses(change, tmp_path):
    same_reading(EventRecord, GOOD_EVENT | change, tmp_path)


@pytest.mark.parametrize(
    "change",
    [{}, {"colour": 1}, {"ts": "x"}, {"scores": [1]}, {"candidate_scores": [1, 2.5]}]
    + [{"request": []}, {"request_id": 7}, {"sources": ["model", "popular"]}],
)
def test_a_prediction_line_reads_as_its_object_parses(change, tmp_path):
    same_reading(PredictionRecord, GOOD_ANSWER | change, tmp_path)


def test_event_frame_types_the_columns():
    records = [EventRecord.parse(GOOD_EVENT), EventRecord.parse(GOOD_EVENT | {"rating": 4})]
    frame = event_frame(records)
    assert list(frame.columns) == list(EventRecord.model_fields)
    assert frame["rating"].dtype == "float64" and math.isnan(frame["rating"][0])
    assert str(frame["timestamp"].dtype) == str(frame["received"].dtype) == "datetime64[ns, UTC]"
    assert frame["timestamp"][1] == pd.Timestamp("2026-03-01T09:30:00Z")
    assert list(event_frame([]).columns) == list(EventRecord.model_fields)


def test_the_event_types_are_the_schemas():
    assert EVENT_TYPES == ("view", "click", "rating", "purchase")
    assert Event.model_fields["type"].annotation == EventRecord.model_fields["type"].annotation
