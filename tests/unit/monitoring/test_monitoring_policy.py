"""The retraining policy and the trigger: each signal on its own, the minimum sample, the
policy file's errors, and one run per cooldown even when processes race."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime, timedelta

import pytest

from recsys.config import RecsysError
from recsys.monitoring.policy import MonitorPolicy, decide, load_policy
from recsys.monitoring.trigger import DECISIONS, last_retrain, trigger

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def summary(requests=500, users=80, features=None, score=0.02, current=0.20, reference=0.22):
    return {
        "samples": {"requests": requests, "users_with_feedback": users},
        "drift": {
            "features": features or {"user_age_bucket": 0.03, "user_gender": 0.01},
            "score": score,
        },
        "quality": {"current": {"hit_rate": current}, "reference": {"hit_rate": reference}},
        "missing": [],
    }


def test_no_drift_and_no_quality_loss_is_no_action():
    decision = decide(summary(), MonitorPolicy(), at=NOW, version="v1")
    assert decision.action == "no_action" and decision.model_version == "v1"
    assert decision.signals["drift_share"] == 0.0 and decision.signals["score_drift"] == 0.02


def test_too_few_requests_or_feedback_users_gives_no_decision():
    few = decide(summary(requests=50, users=3), MonitorPolicy(), at=NOW, version="v1")
    assert few.action == "insufficient_data"
    assert few.reasons == ["50 requests < minimum 200", "3 users with feedback < minimum 30"]
    # even a glaring drift is not acted on with too few samples
    drifted = summary(requests=10, features={"a": 0.9, "b": 0.9}, score=0.9)
    assert decide(drifted, MonitorPolicy(), at=NOW, version="v1").action == "insufficient_data"


def test_each_signal_alone_asks_for_retraining():
    features = {"user_age_bucket": 0.4, "user_gender": 0.2, "item_popularity": 0.01}
    drift = decide(summary(features=features), MonitorPolicy(), at=NOW, version="v1")
    assert drift.action == "retrain"
    assert drift.reasons[0] == ("2 of 3 features drifted (67% ≥ 50%): user_age_bucket, user_gender")
    score = decide(summary(score=0.25), MonitorPolicy(), at=NOW, version="v1")
    assert score.action == "retrain" and score.reasons == ["score drift 0.250 ≥ 0.1"]
    quality = decide(summary(current=0.10, reference=0.20), MonitorPolicy(), at=NOW, version="v")
    assert quality.action == "retrain" and "50% below the reference 0.2000" in quality.reasons[0]


def test_policy_file_errors_name_the_key(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("drift_share: 0.3\ncooldown_minute: 5\n")
    with pytest.raises(RecsysError, match="cooldown_minute: Extra inputs are not permitted"):
        load_policy(path)
    path.write_text("min_requests: -1\n")
    with pytest.raises(RecsysError, match="min_requests: Input should be greater than or equal"):
        load_policy(path)
    path.write_text("drift_share: 0.3\ncooldown_minutes: 5\n")
    policy = load_policy(path)
    assert policy.drift_share == 0.3 and policy.cooldown == timedelta(minutes=5)
    assert policy.min_requests == MonitorPolicy().min_requests


def retrain_at(at: datetime):
    return decide(summary(score=0.5), MonitorPolicy(), at=at, version="v1")


def test_two_triggers_inside_the_cooldown_start_one_run(tmp_path):
    runs = []
    policy = MonitorPolicy(cooldown_minutes=60)
    first = trigger(retrain_at(NOW), policy, tmp_path, lambda d: runs.append(d) or {"run": 1})
    second = trigger(retrain_at(NOW + timedelta(minutes=10)), policy, tmp_path, runs.append)
    assert first["started"] and first["run"] == {"run": 1}
    assert not second["started"] and "inside the cooldown" in second["reason"]
    assert len(runs) == 1
    later = trigger(retrain_at(NOW + timedelta(minutes=61)), policy, tmp_path, runs.append)
    assert later["started"] and len(runs) == 2
    assert last_retrain(tmp_path)["at"] == (NOW + timedelta(minutes=61)).isoformat()
    no_action = decide(summary(), policy, at=NOW, version="v1")
    assert not trigger(no_action, policy, tmp_path, runs.append)["started"]
    assert len((tmp_path / DECISIONS).read_text().splitlines()) == 4


def _race(state_dir: str, barrier, results) -> None:
    barrier.wait()
    outcome = trigger(retrain_at(NOW), MonitorPolicy(), state_dir, lambda d: {"pid": 1})
    results.put(outcome["started"])


def test_racing_processes_start_exactly_one_run(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    started = [results.get(timeout=5) for _ in procs]
    assert sorted(started) == [False, False, False, True]
    assert len((tmp_path / DECISIONS).read_text().splitlines()) == 4


def test_the_monitoring_pipelines_task_submits_once_per_cooldown(tmp_path, monkeypatch):
    """The decision and the cooldown are the trigger's; the run on the KFP server is
    ``pipelines.client``'s (here a fake submission)."""
    from pipelines import client

    submitted = []

    def fake_submit(host, package, arguments, *, run_name, experiment="recsys"):
        submitted.append((host, package, arguments, run_name))
        return {"run_id": f"r{len(submitted)}"}

    monkeypatch.setattr(client, "submit_pipeline", fake_submit)
    decision = tmp_path / "decision.json"
    decision.write_text(retrain_at(NOW).model_dump_json())
    args = (decision, tmp_path / "state", "training.yaml", {"k": 10})
    assert client.start_retraining(*args, kfp_host="http://kfp") == "started"
    assert submitted == [("http://kfp", "training.yaml", {"k": 10}, "retrain-20261128T120000Z")]
    assert "inside the cooldown" in client.start_retraining(*args)
    assert len(submitted) == 1
