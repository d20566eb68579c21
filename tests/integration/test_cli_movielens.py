"""CLI round trips on the real MovieLens-100k: the installed ``recsys`` command in a subprocess
for the quickstart (what `make demo` runs), the same click commands in this process for the
data, train, recommend and evaluate round trips, ``recsys recommend`` against the live app and
the quality benchmark."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from recsys.config import free_port
from recsys.features.events import EventLog
from recsys.features.store import FeatureStore
from recsys.state.offline import states_from_interactions
from recsys.state.user import DEFAULT_RECENT_N
from tests.helpers import copy_feature_repo


def test_split_train_recommend_evaluate(cli_here, movielens_dir, tmp_path):
    cli_here("data", "split", movielens_dir, "--protocol", "stratified", "--out", tmp_path / "s")
    split = json.loads((tmp_path / "s" / "split.json").read_text())
    assert (split["n_train"], split["n_test"]) == (75066, 24934)
    assert (tmp_path / "s" / "items.parquet").exists()

    for kind in ("popularity", "ease"):
        cli_here("train", "--data", tmp_path / "s", "--model", kind, "--out", tmp_path / kind)
        cli_here(
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
        cli_here(
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


def test_temporal_and_leave_last_out_splits(cli_here, movielens_dir, tmp_path):
    cli_here("data", "split", movielens_dir, "--protocol", "temporal", "--out", tmp_path / "t")
    train = pd.read_parquet(tmp_path / "t" / "train.parquet")
    test = pd.read_parquet(tmp_path / "t" / "test.parquet")
    assert test.user_id.nunique() == 943  # every user's latest quarter
    last_train = train.groupby("user_id").timestamp.max()
    assert (last_train <= test.groupby("user_id").timestamp.min().reindex(last_train.index)).all()
    cli_here("data", "split", movielens_dir, "--protocol", "global-time", "--out", tmp_path / "g")
    train = pd.read_parquet(tmp_path / "g" / "train.parquet")
    test = pd.read_parquet(tmp_path / "g" / "test.parquet")
    assert train.timestamp.max() < test.timestamp.min()
    cli_here(
        "data", "split", movielens_dir, "--protocol", "leave-last-out", "--out", tmp_path / "l"
    )
    assert pd.read_parquet(tmp_path / "l" / "test.parquet").user_id.nunique() == 943


@pytest.fixture(scope="module")
def quickstart(recsys_cmd, movielens_dir, tmp_path_factory):
    """What `make demo` runs, once for the module: the Kubeflow training pipeline on kfp.local
    (Feast features, the multi-stage model on Ray Train from the point-in-time training set,
    evaluation, gate, registry), one table and the gate's decision, then the champion served
    over HTTP."""
    tmp = tmp_path_factory.mktemp("quickstart")
    repo = copy_feature_repo(tmp / "feature_repo")
    registry = tmp / "registry"
    port = free_port()
    args = ["quickstart", "--workdir", tmp / "qs", "--feature-repo", repo]
    args += ["--registry", registry, "--port", port]
    env = {**os.environ, "FEAST_USAGE": "False"}
    proc = subprocess.run(
        [*recsys_cmd, *map(str, args)], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    (split,) = [p.parent for p in (tmp / "qs" / "kfp").rglob("split.json")]
    evaluation = json.loads((tmp / "qs" / "metrics.json").read_text())
    version = evaluation["candidate"]["version"]
    return {
        "out": proc.stdout,
        "err": proc.stderr,
        "tmp": tmp,
        "repo": repo,
        "registry": registry,
        "port": port,
        "split": split,
        "evaluation": evaluation,
        "version": version,
        "events": EventLog(tmp / "qs" / "events").read(),
    }


def test_quickstart_runs_the_training_pipeline_and_serves_the_champion(quickstart):
    tmp_path, out, repo, registry = (quickstart[k] for k in ("tmp", "out", "repo", "registry"))
    port = quickstart["port"]
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
    evaluation = quickstart["evaluation"]
    ndcg = evaluation["candidate"]["metrics"]["ndcg"]
    # The pipeline clears the strongest published row and is not below our EASE baseline.
    assert ndcg >= 0.475
    assert ndcg >= evaluation["references"]["ease"]["metrics"]["ndcg"] - 0.005
    assert f"nDCG@10 {ndcg:.4f} > ease" in out  # the gate held it to the strongest baseline
    # first run on an empty registry: promoted, registered, the champion
    version = quickstart["version"]
    assert f"gate: PROMOTE {version} (no champion yet)" in out
    assert f"champion: {version}" in out
    manifest = json.loads((registry / "versions" / version / "manifest.json").read_text())
    assert manifest["kind"] == "multistage" and manifest["config"]["ranker"] == "gbdt"
    assert manifest["feature_service"] == "ranker_v1"
    split_info = json.loads((quickstart["split"] / "split.json").read_text())
    assert manifest["data_lineage"] == split_info["lineage"]
    assert (
        manifest["state"]["recent_n"]
        <= json.loads((repo / "data" / "feature_meta.json").read_text())["recent_n"]
    )
    assert (tmp_path / "qs" / "kfp" / "report.html").stat().st_size > 100_000
    # step 3b: on the temporal protocol the model trained for what comes next beats EASE
    temporal = {r["model"]: r for r in json.loads((tmp_path / "qs" / "temporal.json").read_text())}
    assert "== 3b. the temporal protocol" in out and "| multistage |" in out
    assert set(temporal) == {"popularity", "ease", "multistage"}
    assert temporal["multistage"]["ndcg"] >= temporal["ease"]["ndcg"] + 0.03
    assert temporal["multistage"]["hit_rate"] > temporal["ease"]["hit_rate"]
    # step 4: the champion served over HTTP, real answers with reasons, then shut down
    assert f"serve the champion {version}" in out
    assert f"app ready at http://127.0.0.1:{port}" in out
    assert out.count("— because you watched ") == 12  # 2 users x 5 items, and a new one each
    # items nobody has rated, added over HTTP: each user gets the one its history fits
    assert "POST /items: 4 new items nobody has rated (pushed to the online store) -> 202" in out
    assert re.search(r"new for user 196 \(\S+ s after the POST\): Wedding Bells for Two — ", out)
    assert "(cold_start=True)" in out
    assert "next answer no longer lists it: True" in out
    assert "a bad request (k=0) -> 422" in out and "Serve shut down" in out
    # Only the project's own lines: Ray's and Serve's go to the session directory it names.
    ray_lines = re.compile(r"\(raylet\)|ServeController|core_worker|INFO 20|UserWarning|pid=\d+\)")
    assert not [line for line in (out + quickstart["err"]).splitlines() if ray_lines.search(line)]
    assert re.search(r"^\(Ray's and Serve's own logs: \S+/logs; proxy: ", out, re.MULTILINE)
    if shutil.which("haproxy"):
        assert "; proxy: HAProxy, throughput-optimised" in out
    runs = {p.name for p in (tmp_path / "qs" / "kfp" / "checkpoints").iterdir()}
    assert any(name.endswith("-ranker") for name in runs), runs  # LightGBM on Ray Train


def test_the_shipped_ranker_is_a_checkpointed_ray_run_and_its_manifest_says_how_it_trained(
    quickstart,
):
    """The quickstart's model, the shipped multi-stage one: its LightGBM ranker trained as a
    Ray Train run whose checkpoint is LightGBM's own model file; five folds cross-fitted; the
    training record in the manifest."""
    checkpoints = quickstart["tmp"] / "qs" / "kfp" / "checkpoints"
    (booster, *_) = checkpoints.glob("*-ranker/checkpoint_*/gbdt.txt")
    assert booster.read_text().startswith("tree")
    assert not list(checkpoints.glob("*-ranker-examples"))  # staged rows cleaned
    registry, version = quickstart["registry"], quickstart["version"]
    manifest = json.loads((registry / "versions" / version / "manifest.json").read_text())
    assert manifest["config"]["folds"] == 5 and manifest["state"]["recent_n"] >= 20
    parts = {"sources/ease_B.npy", "ranker/gbdt.txt", "folds/fold-4/rp3beta_W.npz"}
    assert parts <= set(manifest["parts"])
    log = manifest["metrics"]["training"]
    assert 0.0 < log["candidate_recall"] < 1.0
    assert 0 < log["ranker_positives"] < log["ranker_rows"]
    assert log["ranker_log"]["best_round"] == manifest["config"]["gbdt"]["rounds"]
    assert log["ranker_log"]["workers"] == 1


def test_the_online_store_holds_every_training_users_state(quickstart):
    """Store parity on MovieLens-100k: for every training user the online seen set is the
    user's training items (and the demo's event), the recent window the last N of them."""
    train = pd.read_parquet(quickstart["split"] / "train.parquet")
    events = quickstart["events"]
    assert len(events) == 1  # the demo's click
    history = pd.concat([train, events[["user_id", "item_id", "timestamp"]]], ignore_index=True)
    history["timestamp"] = pd.to_datetime(history["timestamp"], utc=True, format="ISO8601")
    reader = FeatureStore(quickstart["repo"]).online()
    users = sorted(train.user_id.unique())
    assert len(users) == 943
    expected = states_from_interactions(history, users, DEFAULT_RECENT_N)
    wrong = [u for u, want in zip(users, expected, strict=True) if reader.read_user(u)[0] != want]
    assert wrong == []
    seen = dict(zip(users, (set(s.seen) for s in expected), strict=True))
    mine = train.groupby("user_id").item_id.agg(set)
    assert all(seen[u] - mine[u] <= set(events.item_id) for u in users)


def test_the_endpoint_answers_what_recsys_recommend_answers(quickstart, ray_session, cli_here):
    """One recommendation path, measured where it matters: 200 seeded held-out users, the
    live app's /recommend against `recsys recommend` for the same version and users."""
    from ray import serve

    from recsys.serve_ops import start_local

    split, version = quickstart["split"], quickstart["version"]
    test = pd.read_parquet(split / "test.parquet")
    train = pd.read_parquet(split / "train.parquet")
    evented = set(quickstart["events"].user_id)  # their online state moved on by design
    pool = sorted(set(test.user_id) - evented)
    users = [str(u) for u in np.random.default_rng(7).choice(pool, 200, replace=False)]
    (quickstart["tmp"] / "users.txt").write_text("\n".join(users))
    out = quickstart["tmp"] / "offline.parquet"
    model_dir = quickstart["registry"] / "versions" / version
    cli_here(
        "recommend",
        "--model",
        model_dir,
        "--data",
        split,
        "--users",
        quickstart["tmp"] / "users.txt",
        "--k",
        10,
        "--out",
        out,
    )
    offline = pd.read_parquet(out)
    catalog = Path(split) / "items.parquet"
    port = free_port()
    try:
        url = start_local(
            model_dir.parent,
            version,
            quickstart["repo"],
            catalog,
            quickstart["tmp"] / "parity",
            port,
            replicas=1,  # the same answers from any replica; one starts faster
        )
        with httpx.Client(base_url=url, timeout=60) as client:
            online = {
                u: client.post("/recommend", json={"user_id": u, "k": 10}).json() for u in users
            }
    finally:
        serve.shutdown()
    seen = train.groupby("user_id").item_id.agg(set)
    identical, overlaps, leaked = 0, [], 0
    for user in users:
        answer = online[user]
        assert answer["model_version"] == version and not answer["cold_start"]
        served = [i["item_id"] for i in answer["items"]]
        mine = offline[offline.user_id == user].sort_values("rank")
        identical += served == mine.item_id.tolist()
        overlaps.append(len(set(served) & set(mine.item_id)) / 10)
        leaked += len(set(served) & seen[user])
        if served == mine.item_id.tolist():
            np.testing.assert_allclose(
                [i["score"] for i in answer["items"]], mine.score, rtol=1e-5, atol=1e-5
            )
            assert [i["reason"] for i in answer["items"]] == mine.reason.tolist()
    assert identical >= 198, identical
    assert np.mean(overlaps) >= 0.99
    assert leaked == 0


def test_benchmark_quality_writes_results(cli_here, movielens_dir, tmp_path):
    out = tmp_path / "quality.json"
    proc = cli_here(
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
