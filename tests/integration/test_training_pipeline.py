"""The Kubeflow training pipeline through kfp.local (SubprocessRunner, this Python): a first
run beats the champion, registers, promotes and switches a live Serve app over HTTP; a second
run on unchanged data keeps the champion and touches nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import torch

from recsys import deploy
from recsys.data.io import write_parquet
from recsys.features.api import refresh
from recsys.models import PipelineConfig, PipelineModel
from recsys.monitoring.reference import read_reference
from recsys.registry import Registry
from tests.conftest import copy_feature_repo, free_port, make_interactions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from tiny_data import TINY_PIPELINE, side_tables  # noqa: E402


@pytest.fixture(scope="module")
def setup(ray_session, tmp_path_factory):
    """A tiny dataset, a Feast repo, a registry whose champion (v0) a live Serve app serves."""
    from ray import serve

    root = tmp_path_factory.mktemp("kfp")
    interactions = make_interactions(n_users=60, n_items=40, per_user=10)
    users, items = side_tables(60, 40)
    data = root / "data"
    for name, table in (("interactions", interactions), ("users", users), ("items", items)):
        write_parquet(table, data / f"{name}.parquet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = PipelineModel(PipelineConfig(**TINY_PIPELINE, seed=3)).fit(interactions, users, items)
    torch.set_num_threads(threads)
    repo = copy_feature_repo(root / "repo")  # the store serving reads; the pipeline refreshes it
    refresh(repo, interactions, users, items)
    registry = Registry(root / "registry")
    v0 = registry.register(model.save(root / "v0", version="v0")).version
    registry.promote(v0, reason="seed champion")
    port = free_port()
    args = {
        "model_root": str(registry.versions_dir()),
        "feature_repo": str(repo),
        "prediction_log_dir": str(root / "predictions"),
        "events_dir": str(root / "events"),
    }
    config = deploy.serve_config(model_version=v0, args=args, host="127.0.0.1", port=port)
    deploy.apply(config)
    url = f"http://127.0.0.1:{port}"
    assert deploy.wait_ready(url)["model_version"] == "v0"
    arguments = {
        "source": str(data),
        "feature_repo": str(repo),
        "params": TINY_PIPELINE,
        "registry_uri": str(registry.uri),
        # training starts its own local Ray in the task (as a RayJob would have its own
        # cluster); deploy joins the cluster that runs the Serve app
        "serve_address": ray_session.get_runtime_context().gcs_address,
        "checkpoint_uri": str(root / "checkpoints"),
    }
    yield {"root": root, "registry": registry, "url": url, "arguments": arguments}
    serve.shutdown()


def run(setup, name: str, **overrides) -> dict:
    from pipelines.run import run_local

    root = setup["root"] / name
    result = run_local({**setup["arguments"], **overrides}, root, log_file=root / "tasks.log")
    return {**result, "root": root}


def test_first_run_promotes_registers_and_switches_the_live_app(setup):
    # margin -1: any candidate that beats the popularity baseline replaces the seed champion
    result = run(setup, "first", margin=-1.0, coverage_tolerance=1.0)
    registry: Registry = setup["registry"]
    decision = result["decision"]
    assert decision["promote"] and decision["champion"] == "v0"
    assert set(decision["checks"]) == {"beats_champion", "keeps_coverage", "beats_baseline"}
    assert "PROMOTE" in result["summary"]
    evaluation = result["evaluation"]
    assert evaluation["champion"]["version"] == "v0"
    assert set(evaluation["references"]) == {"popularity", "ease"}
    assert evaluation["candidate"]["metrics"]["ndcg"] > evaluation["baseline"]["metrics"]["ndcg"]
    new = evaluation["candidate"]["version"]
    champion = registry.champion()
    assert champion.version == new and champion.previous == ["v0"]
    assert champion.reason.startswith("gate: ")
    manifest = registry.manifest(new)
    assert manifest["kind"] == "pipeline" and manifest["feature_service"] == "ranker_v1"
    assert [e.action for e in registry.history()][-2:] == ["register", "promote"]
    # the monitoring reference travels with the version: the candidate's offline top-k
    reference = read_reference(registry.local_path(new))
    assert reference is not None and {"score", "target", "user_age_bucket"} <= set(reference)
    # deploy switched the running app in place: it now answers with the new version
    assert deploy.wait_ready(setup["url"])["model_version"] == new
    body = httpx.post(f"{setup['url']}/recommend", json={"user_id": "u1", "k": 3}).json()
    assert body["model_version"] == new and len(body["items"]) == 3
    # the Evidently report, and the tasks' output kept in the log, not on the terminal
    html = Path(result["report"]).read_text()
    assert "NDCG" in html and "Personalization" in html
    log = (result["root"] / "tasks.log").read_text()
    assert "materialized into sqlite" in log and "get_historical_features(ranker_v1)" in log
    # the Ray Train runs are named after the pipeline run, under the checkpoint URI
    runs = [p.name for p in (setup["root"] / "checkpoints").iterdir()]
    assert any(n.startswith("recsys-training-") and n.endswith("-ranker") for n in runs)


def test_second_run_on_unchanged_data_keeps_the_champion(setup):
    registry: Registry = setup["registry"]
    before = registry.champion()
    events = len(registry.history())
    result = run(setup, "second")
    decision = result["decision"]
    assert not decision["promote"] and decision["champion"] == before.version
    assert not decision["checks"]["beats_champion"]["passed"]
    assert "KEEP champion" in result["summary"]
    # register and deploy never ran: no new version, pointer and history untouched
    assert registry.champion() == before and len(registry.history()) == events
    assert {v.version for v in registry.versions()} == {"v0", before.version}
    assert not list(result["root"].rglob("register"))
    assert deploy.wait_ready(setup["url"])["model_version"] == before.version
    gate = json.loads(Path(result["root"].glob("*/gate/decision").__next__()).read_text())
    assert gate["checks"]["beats_champion"]["threshold"] == pytest.approx(
        result["evaluation"]["champion"]["metrics"]["ndcg"] + 0.005
    )
