"""The application layer's wiring, in process, with a fake for what lives above it (the
training pipeline's run): the pipeline's arguments and the lines every command prints about
its result, and what a retrain decision starts (a snapshot, then a local run or a submission).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines import client
from recsys.cli.main import cli
from recsys.config import RecsysError
from recsys.files import write_parquet
from recsys.monitoring.check import MonitorArgs
from recsys.monitoring.policy import MonitorPolicy, decide
from recsys.workflows.retraining import monitor_retraining, retrain_on_decision
from recsys.workflows.training_pipeline import (
    PipelineRun,
    prune_runs,
    result_lines,
    retrain,
    run_training,
)
from tests.helpers import make_interactions, side_tables

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
METRICS = {"ndcg": 0.5, "hit_rate": 0.9}


class FakePipeline:
    """What ``pipelines.client.run_local`` returns, without running anything."""

    def __init__(self, tmp_path) -> None:
        self.calls: list[tuple[dict, object, object]] = []
        self.report = tmp_path / "task-report.html"
        self.report.write_text("<html></html>")

    def __call__(self, arguments, pipeline_root, *, log_file=None) -> dict:
        self.calls.append((arguments, pipeline_root, log_file))
        pipeline_root.mkdir(parents=True, exist_ok=True)  # kfp.local makes the root
        evaluation = {
            "k": 10,
            "candidate": {"version": "v2", "metrics": METRICS},
            "champion": None,
            "references": {"ease": {"model": "ease", "metrics": {"ndcg": 0.4}}},
        }
        return {
            "summary": "gate: PROMOTE v2 (no champion yet)",
            "evaluation": evaluation,
            "decision": {"promote": True},
            "report": str(self.report),
        }


def test_a_run_turns_options_into_the_pipelines_arguments_and_prints_its_result(tmp_path):
    fake, lines = FakePipeline(tmp_path), []
    run = PipelineRun(
        no_features=True,
        params='{"epochs": 2}',
        registry_uri=str(tmp_path / "reg"),
        workdir=tmp_path / "root",
    )
    result = run_training(run, fake, log=lines.append)
    ((arguments, root, log_file),) = fake.calls
    assert root == (tmp_path / "root").resolve() and log_file == root / "pipeline.log"
    assert arguments["params"] == {"epochs": 2} and arguments["feature_repo"] == ""
    assert arguments["source"] == "movielens-100k"
    assert arguments["checkpoint_uri"] == str(root / "checkpoints")
    assert lines == [f"kfp.local: pipeline root {root}"]
    assert (root / "report.html").read_text() == "<html></html>"
    printed = result_lines(result)
    assert printed[0] == "evaluation at k=10 (same held-out users, exclude-seen):"
    table = printed[1].splitlines()
    assert table[0].startswith("| Model | nDCG@k |") and len(table) == 4
    assert table[2].startswith("| candidate (v2) | 0.5000 |")
    assert table[3].startswith("| ease (ease) | 0.4000 |")
    assert printed[2:] == [
        "gate: PROMOTE v2 (no champion yet)",
        "champion: none",
        f"Evidently report: {root / 'report.html'}",
        f"tasks' output: {root / 'pipeline.log'}",
    ]


def test_bad_options_fail_before_the_pipeline_runs(tmp_path):
    fake = FakePipeline(tmp_path)
    with pytest.raises(RecsysError, match="--params: expected a JSON object, got list"):
        run_training(PipelineRun(no_features=True, params="[1]", workdir=tmp_path), fake)
    with pytest.raises(RecsysError, match="no feature_store.yaml there"):
        run_training(PipelineRun(feature_repo=tmp_path, workdir=tmp_path), fake)
    with pytest.raises(RecsysError, match="--rollout canary: expected one of switch, experiment"):
        run_training(PipelineRun(no_features=True, rollout="canary", workdir=tmp_path), fake)
    with pytest.raises(RecsysError, match=r"--experiment-share 1.0: expected in \(0, 1\)"):
        run_training(PipelineRun(no_features=True, experiment_share=1.0, workdir=tmp_path), fake)
    assert fake.calls == []


def test_a_retraining_passes_its_rollout_to_the_pipeline(tmp_path):
    fake = FakePipeline(tmp_path)
    retrain(
        tmp_path / "snapshot",
        fake,
        feature_repo=None,
        no_features=True,
        registry_uri=str(tmp_path / "registry"),
        serve_address="127.0.0.1:6379",
        workdir=tmp_path / "runs",
        log=lambda _: None,
        rollout="experiment",
        experiment_share=0.5,
    )
    arguments = fake.calls[0][0]
    assert arguments["rollout"] == "experiment" and arguments["experiment_share"] == 0.5
    assert arguments["serve_address"] == arguments["ray_address"] == "127.0.0.1:6379"


def test_only_the_newest_pipeline_roots_and_their_checkpoints_are_kept(tmp_path):
    stamps = ["2026-12-06-11-15-13-980628", "2026-12-07-06-25-38-393825", "2026-12-06-18-50-54-1"]
    for stamp in stamps:
        (tmp_path / f"recsys-training-{stamp}" / "train").mkdir(parents=True)
        (tmp_path / "checkpoints" / f"recsys-training-{stamp}-ranker").mkdir(parents=True)
    (tmp_path / "pipeline.log").write_text("kept")
    gone = prune_runs(tmp_path, keep=2)
    assert [p.name for p in gone] == ["recsys-training-2026-12-06-11-15-13-980628"]
    kept = sorted(p.name for p in tmp_path.glob("recsys-training-*"))
    assert kept == [f"recsys-training-{s}" for s in sorted(stamps[1:])]
    assert len(list((tmp_path / "checkpoints").iterdir())) == 2
    assert (tmp_path / "pipeline.log").exists() and prune_runs(tmp_path, keep=2) == []


def test_pipeline_run_prints_the_workflows_lines(tmp_path, monkeypatch):
    fake = FakePipeline(tmp_path)
    monkeypatch.setattr(client, "run_local", fake)
    args = ["pipeline", "run", "training", "--no-features", "--workdir", str(tmp_path / "root")]
    result = CliRunner().invoke(cli, [*args, "--registry", str(tmp_path / "reg")])
    assert result.exit_code == 0, result.output
    root = (tmp_path / "root").resolve()
    lines = result.output.splitlines()
    assert lines[:2] == [
        f"kfp.local: pipeline root {root}",
        "evaluation at k=10 (same held-out users, exclude-seen):",
    ]
    assert lines[-4:] == [
        "gate: PROMOTE v2 (no champion yet)",
        "champion: none",
        f"Evidently report: {root / 'report.html'}",
        f"tasks' output: {root / 'pipeline.log'}",
    ]


@pytest.fixture
def base(tmp_path):
    """A dataset directory as the snapshot's base, and an events directory with no feedback."""
    data = tmp_path / "base"
    write_parquet(
        make_interactions(n_users=10, n_items=10, per_user=4), data / "interactions.parquet"
    )
    write_parquet(side_tables(10, 10)[0], data / "users.parquet")
    (tmp_path / "events").mkdir()
    return data


def retrain_decision():
    summary = {
        "samples": {"requests": 500, "users_with_feedback": 80},
        "drift": {"features": {"a": 0.5, "b": 0.5}, "score": 0.5},
        "quality": {},
        "missing": [],
    }
    return decide(summary, MonitorPolicy(), at=NOW, version="v1")


def test_a_retrain_decision_snapshots_then_starts_the_run(base, tmp_path):
    started, lines = [], []
    done = retrain_on_decision(
        str(base),
        tmp_path / "events",
        tmp_path / "snap",
        lambda snapshot: started.append(snapshot) or {"run": 1},
        log=lines.append,
    )
    assert done == {"run": 1} and started == [tmp_path / "snap"]
    assert (tmp_path / "snap" / "interactions.parquet").exists()
    rows = len(pd.read_parquet(base / "interactions.parquet"))
    assert lines == [f"retraining on {rows} rows (0 from feedback)"]


def test_the_monitor_submits_to_a_server_or_runs_the_pipeline_here(base, tmp_path):
    decision = retrain_decision()
    assert decision.action == "retrain"
    args = MonitorArgs(predictions=tmp_path / "p", events=tmp_path / "events", out=tmp_path / "m")
    submitted, lines = [], []
    start = monitor_retraining(
        args,
        str(base),
        feature_repo=None,
        serve_address="",
        run_pipeline=FakePipeline(tmp_path),
        submit=lambda arguments: submitted.append(arguments) or {"run_id": "r1"},
        log=lines.append,
    )
    assert start(decision) == {"run_id": "r1"}
    snapshot = tmp_path / "m" / "snapshots" / "20261128T120000Z"
    assert submitted == [{"source": str(snapshot), "registry_uri": ""}]
    here = FakePipeline(tmp_path)
    args = args.model_copy(update={"registry": str(tmp_path / "reg")})
    start = monitor_retraining(
        args,
        str(base),
        feature_repo=None,
        serve_address="127.0.0.1:6379",
        run_pipeline=here,
        log=lines.append,
    )
    repo = tmp_path / "repo"
    (repo / "feature_store.yaml").parent.mkdir()
    (repo / "feature_store.yaml").write_text("project: x\n")
    with pytest.MonkeyPatch.context() as mp:  # no --feature-repo: the default repository
        mp.setenv("RECSYS_FEATURE_REPO", str(repo))
        assert start(decision) == {
            "summary": "gate: PROMOTE v2 (no champion yet)",
            "promote": True,
        }
    ((arguments, root, _),) = here.calls
    assert root == tmp_path / "m" / "retraining" / "20261128T120000Z"
    assert arguments["source"] == str(snapshot) and arguments["serve_address"] == "127.0.0.1:6379"
    assert arguments["feature_repo"] == str(repo.resolve())
    assert arguments["registry_uri"] == str(tmp_path / "reg")
    assert lines[-1] == f"tasks' output: {root / 'pipeline.log'}"
