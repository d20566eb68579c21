"""Event validation and the durable event logs (no feature store needed)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime, timedelta

import pytest

from recsys.data.records import EventRecord
from recsys.features.events import EventLog, EventPolicy, parse_event, read_event
from recsys.files import append_line

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = EventPolicy()
TIMES = {"timestamp": NOW, "received": NOW}


def ok(**fields):
    return {"user_id": "u1", "item_id": "i1", "type": "click", **fields}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (ok(colour="red"), "colour: unknown field"),
        (ok(user_id=7), "user_id: Input should be a valid string"),
        ({"item_id": "i1", "type": "click"}, "user_id: Field required"),
        (ok(type="like"), "type: Input should be 'view', 'click', 'rating' or 'purchase'"),
        (ok(rating="5"), "rating: Input should be a valid number"),
        (ok(rating=9), "rating: 9.0 is outside [1.0, 5.0]"),
        (ok(type="rating"), "rating: required when type is 'rating'"),
        (ok(timestamp="yesterday"), "timestamp: Input should be a valid datetime"),
        (b"{not json", "body: Invalid JSON"),
    ],
)
def test_bad_events_are_rejected_naming_the_field(payload, reason):
    with pytest.raises(ValueError) as info:
        parse_event(payload, POLICY, NOW)
    assert reason in str(info.value)


def test_good_events_get_utc_times():
    assert parse_event(ok(), POLICY, NOW).timestamp == NOW  # default: when received
    naive = parse_event(ok(timestamp="2025-12-31T10:00:00"), POLICY, NOW)
    assert naive.timestamp == datetime(2025, 12, 31, 10, tzinfo=UTC)
    epoch = parse_event(json.dumps(ok(timestamp=1767225600, rating=4.5)), POLICY, NOW)
    assert epoch.timestamp == datetime(2026, 1, 1, tzinfo=UTC) and epoch.rating == 4.5
    skew = parse_event(ok(timestamp=(NOW + timedelta(minutes=2)).isoformat()), POLICY, NOW)
    assert skew.timestamp > NOW  # small clock skew is tolerated


@pytest.mark.parametrize(
    "sent",
    [
        "2026-01-02T00:00:00Z",  # a day ahead
        "1969-12-31T23:59:59Z",  # before 1970: a client without a clock
        "0001-01-01T00:00:00+01:00",  # no UTC datetime holds it
        "9999-12-31T23:59:59-01:00",
        -1.0,
        1.8555629829259108e16,  # epoch seconds past year 9999
    ],
)
def test_a_time_outside_the_window_is_taken_as_received_with_a_warning(sent):
    event, warning = read_event(ok(timestamp=sent), POLICY, NOW)
    assert event.timestamp == NOW
    assert "taken as received" in warning and "1970-01-01" in warning


def test_a_long_bad_value_is_named_by_a_short_prefix():
    with pytest.raises(ValueError) as info:
        parse_event(ok(user_id="u" * 100_000), POLICY, NOW)
    assert len(str(info.value)) < 300 and "100002 characters" in str(info.value)


def test_a_full_disk_leaves_no_half_line_and_the_next_append_resumes(tmp_path):
    """A line that fits only in part: the append raises and the part written is cut off."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        path = disk / "events.jsonl"
        append_line(path, "first")
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with pytest.raises(OSError):
            append_line(path, "x" * (free + 10_000))
        assert path.read_text() == "first\n"
        (disk / "events.jsonl").write_text("first\n")  # room again
        append_line(path, "second")
        assert path.read_text() == "first\nsecond\n"
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_logs_append_whole_lines_from_many_threads_and_skip_corrupt_ones(tmp_path):
    log = EventLog(tmp_path)

    def write(t):
        for n in range(50):
            item = f"{n}-" + "x" * 500
            log.append(EventRecord(user_id=f"u{t}", item_id=item, type="view", **TIMES), NOW)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    log.reject(b"\xff{oops", "body: Invalid JSON", NOW)
    path = tmp_path / "events-2026-01-01.jsonl"
    with path.open("a") as f:
        f.write('{"half": ')  # a crash mid-write by some other writer
    with pytest.warns(UserWarning, match="skipped a corrupt line"):
        frame = log.read()
    assert len(frame) == 400 and frame.groupby("user_id").size().eq(50).all()
    rejected = log.read("rejected")
    assert rejected["reason"].tolist() == ["body: Invalid JSON"]
    assert rejected["payload"].iloc[0].endswith("{oops")
