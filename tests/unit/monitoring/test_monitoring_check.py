"""The monitoring check end to end in process (no Ray): a registered champion with its
reference, prediction and feedback logs written by the real writers, Evidently reports, the
policy's decision and the trigger.

Live traffic is simulated by replaying the reference itself (no drift) or a shifted copy
(drift): the monitor must tell them apart, and never act on too few samples."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from recsys.data.ingest import ingest
from recsys.data.new_items import ItemLog, NewItem
from recsys.data.records import EventRecord, PredictionRecord
from recsys.evaluation.protocol import evaluate_candidate
from recsys.evaluation.reference import read_reference
from recsys.features.events import EventLog
from recsys.features.store import write_training_set
from recsys.files import write_parquet
from recsys.monitoring.check import MonitorArgs, check, check_and_record, check_and_trigger
from recsys.registry import Registry, champion_model, register_champion
from recsys.training.train import train_from_set
from serving.predlog import PredictionLog
from tests.helpers import make_interactions, side_tables

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
POLICY = "min_requests: 60\nmin_feedback_users: 10\nk: 5\ncooldown_minutes: 60\n"


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """EASE trained, evaluated (reference built), registered and promoted by the steps."""
    root = tmp_path_factory.mktemp("monitor")
    interactions = make_interactions(n_users=40, n_items=40, per_user=10)
    users, items = side_tables(40, 40)
    for name, table in (("interactions", interactions), ("users", users), ("items", items)):
        write_parquet(table, root / "data" / f"{name}.parquet")
    ingest(str(root / "data"), root / "split")
    write_training_set(root / "split", root / "rows")
    train_from_set(root / "rows", root / "model", kind="ease")
    evaluate_candidate(
        root / "split",
        root / "model",
        root / "eval.json",
        champion=champion_model(str(root / "reg")),
        k=5,
        reference_out=root / "reference.parquet",
    )
    attachments = {"reference.parquet": root / "reference.parquet"}
    version = register_champion(root / "model", str(root / "reg"), attachments=attachments)
    registry = Registry(root / "reg")
    return {
        "registry": registry,
        "version": version,
        "reference": read_reference(registry.local_path(version)),
    }


def replay(champion, directory, *, repeats=3, shift=False, users=None):
    """Requests as the Serve app logs them, one per reference user and repeat; a click on
    every relevant item shortly after."""
    reference = champion["reference"]
    plog, events = PredictionLog(directory / "predictions"), EventLog(directory / "events")
    n = 0
    for r in range(repeats):
        for user, rows in reference.groupby("user_id"):
            if users is not None and n >= users:
                break
            first = rows.iloc[0]
            ts = START + timedelta(minutes=n)
            features = {
                "age_bucket": 6 if shift else int(first["user_age_bucket"]),
                "gender": "M" if shift else first["user_gender"],
                "occupation": "drifted" if shift else first["user_occupation"],
                "user_interactions": int(first["user_interactions"]) * (20 if shift else 1),
                "user_mean_rating": float(first["user_mean_rating"]),
                "last_items": ["x"] * int(first["user_history_len"]),
            }
            scores = rows["score"] * (-3.0 if shift else 1.0)
            plog.log(
                PredictionRecord(
                    request_id=f"{user}-{r}",
                    ts=ts,
                    request={"user_id": user, "k": 5},
                    model_version=champion["version"],
                    user_features=features,
                    items=list(rows["item_id"]),
                    scores=[float(s) for s in scores],
                    cold_start=False,
                )
            )
            for item in rows.loc[rows["target"] > 0, "item_id"]:
                when = ts + timedelta(minutes=5)
                click = {"user_id": user, "item_id": item, "type": "click"}
                events.append(EventRecord(**click, timestamp=when, received=when), when)
            n += 1
    plog.close()
    return directory


def args(champion, directory) -> MonitorArgs:
    (directory / "policy.yaml").write_text(POLICY)
    return MonitorArgs(
        predictions=directory / "predictions",
        events=directory / "events",
        out=directory / "monitoring",
        registry=str(champion["registry"].uri),
        policy=directory / "policy.yaml",
    )


NOW = START + timedelta(days=1)


def test_traffic_like_the_reference_needs_no_action(champion, tmp_path):
    decision, summary = check(args(champion, replay(champion, tmp_path)), now=NOW)
    assert decision.action == "no_action", decision.reasons
    assert decision.model_version == champion["version"]
    assert max(summary["drift"]["features"].values()) < 0.1 and summary["drift"]["score"] < 0.1
    quality = summary["quality"]
    assert quality["current"]["hit_rate"] == pytest.approx(quality["reference"]["hit_rate"], 0.2)
    run = tmp_path / "monitoring" / "runs" / NOW.strftime("%Y%m%dT%H%M%SZ")
    assert {"drift.html", "quality.html", "summary.json", "decision.json"} <= {
        p.name for p in run.iterdir()
    }
    assert (tmp_path / "monitoring" / "workspace").is_dir()
    # novelty and popularity bias from the version's training counts, beside the rank metrics
    html = (run / "quality.html").read_text()
    assert all(name in html for name in ("NDCG", "Novelty", "Popularity", "Personalization"))


def test_drifted_traffic_starts_exactly_one_retraining(champion, tmp_path):
    monitor = args(champion, replay(champion, tmp_path, shift=True))
    runs = []
    decision, summary, outcome = check_and_trigger(monitor, runs.append, now=NOW)
    assert decision.action == "retrain" and outcome["started"]
    assert any("features drifted" in r for r in decision.reasons)
    assert any(r.startswith("score drift") for r in decision.reasons)
    assert "user_occupation" in decision.reasons[0] and "user_age_bucket" in decision.reasons[0]
    # a second check ten minutes later sees the same drift, inside the cooldown: no new run
    again, _, outcome = check_and_trigger(monitor, runs.append, now=NOW + timedelta(minutes=10))
    assert again.action == "retrain" and not outcome["started"]
    assert len(runs) == 1
    decisions = (tmp_path / "monitoring" / "decisions.jsonl").read_text().splitlines()
    assert len(decisions) == 2


def test_the_pipeline_check_records_what_starts_nothing_and_leaves_retrain_to_the_trigger(
    champion, tmp_path
):
    """The monitoring pipeline's check task: a no-action decision is recorded at once; a
    retrain decision is not, as the trigger task records it with its outcome (once)."""
    decisions = tmp_path / "quiet" / "monitoring" / "decisions.jsonl"
    calm, _ = check_and_record(args(champion, replay(champion, tmp_path / "quiet")), now=NOW)
    assert calm.action == "no_action" and len(decisions.read_text().splitlines()) == 1
    drifted = args(champion, replay(champion, tmp_path / "drift", shift=True))
    decision, _ = check_and_record(drifted, now=NOW)
    assert decision.action == "retrain"
    assert not (tmp_path / "drift" / "monitoring" / "decisions.jsonl").exists()


def test_too_few_samples_give_no_decision(champion, tmp_path):
    monitor = args(champion, replay(champion, tmp_path, repeats=1, users=8))
    runs = []
    decision, _, outcome = check_and_trigger(monitor, runs.append, now=NOW)
    assert decision.action == "insufficient_data" and not outcome["started"] and not runs
    assert "8 requests < minimum 60" in decision.reasons[0]


def test_corrupt_and_half_written_logs_are_skipped_and_the_rest_is_read(champion, tmp_path):
    replay(champion, tmp_path)
    logs = tmp_path / "predictions"
    (logs / "predictions-garbage.jsonl").write_bytes(b"\x1f\x8b\x08\x00garbage\xff\xfe")
    good = sorted(logs.glob("predictions-*.jsonl"))[0]
    with good.open("a") as f:
        f.write('{"request_id": "torn", "ts": "2026-11-28T09:')  # a crash mid-write
    decision, summary = check(args(champion, tmp_path), now=NOW)
    assert decision.action == "no_action"
    assert summary["samples"]["requests"] == champion["reference"]["user_id"].nunique() * 3
    warned = " ".join(summary["warnings"])
    assert "predictions-garbage.jsonl" in warned and "half-written last line" in warned


def test_a_version_registered_without_a_reference_is_not_judged(champion, tmp_path):
    registry: Registry = champion["registry"]
    model_dir = registry.local_path(champion["version"])
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "reference.parquet").unlink()
    manifest = json.loads((bare / "manifest.json").read_text())
    (bare / "manifest.json").write_text(json.dumps({**manifest, "version": "bare-1"}))
    other = Registry(tmp_path / "reg2")
    other.promote(other.register(bare).version)
    replay({**champion, "version": "bare-1"}, tmp_path)
    monitor = args(champion, tmp_path).model_copy(update={"registry": str(other.uri)})
    decision, summary = check(monitor, now=NOW)
    assert decision.action == "no_action" and summary["samples"]["requests"] > 60
    assert any("reference stored with bare-1" in r for r in decision.reasons)


def test_cli_prints_the_decision_reasons_and_reports(champion, tmp_path):
    from click.testing import CliRunner

    from recsys.cli.main import cli

    replay(champion, tmp_path, shift=True)
    monitor = args(champion, tmp_path)
    command = [
        "monitor",
        "check",
        "--predictions",
        str(monitor.predictions),
        "--events",
        str(monitor.events),
        "--out",
        str(monitor.out),
        "--registry",
        monitor.registry,
        "--policy",
        str(monitor.policy),
    ]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    assert f"monitor: retrain (model {champion['version']})" in result.output
    assert "features drifted" in result.output and "drift report: " in result.output
    assert "retraining: started" not in result.output  # without --retrain: recorded only
    (tmp_path / "policy.yaml").write_text("drift_shar: 0.2\n")
    bad = CliRunner().invoke(cli, command)
    assert bad.exit_code == 1 and "drift_shar: Extra inputs are not permitted" in bad.output


def test_retraining_snapshot_is_the_base_data_plus_the_accepted_feedback(champion, tmp_path):
    from recsys.monitoring.snapshot import build_snapshot

    replay(champion, tmp_path)  # clicks on held-out pairs the base already holds: left out
    log = EventLog(tmp_path / "events")
    for n in range(32):  # new pairs: four new users rate eight items
        when = START + timedelta(minutes=n)
        rated = {"user_id": f"n{n % 4}", "item_id": f"i{n // 4}", "type": "rating", "rating": 5.0}
        log.append(EventRecord(**rated, timestamp=when, received=when), START)
    base = tmp_path / "base"
    interactions = make_interactions(n_users=40, n_items=40, per_user=10)
    write_parquet(interactions, base / "interactions.parquet")
    users, items = side_tables(40, 40)
    write_parquet(users, base / "users.parquet")
    write_parquet(items, base / "items.parquet")
    # items added at run time (the app's items_dir, beside its events_dir): the next
    # training's catalog holds them, once each
    ItemLog(tmp_path / "items").append([NewItem(item_id="x1", title="New", genres="G1")])
    ItemLog(tmp_path / "items").append([NewItem(item_id="i3", title="Known already")])
    made = build_snapshot(str(base), tmp_path / "events", tmp_path / "snap")
    assert made["base_rows"] == 400 and made["event_rows"] == 32 and made["rows"] == 432
    assert made["new_items"] == 2
    catalog = pd.read_parquet(tmp_path / "snap" / "items.parquet")
    assert catalog.item_id.tolist() == [*items.item_id, "x1"] and catalog.genres.iloc[-1] == "G1"
    merged = pd.read_parquet(tmp_path / "snap" / "interactions.parquet")
    assert len(merged) == 432 and merged["user_id"].str.startswith("n").sum() == 32
    assert (tmp_path / "snap" / "users.parquet").exists()
    assert ingest(str(tmp_path / "snap"), tmp_path / "split")["rows"] == len(merged)
    # every base row stays on the side it had when the champion trained on the base alone
    ingest(str(base), tmp_path / "base-split")

    def rows(path):
        frame = pd.read_parquet(path)
        return set(zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True))

    for side in ("train", "test"):
        before = rows(tmp_path / "base-split" / f"{side}.parquet")
        after = rows(tmp_path / "split" / f"{side}.parquet")
        assert before <= after
    new_test = rows(tmp_path / "split" / "test.parquet") - rows(
        tmp_path / "base-split" / "test.parquet"
    )
    assert len(new_test) == 8 and all(user.startswith("n") for user, _, _ in new_test)


def test_evidently_is_imported_without_its_dependencies_deprecation_warnings():
    """The closed loop's screen: Evidently's first import warns of numpy.core and litestar
    deprecations wherever warnings are shown (``-W default``); the monitor imports it quietly."""
    import subprocess
    import sys

    code = (
        "from recsys.evaluation.evidently_report import quiet_imports\n"
        "with quiet_imports():\n"
        "    from evidently.presets import DataDriftPreset\n"
        "    from evidently.ui.workspace import Workspace\n"
    )
    quiet = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True)
    assert quiet.returncode == 0 and b"Warning" not in quiet.stderr, quiet.stderr[-500:]
    loud = code.replace("with quiet_imports():", "if True:")
    plain = subprocess.run([sys.executable, "-W", "default", "-c", loud], capture_output=True)
    assert b"DeprecationWarning" in plain.stderr  # what the test guards against is still there
