"""Popularity and EASE against the recommender contract."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.models.ease import EASE, EASEConfig
from recsys.models.kinds import MODEL_KINDS, create_model, load_model
from recsys.models.names import KIND_NAMES, NEURAL_KINDS
from recsys.models.popularity import Popularity
from tests.helpers import recommend_rows


@pytest.fixture
def train(interactions):
    return interactions


@pytest.mark.parametrize("kind", ["popularity", "ease"])
def test_exactly_k_unseen_items_per_user(kind, train):
    model = create_model(kind).fit(train)
    users = sorted(train.user_id.unique())
    recs = recommend_rows(model, users, 5, history=train, exclude_seen=True)
    assert recs.groupby("user_id").size().eq(5).all()
    assert set(recs.user_id) == set(users)
    seen = set(zip(train.user_id, train.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(recs.user_id, recs.item_id, strict=True))
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 0).all()


def test_the_kind_names_are_the_kinds():
    """``recsys train`` lists the kinds from their names alone (it starts Ray before it
    imports the models): the names must be the kinds."""
    assert sorted(KIND_NAMES) == sorted(MODEL_KINDS)
    assert set(NEURAL_KINDS) <= set(KIND_NAMES)


def test_include_seen_can_return_history():
    df = pd.DataFrame({"user_id": ["a", "b", "c", "c"], "item_id": ["hit", "hit", "hit", "x"]})
    model = Popularity().fit(df)
    assert recommend_rows(model, ["a"], 1, history=df, exclude_seen=False).item_id.tolist() == [
        "hit"
    ]
    assert recommend_rows(model, ["a"], 1, history=df, exclude_seen=True).item_id.tolist() == ["x"]


def test_ease_matches_per_column_ridge_solution(train):
    model = EASE(EASEConfig(l2=3.0)).fit(train)
    x = model.history_matrix(train, sorted(train.user_id.unique())).toarray()
    b = model.weights
    assert np.allclose(np.diag(b), 0.0)
    for j in (0, 5, 17):
        others = [c for c in range(x.shape[1]) if c != j]
        xo = x[:, others]
        ridge = np.linalg.solve(xo.T @ xo + 3.0 * np.eye(len(others)), xo.T @ x[:, j])
        assert np.allclose(b[others, j], ridge, atol=1e-4)


def test_ease_learns_the_clusters(train):
    model = EASE(EASEConfig(l2=1.0)).fit(train)
    # Each user has seen 8 of the 10 items of their cluster: the 2 left must come first.
    recs = recommend_rows(model, ["u0", "u1"], 2, history=train)
    for user, cluster in (("u0", 0), ("u1", 1)):
        items = recs[recs.user_id == user].item_id.str[1:].astype(int)
        assert (items % 4 == cluster).all()


def test_cold_start_user_gets_popular_items_not_a_crash(train):
    model = EASE().fit(train)
    recs = recommend_rows(model, ["never-seen"], 4, history=train)
    popular = train.item_id.value_counts()
    assert len(recs) == 4
    # The four most popular counts (ties may pick either item of a tie).
    assert popular[recs.item_id].tolist() == popular.iloc[:4].tolist()
    assert recs.score.tolist() == popular.iloc[:4].astype(float).tolist()


def test_history_with_unknown_items_is_ignored(train):
    model = EASE().fit(train)
    history = pd.DataFrame({"user_id": ["new", "new"], "item_id": ["i0", "not-in-vocab"]})
    recs = recommend_rows(model, ["new"], 3, history=history)
    assert "i0" not in set(recs.item_id) and len(recs) == 3


def test_fewer_unseen_items_than_k_returns_what_exists():
    df = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]})
    recs = recommend_rows(Popularity().fit(df), ["a", "b"], 5, history=df)
    assert recs[recs.user_id == "a"].empty and recs[recs.user_id == "b"].item_id.tolist() == ["y"]


@pytest.mark.parametrize("kind", ["popularity", "ease"])
def test_save_load_round_trip(kind, train, tmp_path):
    model = create_model(kind).fit(train)
    users = sorted(train.user_id.unique())
    before = recommend_rows(model, users, 5, history=train)
    path = model.save(tmp_path / "m", data_checksum="abc", metrics={"ndcg": 0.5})
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == kind and manifest["data_checksum"] == "abc"
    assert manifest["n_items"] == train.item_id.nunique()
    assert all((path / part).exists() for part in manifest["parts"])
    after = recommend_rows(load_model(path), users, 5, history=train)
    pd.testing.assert_frame_equal(before, after)


def test_save_replaces_whole_directory_and_leaves_no_temp(train, tmp_path):
    EASE().fit(train).save(tmp_path / "m")
    Popularity().fit(train).save(tmp_path / "m")
    assert load_model(tmp_path / "m").kind == "popularity"
    assert not (tmp_path / "m" / "ease_B.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_model_inputs(train, tmp_path):
    with pytest.raises(RecsysError, match="unknown model kind 'bpr'"):
        create_model("bpr")
    with pytest.raises(RecsysError, match="bad hyper-parameters"):
        create_model("ease", {"lambda": 3})
    with pytest.raises(RecsysError, match="l2 must be positive"):
        create_model("ease", {"l2": 0}).fit(train)
    with pytest.raises(RecsysError, match="exceed max_items=10"):
        create_model("ease", {"max_items": 10}).fit(train)
    with pytest.raises(RecsysError, match="not a model directory"):
        load_model(tmp_path)
    with pytest.raises(RecsysError, match="table is empty"):
        Popularity().fit(train.iloc[:0])


def test_unit_rows_as_read_are_the_scaled_copys_rows_exactly():
    from recsys.models.base import UnitRows, unit_rows

    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    vectors[7] = 0  # a zero row stays zero
    unit, whole = UnitRows(vectors), unit_rows(vectors)
    picks = np.array([7, 3, 3, 49, 0])
    assert np.array_equal(unit[picks], whole[picks]) and np.array_equal(unit[:], whole)
    assert np.array_equal(unit[4], whole[4]) and len(unit) == 50 and not unit[7].any()
