"""The ranker's trees compiled to native code (lleaves): the scores LightGBM's own predict
gives, missing values and single-leaf trees included; the object code cached per machine and
model; a pickled ranker recompiles."""

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from recsys.models.rankers.gbdt import GBDTConfig, GBDTRanker, RankingRows, compiled_forest


def rows(n_users: int, per_user: int, seed: int) -> RankingRows:
    """Queries of ``per_user`` candidates; the label follows two features, one with gaps."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[:, 5] = rng.integers(0, 4, n)  # a code, as the user's age bucket
    label = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=n) > 1.0).astype(np.float32)
    x[rng.random(n) < 0.1, 1] = np.nan  # a feature the sources could not give
    group = np.repeat(np.arange(n_users), per_user)
    return RankingRows(x, label, group, group)


@pytest.fixture(scope="module")
def ranker() -> GBDTRanker:
    config = GBDTConfig(rounds=40, num_leaves=15, min_data_in_leaf=5)
    names = tuple(f"f{j}" for j in range(6))
    return GBDTRanker(config, names).fit_in_process(rows(80, 30, 0), None)


def test_compiled_scores_are_lightgbms(ranker):
    x = rows(50, 40, 1).x
    expected = ranker.booster.predict(x, num_threads=1)
    got = ranker.score(x)
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.std(got) > 0.1  # the trees split: not a constant that would pass any comparison
    assert ranker.score(x[:0]).shape == (0,)


def test_a_forest_with_single_leaf_trees_scores_as_lightgbm():
    x = rows(10, 20, 2).x
    label = np.zeros(len(x), dtype=np.float32)
    label[::20] = 1.0
    data = lgb.Dataset(x, label, group=np.full(10, 20), params={"verbose": -1})
    params = {"objective": "rank_xendcg", "min_data_in_leaf": 500, "verbose": -1}
    booster = lgb.train(params, data, 3)  # too little data to split: every tree one leaf
    forest = compiled_forest(booster.model_to_string())
    np.testing.assert_allclose(
        forest.predict(x.astype(np.float64), n_jobs=1), booster.predict(x), rtol=0, atol=1e-12
    )


def test_the_object_code_is_cached_per_model(ranker, tmp_path):
    text = ranker.booster.model_to_string()
    compiled_forest(text, cache=tmp_path)
    objects = sorted(tmp_path.glob("*.o"))
    assert len(objects) == 1 and objects[0].stat().st_size > 0
    assert not list(tmp_path.glob(".*.tmp"))  # written temp-then-rename, nothing left behind
    stamp = objects[0].stat().st_mtime_ns
    x = rows(5, 10, 3).x.astype(np.float64)
    again = compiled_forest(text, cache=tmp_path)  # loaded, not compiled again
    assert objects[0].stat().st_mtime_ns == stamp and len(list(tmp_path.glob("*.o"))) == 1
    np.testing.assert_allclose(again.predict(x, n_jobs=1), ranker.booster.predict(x), atol=1e-12)
    other = GBDTRanker(GBDTConfig(rounds=5), ranker.features).fit_in_process(rows(40, 20, 4), None)
    compiled_forest(other.booster.model_to_string(), cache=tmp_path)
    assert len(list(tmp_path.glob("*.o"))) == 2  # another model, another file


def test_a_pickled_ranker_recompiles_and_scores_the_same(ranker):
    x = rows(5, 10, 5).x
    before = ranker.score(x)
    copy = pickle.loads(pickle.dumps(ranker))
    np.testing.assert_array_equal(copy.score(x), before)
