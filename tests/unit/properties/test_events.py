"""Events as clients send them: any bytes, any JSON, any dict. ``parse_event`` returns an
Event or raises ValueError naming the field; the logs grow by exactly one JSON line a call.

The future-timestamp rule (refused or clamped) is deliberately not asserted here."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys.data.records import EventRecord, RejectedEvent
from recsys.features.events import Event, EventLog, EventPolicy, parse_event

from .strategies import CHARS, DATETIMES, OFFSETS, TEXT, fuzz

NOW = datetime(2025, 1, 1, tzinfo=UTC)
FIELDS = ("user_id", "item_id", "type", "rating", "timestamp")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARS, max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
TIMES_ANY_OFFSET = st.datetimes(timezones=st.none() | OFFSETS)
TIMES = st.one_of(
    TIMES_ANY_OFFSET,
    TIMES_ANY_OFFSET.map(lambda d: d.isoformat()),
    st.floats(),
    st.integers(),
    TEXT,
    st.just(NOW.isoformat()),
    st.just((NOW + timedelta(days=1)).isoformat()),
)
VALUES = {
    "user_id": st.one_of(TEXT, st.text(CHARS, min_size=250, max_size=260), st.integers(), JSON),
    "item_id": st.one_of(TEXT, st.integers(), JSON),
    "type": st.one_of(st.sampled_from(["view", "click", "rating", "purchase", "VIEW"]), JSON),
    "rating": st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.integers(0, 6), JSON),
    "timestamp": TIMES,
}
EVENT_DICTS = st.fixed_dictionaries(
    {},
    optional={
        **VALUES,
        "extra": JSON,
        "Extra_2": JSON,
    },
)


def check(payload) -> None:
    try:
        event = parse_event(payload, EventPolicy(), NOW)
    except ValueError as exc:
        reason = str(exc)
        assert reason.strip()
        if isinstance(payload, dict):  # the first part names a field, the body, or the key
            where = reason.split(":")[0].split(".")[0]
            assert where in {*FIELDS, *payload, "body"}, reason
        return
    assert isinstance(event, Event)
    assert event.timestamp is not None and event.timestamp.utcoffset() == timedelta(0)


@given(EVENT_DICTS)
@fuzz(3.0)
def test_event_dict_is_an_event_or_a_value_error(payload):
    check(payload)


@given(
    st.one_of(
        st.binary(max_size=40),
        EVENT_DICTS.map(lambda d: json.dumps(d, default=str)),
        EVENT_DICTS.map(lambda d: json.dumps(d, default=str).encode()),
        JSON.map(json.dumps),
        st.text(max_size=30),  # lone surrogates included
    )
)
@fuzz(3.0)
def test_event_bytes_or_text_is_an_event_or_a_value_error(payload):
    check(payload)


def _utc_holds(when) -> bool:
    try:
        when.astimezone(UTC)
    except OverflowError:
        return False
    return True


@pytest.fixture(scope="module")
def log_dir():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@given(
    kind=st.sampled_from(["append", "reject"]),
    payload=st.one_of(JSON, st.binary(max_size=20), st.text(max_size=20), EVENT_DICTS),
    reason=st.text(max_size=20),
    # the time of receipt: the server's clock, a time UTC holds (the client's own time, any
    # JSON, is the payload; a time UTC cannot hold is taken as received before it is logged)
    when=DATETIMES.map(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC)).filter(_utc_holds),
)
@fuzz(1.0)
def test_log_grows_by_one_json_line_a_call(log_dir, kind, payload, reason, when):
    log = EventLog(log_dir)
    prefix = "events" if kind == "append" else "rejected"
    path = log_dir / f"{prefix}-{when:%Y-%m-%d}.jsonl"
    before = path.read_bytes().count(b"\n") if path.exists() else 0
    if kind == "append":  # the client's own time may be any JSON the client sent
        sent = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
        times = {"timestamp": when, "received": when, "client_timestamp": sent}
        log.append(EventRecord(user_id="u", item_id="i", type="view", **times), when)
    else:
        log.reject(payload, reason, when)
    lines = path.read_bytes().split(b"\n")
    assert len(lines) - 1 == before + 1 and lines[-1] == b""
    record = json.loads(lines[-2])
    (EventRecord if kind == "append" else RejectedEvent).parse(record)  # reads back


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_at_the_edge_of_the_calendar_is_an_event_or_a_value_error(stamp):
    """``astimezone(UTC)`` overflowed here (OverflowError) before the events change."""
    check({"user_id": "u", "item_id": "i", "type": "view", "timestamp": stamp})
