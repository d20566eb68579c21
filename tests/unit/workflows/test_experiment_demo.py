"""The experiment demo's simulated users (they click what they rated later, with position
bias, seeded per user) and its count of the users a decision needed, read from logs written as
the app and the event ingestor write them."""

from datetime import UTC, datetime, timedelta

import pandas as pd

from recsys.data.records import EventRecord, record_line
from recsys.experiments.assignment import arm_of
from recsys.experiments.spec import Experiment
from recsys.features.events import EventLog
from recsys.workflows import experiment_demo

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_simulated_user_clicks_only_what_it_rated_later_rank_one_always(monkeypatch):
    posted = []

    def post(url, path, body):
        posted.append((path, body))
        items = [{"item_id": f"i{n}", "rank": n} for n in range(1, 11)]
        return 200, {"items": items} if path == "/recommend" else {}

    monkeypatch.setattr(experiment_demo, "post", post)
    watched = pd.Series({"u1": {"i1", "i4", "i99"}, "u2": set()})
    clicks = experiment_demo.replay("http://app", ["u1", "u2"], watched, threads=1)
    events = [b for p, b in posted if p == "/events"]
    assert {e["item_id"] for e in events} <= {"i1", "i4"} and clicks == len(events)
    assert {"user_id": "u1", "item_id": "i1", "type": "click"} in events  # rank 1: always
    posted.clear()  # the same users click the same items again (seeded per user)
    assert experiment_demo.replay("http://app", ["u1", "u2"], watched, threads=1) == clicks
    assert [b for p, b in posted if p == "/events"] == events


def test_in_the_shadow_run_a_user_also_rates_its_next_held_out_items_in_time_order(monkeypatch):
    posted = []

    def post(url, path, body):
        posted.append((path, body))
        return 200, {"items": []} if path == "/recommend" else {}

    monkeypatch.setattr(experiment_demo, "post", post)
    test = pd.DataFrame(
        {
            "user_id": ["u1"] * 5 + ["u2"],
            "item_id": ["i5", "i1", "i4", "i2", "i3", "i9"],
            "rating": [5.0, 4.0, 3.0, 2.0, 1.0, 4.0],
            "timestamp": pd.to_datetime([5, 1, 4, 2, 3, 1], unit="s", utc=True),
        }
    )
    after = experiment_demo.next_events(test)
    assert [tuple(x) for x in after["u1"]] == [("i1", 4.0), ("i2", 2.0), ("i3", 1.0)]
    watched = test.groupby("user_id")["item_id"].agg(set)
    experiment_demo.replay("http://app", ["u1", "u2"], watched, threads=1, after=after)
    rated = [b for p, b in posted if p == "/events"]
    assert [(b["user_id"], b["item_id"], b["rating"]) for b in rated if b["user_id"] == "u1"] == [
        ("u1", "i1", 4.0),
        ("u1", "i2", 2.0),
        ("u1", "i3", 1.0),
    ]
    assert all(b["type"] == "rating" for b in rated) and len(rated) == 4


def test_users_needed_is_the_first_look_at_which_a_winner_is_named(tmp_path):
    spec = Experiment(name="d", control="v1", challenger="v2", min_users=20)
    lines, events = [], EventLog(tmp_path / "events")
    for n in range(400):
        user, when = f"u{n}", T0 + timedelta(seconds=n)
        arm = arm_of("d", user, 0.5)
        record = {
            "request_id": f"r{n}",
            "ts": when,
            "request": {"user_id": user, "k": 2},
            "model_version": {"control": "v1", "challenger": "v2"}[arm],
            "items": ["a", "b"],
            "scores": [1.0, 0.5],
            "cold_start": False,
            "latency_ms": 5.0,
            "experiment": "d",
            "arm": arm,
        }
        lines.append(record_line(record))
        if arm == "control" or n % 5 == 0:  # the control's users click far more
            at = when + timedelta(milliseconds=500)
            click = EventRecord(user_id=user, item_id="a", type="click", timestamp=at, received=at)
            events.append(click, at)
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "predictions-1.jsonl").write_text("\n".join(lines) + "\n")
    logs = {"predictions": tmp_path / "predictions", "events": tmp_path / "events"}
    needed = experiment_demo.users_needed(spec, **logs)
    assert needed is not None and 40 <= needed < 400 and needed % 10 == 0
    slower = experiment_demo.users_needed(spec.model_copy(update={"min_users": 150}), **logs)
    assert slower is not None and slower >= 300 > needed
