"""CLI round trips on tiny data; bad input gets a clear message, an exit code, no half-write."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.cli.options import parse_params
from recsys.config import RecsysError


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def csv_data(tmp_path, interactions):
    """A user's own CSV: string ids with gaps, a user with one rating, epoch seconds."""
    df = interactions.copy()
    df["timestamp"] = df["timestamp"].astype("int64") // 10**9
    extra = pd.DataFrame(
        {"user_id": ["lonely"], "item_id": ["i3"], "rating": [5.0], "timestamp": [1_700_000_000]}
    )
    path = tmp_path / "ratings.csv"
    pd.concat([df, extra]).to_csv(path, index=False)
    return path


def test_split_train_recommend_evaluate_round_trip(run, tmp_path, csv_data):
    split, model, recs_file = tmp_path / "s", tmp_path / "m", tmp_path / "recs.parquet"
    r = run("data", "split", csv_data, "--protocol", "leave-last-out", "--out", split)
    assert r.exit_code == 0, r.output
    r = run("train", "--data", split, "--model", "ease", "--param", "l2=2", "--out", model)
    assert r.exit_code == 0, r.output
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["config"]["l2"] == 2
    r = run("recommend", "--model", model, "--data", split, "--k", 3, "--out", recs_file)
    assert r.exit_code == 0, r.output
    recs = pd.read_parquet(recs_file)
    train = pd.read_parquet(split / "train.parquet")
    assert set(recs.user_id) == set(train.user_id) and recs.groupby("user_id").size().eq(3).all()
    r = run("evaluate", "--recs", recs_file, "--test", split, "--train", split, "--k", 3)
    assert r.exit_code == 0, r.output
    assert "nDCG@k" in r.output
    metrics = json.loads((tmp_path / "recs.metrics.json").read_text())
    assert 0.0 <= metrics["ndcg"] <= 1.0 and metrics["n_users"] > 0


def test_recommend_users_file_with_unknown_user(run, tmp_path, csv_data):
    assert (
        run("train", "--data", csv_data, "--model", "popularity", "--out", tmp_path / "m").exit_code
        == 0
    )
    (tmp_path / "users.txt").write_text("u1\nbrand-new\n")
    r = run(
        "recommend",
        "--model",
        tmp_path / "m",
        "--data",
        csv_data,
        "--users",
        tmp_path / "users.txt",
        "--k",
        4,
        "--out",
        tmp_path / "r.parquet",
    )
    assert r.exit_code == 0, r.output
    recs = pd.read_parquet(tmp_path / "r.parquet")
    assert recs.groupby("user_id").size().to_dict() == {"u1": 4, "brand-new": 4}


def test_recommend_keeps_to_a_candidates_file(run, tmp_path, csv_data):
    """``--candidates``: a text file or a table's item_id column; unknown ids left out, a
    file the model knows none of refused with its name."""
    model, out = tmp_path / "m", tmp_path / "r.parquet"
    assert run("train", "--data", csv_data, "--model", "ease", "--out", model).exit_code == 0
    listed = pd.DataFrame({"item_id": ["i3", "i5", "i7", "i9", "gone"]})
    listed.to_parquet(tmp_path / "items.parquet")
    (tmp_path / "items.txt").write_text("i3\ni5\ni7\ni9\ngone\n")
    for file in ("items.parquet", "items.txt"):
        args = ["recommend", "--model", model, "--data", csv_data, "--candidates"]
        r = run(*args, tmp_path / file, "--k", 10, "--out", out)
        assert r.exit_code == 0, r.output
        recs = pd.read_parquet(out)
        assert set(recs.item_id) <= {"i3", "i5", "i7", "i9"} and len(recs)
        assert recs.groupby("user_id").size().max() <= 4
        assert "(1 --candidates ids not in the model: left out)" in r.output
    (tmp_path / "none.txt").write_text("x\ny\n")
    args = ["recommend", "--model", model, "--data", csv_data, "--candidates"]
    r = CliRunner().invoke(cli, [str(a) for a in [*args, tmp_path / "none.txt", "--out", out]])
    assert r.exit_code == 1 and "none.txt: none of the 2 item ids ('x', 'y') is in" in r.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (
            ["train", "--data", "nope.parquet", "--model", "ease", "--out", "m"],
            1,
            "nope.parquet: no such file",
        ),
        (
            ["train", "--data", "{csv}", "--model", "ease", "--param", "l2", "--out", "m"],
            1,
            "expected key=value",
        ),
        (
            ["train", "--data", "{csv}", "--model", "ease", "--param", "lam=3", "--out", "m"],
            1,
            "bad hyper-parameters",
        ),
        (["train", "--data", "{csv}", "--model", "bpr", "--out", "m"], 2, "'bpr' is not one of"),
        (
            ["recommend", "--model", "{tmp}", "--data", "{csv}", "--out", "r.parquet"],
            1,
            "not a model directory",
        ),
        (["data", "split", "{csv}", "--ratio", "2", "--out", "s"], 1, "between 0 and 1"),
        (
            ["evaluate", "--recs", "{csv}", "--test", "{csv}", "--k", "0"],
            2,
            "0 is not in the range",
        ),
    ],
)
def test_bad_input_exit_codes(run, tmp_path, csv_data, args, code, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.format(csv=csv_data, tmp=tmp_path) for a in args]
    r = run(*args)
    assert r.exit_code == code
    assert message in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "r.parquet").exists()


def test_train_on_file_missing_a_column_names_it(run, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user,item_id,timestamp\n1,2,1700000000\n")
    r = run("train", "--data", path, "--model", "ease", "--out", tmp_path / "m")
    assert r.exit_code == 1
    assert "missing required column(s) ['user_id']" in r.output
    assert not (tmp_path / "m").exists()


def test_validate_reports_counts_and_exit_3_above_threshold(run, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,rating,timestamp\n1,2,4,1700000000\n1,3,11,1700000000\n"
        "2,3,4,not-a-time\n2,4,4,1700000000\n"
    )
    r = run("data", "validate", path, "--max-bad-share", "0.1")
    assert r.exit_code == 3
    assert "50.00% of 4 rows failed" in r.output
    assert "rating_out_of_range: 1" in r.output and "unparseable_timestamp: 1" in r.output
    quarantine = pd.read_parquet(tmp_path / "events.quarantine.parquet")
    assert quarantine.row.tolist() == [1, 2]
    r = run("data", "validate", path, "--max-bad-share", "0.5")
    assert r.exit_code == 0 and "2 clean, 2 quarantined" in r.output


def test_train_quarantines_bad_rows_beside_model_and_fails_above_share(run, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("user_id,item_id,rating,timestamp\n1,2,4,1700000000\n,3,4,1700000000\n")
    r = run("train", "--data", path, "--model", "popularity", "--out", tmp_path / "m")
    assert r.exit_code == 3 and "50.00% of 2 rows failed" in r.output
    assert (tmp_path / "m.quarantine.parquet").exists() and not (tmp_path / "m").exists()
    r = run(
        "train",
        "--data",
        path,
        "--model",
        "popularity",
        "--out",
        tmp_path / "m",
        "--max-bad-share",
        "0.5",
    )
    assert r.exit_code == 0, r.output


def test_features_init_makes_a_repository_on_the_shared_volume_and_keeps_its_data(run, tmp_path):
    """What the chart's init containers run: the image's definitions plus the cluster's
    store configuration; re-running (another pod starting) keeps what data/ holds."""
    from pathlib import Path

    source = Path(__file__).resolve().parents[3] / "feature_repo"
    store = tmp_path / "feature_store.yaml"
    store.write_text("project: recsys\nonline_store:\n  type: redis\n")
    repo = tmp_path / "volume" / "feature_repo"
    r = run("features", "init", "--from", source, "--store-yaml", store, "--repo", repo)
    assert r.exit_code == 0, r.output
    assert (repo / "feature_store.redis.yaml").read_text() == store.read_text()
    definitions = sorted(p.name for p in source.glob("*.py"))
    assert sorted(p.name for p in repo.glob("*.py")) == definitions
    (repo / "data" / "registry.redis.db").write_bytes(b"applied")
    assert run("features", "init", "--from", source, "--repo", repo).exit_code == 0
    assert (repo / "data" / "registry.redis.db").read_bytes() == b"applied"
    assert not list(repo.glob(".*.tmp"))
    r = run(
        "features", "init", "--from", source, "--store-yaml", tmp_path / "nope.yaml", "--repo", repo
    )
    assert r.exit_code == 1 and "nope.yaml: no such store configuration" in r.output
    r = run("features", "init", "--from", tmp_path / "volume", "--repo", tmp_path / "x")
    assert r.exit_code == 1 and "no Feast definitions" in r.output


def test_a_model_trained_on_a_temporal_split_learns_what_comes_next(
    run, tmp_path, csv_data, monkeypatch
):
    """``split.json`` names the protocol; training on the split (or on its training set)
    gives the kind what it learns for that protocol, under the user's own parameters."""
    from recsys.features.store import FeatureStore, write_training_set
    from recsys.models.kinds import PROTOCOL_PARAMS, create_model, protocol_params
    from recsys.training import train as training

    temporal = {**PROTOCOL_PARAMS["temporal"]["multistage"], "folds": 4}
    assert temporal["crossfit"] == "user-time" and temporal["n_two_tower"] > 0
    assert protocol_params("multistage", "temporal", {"folds": 4}) == temporal
    nested = protocol_params("multistage", "temporal", {"two_tower": {"epochs": 3}})["two_tower"]
    assert nested == {**PROTOCOL_PARAMS["temporal"]["multistage"]["two_tower"], "epochs": 3}
    assert protocol_params("multistage", "temporal", {"crossfit": "random"})["crossfit"] == "random"
    assert protocol_params("pipeline", "stratified", {"folds": 4}) == {"folds": 4}
    asked = []

    def spy(kind, train, users, items, params=None, *, args=None):  # no Ray in unit tests
        asked.append((kind, params))
        return create_model("popularity").fit(train, users, items)

    monkeypatch.setattr(training, "fit_model", spy)
    for protocol in ("temporal", "stratified"):
        split_dir = tmp_path / protocol
        r = run("data", "split", csv_data, "--protocol", protocol, "--out", split_dir)
        assert r.exit_code == 0, r.output
        model = ("train", "--data", split_dir, "--model", "multistage", "--param", "folds=4")
        r = run(*model, "--out", tmp_path / f"m-{protocol}")
        assert r.exit_code == 0, r.output
    assert asked == [("multistage", temporal), ("multistage", {"folds": 4})]
    write_training_set(tmp_path / "temporal", tmp_path / "set", feature_repo=None)
    assert FeatureStore.training_set_meta(tmp_path / "set")["protocol"] == "temporal"
    training.train_from_set(tmp_path / "set", tmp_path / "m-set", kind="multistage")
    assert asked[-1] == ("multistage", protocol_params("multistage", "temporal"))


def test_a_dotted_param_sets_a_nested_setting():
    pairs = ("two_tower.index.precision=int8", "two_tower.epochs=2", "folds=4")
    assert parse_params(pairs) == {
        "two_tower": {"index": {"precision": "int8"}, "epochs": 2},
        "folds": 4,
    }
    merged = parse_params(('index={"kind": "flat"}', "index.precision=fp16"))
    assert merged == {"index": {"kind": "flat", "precision": "fp16"}}
    with pytest.raises(RecsysError, match=r"'index.precision=int8': index is already set"):
        parse_params(("index=5", "index.precision=int8"))
    with pytest.raises(RecsysError, match=r"'index..precision=1': expected key=value"):
        parse_params(("index..precision=1",))


def test_items_add_logs_the_good_rows_refuses_the_bad_and_recommend_serves_them(
    run, tmp_path, tiny_multistage, tiny_train
):
    """``recsys items add``: each row checked (exit 1 naming the refused ones, the rest kept);
    ``recsys recommend --new-items`` then ranks them as a replica of the app would."""
    new = tmp_path / "new.jsonl"
    rows = [
        {"item_id": "x1", "title": "One", "genres": ["G1", "Drama"], "release_year": 1985},
        {"item_id": "x3", "title": "Three", "genres": "G3|Drama"},
        {"item_id": "x9", "genres": "G1"},
    ]
    new.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items_dir = tmp_path / "items"
    r = CliRunner().invoke(cli, ["items", "add", str(new), "--items-dir", str(items_dir)])
    assert r.exit_code == 1, r.output
    assert f"added 2 items to {items_dir / 'items.jsonl'}" in r.output
    assert "row 2 ('x9'): refused: missing title" in r.output
    assert "1 of 3 rows refused; kept in" in r.output
    again = CliRunner().invoke(cli, ["items", "add", str(new), "--items-dir", str(items_dir)])
    assert "already in the catalog, left as they are: x1, x3" in again.output
    assert again.exit_code == 1 and "row 2 ('x9'): refused" in again.output
    tiny_multistage.save(tmp_path / "m", data_checksum="abc")
    tiny_train.to_parquet(tmp_path / "train.parquet")
    (tmp_path / "listed.txt").write_text("x1\nx3\n")
    out = tmp_path / "recs.parquet"
    args = ["recommend", "--model", tmp_path / "m", "--data", tmp_path / "train.parquet"]
    args += ["--users", tmp_path / "users.txt", "--candidates", tmp_path / "listed.txt"]
    (tmp_path / "users.txt").write_text("u1\nu3\n")
    assert (
        "none of the 2 item ids"
        in CliRunner().invoke(cli, [str(a) for a in [*args, "--out", out]]).output
    )
    r = run(*args, "--new-items", items_dir, "--k", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert pd.read_parquet(out).item_id.tolist() == ["x1", "x3"]  # each to its cluster
    bad = CliRunner().invoke(cli, [str(a) for a in [*args, "--new-items", tmp_path, "--out", out]])
    assert bad.exit_code == 1 and "no items.jsonl there" in bad.output
