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


def test_quickstart_trains_the_pipeline_on_ray_and_prints_the_table(
    run_cli, movielens_dir, tmp_path
):
    """What `make demo` runs: Feast features, then baselines and the pipeline model (Ray
    Train) trained from the point-in-time training set, one table."""
    repo = copy_feature_repo(tmp_path / "feature_repo")
    port = free_port()
    proc = run_cli(
        "quickstart", "--workdir", tmp_path / "qs", "--feature-repo", repo, "--port", port
    )
    assert "materialized into sqlite" in proc.stdout
    assert "training set: get_historical_features(ranker_v1) -> 75066 rows" in proc.stdout
    assert (repo / "data" / "online_store.db").exists()
    lines = proc.stdout.splitlines()
    rows = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| ")}
    assert {"popularity", "ease", "pipeline", "BiVAE (MS Recommenders)"} <= set(rows)
    metrics = {
        r["model"]: r for r in json.loads((tmp_path / "qs" / "metrics.json").read_text())["rows"]
    }
    assert list(metrics) == ["popularity", "ease", "pipeline"]
    # The pipeline clears the strongest published row and is not below our EASE baseline.
    assert metrics["pipeline"]["ndcg"] >= 0.475
    assert metrics["pipeline"]["ndcg"] >= metrics["ease"]["ndcg"] - 0.005
    manifest = json.loads((tmp_path / "qs" / "models" / "pipeline" / "manifest.json").read_text())
    assert manifest["kind"] == "pipeline" and manifest["metrics"]["index"]["recall_at_k"] == 1.0
    assert manifest["feature_service"] == "ranker_v1"
    # step 4: the pipeline model served over HTTP, real answers with reasons, then shut down
    assert f"app ready at http://127.0.0.1:{port}" in proc.stdout
    assert proc.stdout.count("— because you watched ") == 10  # 2 users x 5 items
    assert "(cold_start=True)" in proc.stdout
    assert "next answer no longer lists it: True" in proc.stdout
    assert "a bad request (k=0) -> 422" in proc.stdout and "Serve shut down" in proc.stdout
    checkpoints = tmp_path / "qs" / "checkpoints"
    assert {
        "qs-pipeline-two-tower-stage-a",
        "qs-pipeline-ranker",
        "qs-pipeline-two-tower-final",
    } <= {p.name for p in checkpoints.iterdir()}


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
