"""The Kubeflow training pipeline through kfp.local (SubprocessRunner, this Python), inside
the closed loop: drifted traffic makes the monitor retrain; the run beats the champion,
registers, promotes and switches the live Serve app over HTTP under load; a second run on
unchanged data keeps the champion and touches nothing."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
import torch

from recsys import serve_ops
from recsys.config import free_port
from recsys.data.ingest import ingest
from recsys.data.io import interactions_checksum
from recsys.evaluation.protocol import evaluate_candidate
from recsys.evaluation.reference import read_reference
from recsys.features.store import FeatureStore
from recsys.files import write_parquet
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.registry import Registry, champion_model, register_champion
from tests.helpers import TINY_MULTISTAGE, copy_feature_repo, make_interactions, side_tables

POLICY = "min_requests: 30\nmin_feedback_users: 10\n"


@pytest.fixture(scope="module")
def setup(ray_session, tmp_path_factory):
    """A tiny dataset and its split, a Feast repo, a registry whose champion (v0, with its
    monitoring reference) a live Serve app serves."""
    from ray import serve

    root = tmp_path_factory.mktemp("kfp")
    interactions = make_interactions(n_users=60, n_items=40, per_user=10)
    users, items = side_tables(60, 40)
    data = root / "data"
    for name, table in (("interactions", interactions), ("users", users), ("items", items)):
        write_parquet(table, data / f"{name}.parquet")
    ingest(str(data), root / "split")  # the split the loop's held-out replay uses too
    train = pd.read_parquet(root / "split" / "train.parquet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = MultiStageModel(MultiStageConfig(**TINY_MULTISTAGE, seed=3)).fit(train, users, items)
    torch.set_num_threads(threads)
    model.save(root / "v0", version="v0", data_checksum=interactions_checksum(train))
    evaluate_candidate(
        root / "split",
        root / "v0",
        root / "v0-eval.json",
        champion=champion_model(str(root / "none")),
        reference_out=root / "v0-reference.parquet",
    )
    repo = copy_feature_repo(root / "repo")  # the store serving reads
    FeatureStore(repo).refresh(train, users, items)
    registry = Registry(root / "registry")
    register_champion(
        root / "v0",
        str(registry.uri),
        reason="seed champion",
        attachments={"reference.parquet": root / "v0-reference.parquet"},
    )
    port = free_port()
    args = {
        "model_root": str(registry.versions_dir()),
        "feature_repo": str(repo),
        "prediction_log_dir": str(root / "loop" / "predictions"),
        "events_dir": str(root / "loop" / "events"),
    }
    config = serve_ops.serve_config(model_version="v0", args=args, host="127.0.0.1", port=port)
    serve_ops.apply(config)
    url = f"http://127.0.0.1:{port}"
    assert serve_ops.wait_ready(url)["model_version"] == "v0"
    (root / "policy.yaml").write_text(POLICY)
    arguments = {
        "source": str(data),
        # the pipeline materializes its own store: SQLite takes one writer, and the live app
        # keeps reading its store meanwhile
        "feature_repo": str(copy_feature_repo(root / "train_repo")),
        "params": TINY_MULTISTAGE,
        "registry_uri": str(registry.uri),
        # training and deploy join the cluster that runs the Serve app (a task that starts
        # its own local Ray is the quickstart's, test_cli_movielens.py)
        "ray_address": ray_session.get_runtime_context().gcs_address,
        "serve_address": ray_session.get_runtime_context().gcs_address,
        "checkpoint_uri": str(root / "checkpoints"),
    }
    yield {
        "root": root,
        "registry": registry,
        "url": url,
        "arguments": arguments,
        "repo": repo,
        "data": data,
    }
    serve.shutdown()


def run(setup, name: str, **overrides) -> dict:
    from pipelines.client import run_local

    root = setup["root"] / name
    result = run_local({**setup["arguments"], **overrides}, root, log_file=root / "tasks.log")
    return {**result, "root": root}


def test_closed_loop_drift_retrains_promotes_and_hot_reloads_without_a_failed_request(setup):
    """Held-out traffic: no action. A drifted population: retrain -> the training pipeline
    (margins -1: any candidate replaces v0, the subject here is the loop, not the gate; on
    this tiny drifted data the multi-stage model and EASE land within 0.001 of each other, on
    either side from run to run) -> register -> the live app switches while a load thread
    keeps asking."""
    from recsys.workflows.loop import LoopDemo, run_loop

    registry: Registry = setup["registry"]
    results = []

    def retrain(snapshot, serve_address):
        assert serve_address == setup["arguments"]["serve_address"]
        result = run(
            setup,
            "retraining",
            source=str(snapshot),
            margin=-1.0,
            coverage_tolerance=1.0,
            baseline_margin=-1.0,
        )
        results.append(result)
        return result

    demo = LoopDemo(
        workdir=setup["root"],
        registry_uri=str(registry.uri),
        feature_repo=setup["repo"],
        split_dir=setup["root"] / "split",
        dataset=setup["data"],
        url=setup["url"],
        policy=setup["root"] / "policy.yaml",
        heldout_users=60,
        drift_users=60,
        drift_events_per_user=12,
        threads=4,
    )
    seen = run_loop(demo, retrain, log=print)
    assert seen["decisions"] == ["no_action", "retrain"]
    # What was served is what was evaluated: on the replayed held-out users, the live
    # figures (their clicks on what the app answered) are the offline ones (the gate's).
    quality = seen["heldout_quality"]
    live, offline = quality["live"], quality["offline"]
    assert quality["users"] == live["lists"] == offline["lists"] > 50
    assert abs(live["precision"] - offline["precision"]) <= 0.005, quality
    assert abs(live["hit_rate"] - offline["hit_rate"]) <= 0.01, quality
    assert len(results) == 1  # exactly one retraining
    result = results[0]
    decision = result["decision"]
    assert decision["promote"] and decision["champion"] == "v0"
    assert set(decision["checks"]) == {"beats_champion", "keeps_coverage", "beats_baseline"}
    evaluation = result["evaluation"]
    assert evaluation["champion"]["version"] == "v0"
    assert set(evaluation["references"]) == {"popularity", "ease"}
    new = evaluation["candidate"]["version"]
    champion = registry.champion()
    assert champion.version == new and champion.previous == ["v0"]
    assert champion.reason.startswith("gate: ")
    manifest = registry.manifest(new)
    assert manifest["kind"] == "multistage" and manifest["feature_service"] == "ranker_v1"
    assert [e.action for e in registry.history()][-2:] == ["register", "promote"]
    reference = read_reference(registry.local_path(new))
    assert reference is not None and {"score", "target", "user_age_bucket"} <= set(reference)
    # the hot reload under load: the app serves the new version and no request failed
    assert seen["serving"]["model_version"] == new
    assert seen["requests_during_retraining"] > 100 and seen["failed_requests"] == 0
    body = httpx.post(f"{setup['url']}/recommend", json={"user_id": "u1", "k": 3}).json()
    assert body["model_version"] == new and len(body["items"]) == 3
    # the retraining learned from the feedback: the snapshot holds the accepted events
    snapshot = pd.read_parquet(setup["root"] / "loop" / "snapshot" / "interactions.parquet")
    assert snapshot["user_id"].str.startswith("drift-").any()
    # reports: Evidently's drift and quality HTML per check, the pipeline's report, the logs
    runs = sorted((setup["root"] / "loop" / "monitoring" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "drift.html").exists() for r in runs)
    html = Path(result["report"]).read_text()
    assert "NDCG" in html and "Personalization" in html
    log = (result["root"] / "tasks.log").read_text()
    assert "materialized into sqlite" in log and "get_historical_features(ranker_v1)" in log
    ray_runs = [p.name for p in (setup["root"] / "checkpoints").iterdir()]
    assert any(n.startswith("recsys-training-") and n.endswith("-ranker") for n in ray_runs)


def test_second_run_on_unchanged_data_keeps_the_champion(setup):
    registry: Registry = setup["registry"]
    before = registry.champion()
    events = len(registry.history())
    # the data the champion was trained on: the loop's snapshot
    snapshot = str(setup["root"] / "loop" / "snapshot")
    result = run(setup, "second", source=snapshot)
    decision = result["decision"]
    assert not decision["promote"] and decision["champion"] == before.version
    assert not decision["checks"]["beats_champion"]["passed"]
    assert "KEEP champion" in result["summary"]
    # register and deploy never ran: no new version, pointer and history untouched
    assert registry.champion() == before and len(registry.history()) == events
    assert {v.version for v in registry.versions()} == {"v0", before.version}
    assert not list(result["root"].rglob("register"))
    assert serve_ops.wait_ready(setup["url"])["model_version"] == before.version
    gate = json.loads(Path(result["root"].glob("*/gate/decision").__next__()).read_text())
    assert gate["checks"]["beats_champion"]["threshold"] == pytest.approx(
        result["evaluation"]["champion"]["metrics"]["ndcg"] + 0.005
    )
