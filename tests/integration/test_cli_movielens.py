"""CLI round trips on the real MovieLens-100k, through the installed ``recsys`` command."""

import json

import pandas as pd

from tests.conftest import copy_feature_repo, free_port


def test_split_train_recommend_evaluate(run_cli, movielens_dir, tmp_path):
    run_cli("data", "split", movielens_dir, "--protocol", "stratified", "--out", tmp_path / "s")
    split = json.loads((tmp_path / "s" / "split.json").read_text())
    assert (split["n_train"], split["n_test"]) == (75066, 24934)
    assert (tmp_path / "s" / "items.parquet").exists()

    for kind in ("popularity", "ease"):
        run_cli("train", "--data", tmp_path / "s", "--model", kind, "--out", tmp_path / kind)
        run_cli(
            "recommend",
            "--model",
            tmp_path / kind,
            "--data",
            tmp_path / "s",
            "--users",
            "all",
            "--k",
            10,
            "--exclude-seen",
            "--out",
            tmp_path / f"{kind}.parquet",
        )
        run_cli(
            "evaluate",
            "--recs",
            tmp_path / f"{kind}.parquet",
            "--test",
            tmp_path / "s",
            "--train",
            tmp_path / "s",
            "--k",
            10,
        )

    train = pd.read_parquet(tmp_path / "s" / "train.parquet")
    recs = pd.read_parquet(tmp_path / "ease.parquet")
    assert recs.user_id.nunique() == 943 and recs.groupby("user_id").size().eq(10).all()
    seen = train[["user_id", "item_id"]].merge(recs, on=["user_id", "item_id"])
    assert seen.empty
    ease = json.loads((tmp_path / "ease.metrics.json").read_text())
    pop = json.loads((tmp_path / "popularity.metrics.json").read_text())
    # EASE clears the strongest published row (BiVAE, nDCG@10 0.4751); popularity is far below.
    assert ease["ndcg"] > 0.475 and ease["ndcg"] > pop["ndcg"] + 0.15
    assert 0.20 < pop["ndcg"] < 0.30


def test_temporal_and_leave_last_out_splits(run_cli, movielens_dir, tmp_path):
    run_cli("data", "split", movielens_dir, "--protocol", "temporal", "--out", tmp_path / "t")
    train = pd.read_parquet(tmp_path / "t" / "train.parquet")
    test = pd.read_parquet(tmp_path / "t" / "test.parquet")
    assert train.timestamp.max() < test.timestamp.min()
    run_cli("data", "split", movielens_dir, "--protocol", "leave-last-out", "--out", tmp_path / "l")
    assert pd.read_parquet(tmp_path / "l" / "test.parquet").user_id.nunique() == 943


def test_quickstart_runs_the_training_pipeline_and_serves_the_champion(
    run_cli, movielens_dir, tmp_path
):
    """What `make demo` runs: the Kubeflow training pipeline on kfp.local (Feast features,
    the pipeline model on Ray Train from the point-in-time training set, evaluation, gate,
    registry), one table and the gate's decision, then the champion served over HTTP."""
    repo = copy_feature_repo(tmp_path / "feature_repo")
    registry = tmp_path / "registry"
    port = free_port()
    proc = run_cli(
        "quickstart",
        "--workdir",
        tmp_path / "qs",
        "--feature-repo",
        repo,
        "--registry",
        registry,
        "--port",
        port,
    )
    out = proc.stdout
    for task in ("ingest", "materialize-features", "training-set", "train", "evaluate", "gate"):
        assert f"Task '{task}' finished with status SUCCESS" in out
    log = (tmp_path / "qs" / "kfp" / "pipeline.log").read_text()
    assert "materialized into sqlite" in log
    assert "training set: get_historical_features(ranker_v1) -> 75066 rows" in log
    assert (repo / "data" / "online_store.db").exists()
    rows = {
        ln.split("|")[1].strip().split(" ")[0]: ln for ln in out.splitlines() if ln.startswith("| ")
    }
    assert {"candidate", "popularity", "ease", "BiVAE"} <= set(rows)
    evaluation = json.loads((tmp_path / "qs" / "metrics.json").read_text())
    ndcg = evaluation["candidate"]["metrics"]["ndcg"]
    # The pipeline clears the strongest published row and is not below our EASE baseline.
    assert ndcg >= 0.475
    assert ndcg >= evaluation["references"]["ease"]["metrics"]["ndcg"] - 0.005
    # first run on an empty registry: promoted, registered, the champion
    version = evaluation["candidate"]["version"]
    assert f"gate: PROMOTE {version} (no champion yet)" in out
    assert f"champion: {version}" in out
    manifest = json.loads((registry / "versions" / version / "manifest.json").read_text())
    assert manifest["kind"] == "pipeline" and manifest["metrics"]["index"]["recall_at_k"] == 1.0
    assert manifest["feature_service"] == "ranker_v1"
    assert (tmp_path / "qs" / "kfp" / "report.html").stat().st_size > 100_000
    # step 4: the champion served over HTTP, real answers with reasons, then shut down
    assert f"serve the champion {version}" in out
    assert f"app ready at http://127.0.0.1:{port}" in out
    assert out.count("— because you watched ") == 10  # 2 users x 5 items
    assert "(cold_start=True)" in out
    assert "next answer no longer lists it: True" in out
    assert "a bad request (k=0) -> 422" in out and "Serve shut down" in out
    runs = {p.name for p in (tmp_path / "qs" / "kfp" / "checkpoints").iterdir()}
    for stage in ("two-tower-stage-a", "ranker", "two-tower-final"):
        assert any(name.endswith(stage) for name in runs), runs


def test_benchmark_quality_writes_results(run_cli, movielens_dir, tmp_path):
    out = tmp_path / "quality.json"
    proc = run_cli(
        "benchmark",
        "quality",
        "--out",
        out,
        "--workdir",
        tmp_path / "w",
        "--models",
        "popularity,ease",
    )
    result = json.loads(out.read_text())
    assert {r["model"] for r in result["rows"]} == {"popularity", "ease"}
    assert result["published"][0]["ndcg"] == 0.4751
    assert "| ease |" in proc.stdout
