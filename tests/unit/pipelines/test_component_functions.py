"""The pipeline's steps as plain functions, in process on tiny data (EASE: no Ray): ingest
quarantines, evaluate scores candidate / champion / baselines on the same users and writes the
Evidently report, register promotes, deploy writes the Serve config that serves the version."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from recsys.config import RecsysError
from recsys.data.ingest import ingest
from recsys.data.io import interactions_checksum
from recsys.evaluation.evidently_report import ranking_frame
from recsys.evaluation.protocol import evaluate_candidate
from recsys.evaluation.reference import read_reference
from recsys.features.store import write_training_set
from recsys.files import write_parquet
from recsys.models.kinds import create_model
from recsys.models.manifest import read_manifest
from recsys.registry import Registry, champion_model, register_champion
from recsys.registry.gate import judge
from recsys.training.train import train_from_set
from recsys.workflows.deploy import deploy
from serving.schemas import ModelSelection
from tests.helpers import make_interactions, side_tables


@pytest.fixture
def dataset(tmp_path):
    interactions = make_interactions(n_users=40, n_items=40, per_user=10)
    bad = interactions.iloc[:2].assign(user_id=["", "u1"], timestamp=[pd.NaT, pd.NaT])
    users, items = side_tables(40, 40)
    data = tmp_path / "data"
    write_parquet(pd.concat([interactions, bad], ignore_index=True), data / "interactions.parquet")
    write_parquet(users, data / "users.parquet")
    write_parquet(items, data / "items.parquet")
    return data


def test_ingest_validates_quarantines_and_splits(dataset, tmp_path):
    info = ingest(str(dataset), tmp_path / "split")
    assert info["rows"] == 400 and info["bad_rows"] == 2
    assert info["train_rows"] + info["test_rows"] == 400
    assert len(pd.read_parquet(tmp_path / "split.quarantine.parquet")) == 2
    assert {p.name for p in (tmp_path / "split").iterdir()} >= {
        "train.parquet",
        "test.parquet",
        "users.parquet",
        "items.parquet",
        "split.json",
    }


def test_steps_chain_into_a_gated_promotion_and_a_serve_config(dataset, tmp_path):
    split = tmp_path / "split"
    ingest(str(dataset), split)
    meta = write_training_set(split, tmp_path / "rows")
    rows = pd.read_parquet(split / "train.parquet")
    lineage = [interactions_checksum(rows)]
    expected = {"feature_service": None, "rows": len(rows), "lineage": lineage}
    assert meta == expected | {"protocol": "stratified"}  # what the models learn for
    registry = Registry(tmp_path / "registry")
    # the champion: a popularity model; the candidate: EASE, trained by the train step
    train = pd.read_parquet(split / "train.parquet")
    popular = create_model("popularity").fit(train, None, None).save(tmp_path / "pop")
    registry.promote(registry.register(popular).version)
    trained = train_from_set(tmp_path / "rows", tmp_path / "model", kind="ease")
    assert trained["kind"] == "ease" and trained["version"].startswith("ease-")
    manifest = read_manifest(tmp_path / "model")
    assert manifest.data_lineage == lineage and manifest.state.recent_n == 20

    report = tmp_path / "report.html"
    result = evaluate_candidate(
        split,
        tmp_path / "model",
        tmp_path / "eval.json",
        champion=champion_model(registry.uri),
        k=5,
        report_html=report,
        reference_out=tmp_path / "reference.parquet",
    )
    assert result["champion"]["version"] == registry.champion().version
    assert result["candidate"]["version"] == trained["version"]
    assert set(result["references"]) == {"popularity", "ease"}
    # the champion is a popularity model: re-scored on the same users, it equals the baseline
    assert result["champion"]["metrics"] == result["references"]["popularity"]["metrics"]
    assert result["candidate"]["metrics"] == result["references"]["ease"]["metrics"]
    assert "NDCG" in report.read_text()
    verdict = judge(result)
    assert verdict.promote, verdict.summary()
    population = result["population"]  # who the gate's checks were judged on
    assert population["users"] == result["candidate"]["metrics"]["n_users"] > 0
    assert population["protocol"] == "stratified" and population["source"]
    assert f"judged on {population['users']} held-out users" in verdict.summary()

    reference = pd.read_parquet(tmp_path / "reference.parquet")
    assert reference["rank"].max() == 5 and set(reference["target"]) <= {0, 1}
    assert {"score", "user_age_bucket", "user_interactions", "item_popularity"} <= set(reference)
    assert reference["score"].notna().all() and reference["item_popularity"].notna().all()

    version = register_champion(
        tmp_path / "model",
        registry.uri,
        reason=verdict.summary(),
        attachments={"reference.parquet": tmp_path / "reference.parquet"},
    )
    assert version == trained["version"] and registry.champion().version == version
    stored = read_reference(registry.local_path(version))
    pd.testing.assert_frame_equal(stored, reference)
    assert not (tmp_path / "model" / "reference.parquet").exists()  # the input is untouched
    done = deploy(version, registry.uri, tmp_path / "serve.yaml")
    assert done["live"] is False and "no Ray address" in done["note"]
    config = yaml.safe_load((tmp_path / "serve.yaml").read_text())
    app = config["applications"][0]
    assert app["args"]["model_root"] == str(registry.versions_dir())
    assert {d["user_config"]["model_version"] for d in app["deployments"]} == {version}


def test_deploy_refuses_a_version_the_registry_lacks(tmp_path):
    with pytest.raises(RecsysError, match="nope"):
        deploy("nope", str(tmp_path / "registry"), tmp_path / "serve.yaml")


def test_an_experiment_rollout_registers_beside_the_champion_and_serves_it_as_challenger(
    tmp_path,
):
    """``rollout="experiment"``: the registry's first version is the champion as with a
    switch; a later gated version is only registered, and the Serve config keeps the champion
    with the experiment ``rollout-<version>`` (the version as challenger on the share asked)."""
    from recsys.models.popularity import Popularity

    registry = Registry(tmp_path / "registry")
    train = make_interactions(n_users=20, n_items=10, per_user=3)
    models = [Popularity().fit(train.iloc[: 40 + n]).save(tmp_path / f"m{n}") for n in (0, 1)]
    first = register_champion(models[0], registry.uri, rollout="experiment")
    assert registry.champion().version == first  # nothing to experiment against yet
    done = deploy(first, registry.uri, tmp_path / "first.yaml", rollout="experiment")
    assert "experiment" not in done
    second = register_champion(models[1], registry.uri, rollout="experiment", reason="gate: ok")
    assert registry.champion().version == first and second in {
        v.version for v in registry.versions()
    }
    done = deploy(second, registry.uri, tmp_path / "serve.yaml", rollout="experiment", share=0.2)
    assert done["experiment"] == f"rollout-{second}"[:64] and done["live"] is False
    config = yaml.safe_load((tmp_path / "serve.yaml").read_text())
    for deployment in config["applications"][0]["deployments"]:
        selection = ModelSelection.model_validate(deployment["user_config"])
        assert selection.versions() == [first, second] and selection.experiment.share == 0.2
    with pytest.raises(RecsysError, match="rollout 'canary': expected one of switch, experiment"):
        register_champion(models[1], registry.uri, rollout="canary")


def test_ranking_frame_keeps_the_missed_held_out_items_past_k():
    recs = pd.DataFrame(
        {"user_id": ["a", "a", "a", "b"], "item_id": ["1", "2", "3", "1"], "rank": [1, 2, 3, 1]}
    )
    test = pd.DataFrame({"user_id": ["a", "a", "c"], "item_id": ["2", "9", "1"]})
    frame = ranking_frame(recs, test, k=2)
    assert frame.to_dict("records") == [
        {"user_id": "a", "item_id": "1", "rank": 1, "target": 0},
        {"user_id": "a", "item_id": "2", "rank": 2, "target": 1},
        {"user_id": "a", "item_id": "9", "rank": 3, "target": 1},
    ]


def test_json_numbers_become_ints_where_the_config_wants_ints():
    model = create_model("multistage", {"n_ease": 10.0, "two_tower": {"dim": 16.0, "lr": 1.0}})
    assert model.config.n_ease == 10 and isinstance(model.config.n_ease, int)
    assert isinstance(model.config.two_tower.dim, int) and model.config.two_tower.lr == 1.0
