"""The pipeline model in-process: stacked fit, candidates (two-tower ANN ∪ EASE ∪ popular,
minus seen), ranking, cold start, persistence and the injected fit callables.
Tiny seeded data (the clustered fixture); never starts Ray."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from tiny_data import TINY_PIPELINE, cluster, side_tables

from recsys.features.state import states_from_interactions
from recsys.models import PipelineConfig, PipelineModel, load_model
from recsys.models.pipeline import fit_ranker_in_process, fit_two_tower_in_process
from recsys.models.ranker import DENSE_FEATURES, Ranker, RankerConfig
from recsys.models.two_tower import TwoTowerConfig
from recsys.models.two_tower_model import TwoTower
from tests.conftest import recommend_rows

TINY = TINY_PIPELINE


def fit(train: pd.DataFrame, **overrides) -> PipelineModel:
    users, items = side_tables()
    kwargs = {k: overrides.pop(k) for k in ("fit_two_tower", "fit_ranker") if k in overrides}
    return PipelineModel(PipelineConfig(**{**TINY, **overrides}), **kwargs).fit(train, users, items)


@pytest.fixture
def fitted(interactions) -> tuple[PipelineModel, pd.DataFrame]:
    return fit(interactions), interactions


def top_with_ties(scores: pd.Series, n: int) -> tuple[set, set]:
    """(items that must be in a top-``n``, items that may be): ties at the cut may go either
    way."""
    if n == 0:
        return set(), set()
    cut = scores.nlargest(n).min()
    return set(scores.index[scores > cut]), set(scores.index[scores >= cut])


# -- fit and recommend --------------------------------------------------------------------
def test_recommends_k_unseen_items_mostly_from_the_users_cluster(fitted):
    model, train = fitted
    assert isinstance(model.two_tower, TwoTower) and model.ease is not None
    assert isinstance(model.ranker, Ranker)
    users = sorted(train.user_id.unique())
    recs = recommend_rows(model, users, 5, history=train)
    assert recs.groupby("user_id").size().eq(5).all() and set(recs.user_id) == set(users)
    seen = set(zip(train.user_id, train.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(recs.user_id, recs.item_id, strict=True))
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 0).all()
    assert np.isfinite(recs.score).all()
    # Each user has 3 unseen items of their cluster (2 with interactions, 1 cold) among 36:
    # the top 2 should be from it (chance is about 8%).
    top2 = recommend_rows(model, users, 2, history=train)
    assert (cluster(top2.item_id) == cluster(top2.user_id)).mean() > 0.75
    log = model.training_log
    assert 0.0 < log["candidate_recall"] <= 1.0 and log["ranker_positives"] > 0
    assert log["ranker_rows"] > log["ranker_positives"]


def with_noise(interactions: pd.DataFrame, per_user: int = 3, seed: int = 1) -> pd.DataFrame:
    """Each user also picks ``per_user`` random unseen items of any cluster: EASE scores are
    then rarely tied, so its top-N differs from the two-tower's and from popularity's."""
    rng = np.random.default_rng(seed)
    catalog = sorted(set(interactions.item_id))
    extra = []
    for user, g in interactions.groupby("user_id"):
        others = sorted(set(catalog) - set(g.item_id))
        later = g.timestamp.max() + pd.Timedelta(minutes=1)
        extra += [(user, i, 3.0, later) for i in rng.choice(others, per_user, replace=False)]
    extra = pd.DataFrame(extra, columns=interactions.columns)
    return pd.concat([interactions, extra], ignore_index=True)


def candidates_of(rows: dict, model: PipelineModel) -> pd.Series:
    """user → the set of candidate item ids in ``candidate_rows`` output."""
    got = pd.DataFrame({"user": rows["user"], "item": model.item_ids[rows["iid"] - 1]})
    assert not got.duplicated().any()
    return got.groupby("user")["item"].apply(set)


def test_candidates_are_the_three_sources_minus_seen(interactions):
    train = with_noise(interactions)
    model = fit(train, n_two_tower=5)
    users = sorted(train.user_id.unique())
    rows = model.candidate_rows(users, train)
    assert set(rows) >= {"user", "row", "iid", "f0", "f1", "f2"}
    assert {f"d{j}" for j in range(len(DENSE_FEATURES))} <= set(rows) and "label" not in rows

    # Each source by its own definition: the two-tower ANN, EASE's B, training counts.
    tt = model.two_tower
    seen_of = train.groupby("user_id")["item_id"].apply(set)
    seen_idx = [np.array(sorted(model._item_index[i] for i in seen_of[u])) for u in users]
    z_u = tt.user_embeddings(users, train)
    x = model.ease.history_matrix(train, users).toarray()
    ease = pd.DataFrame(x @ model.ease.weights, index=users, columns=model.ease.item_ids)
    ease = ease.reindex(columns=model.item_ids, fill_value=0.0)  # cold items score 0
    popularity = train.item_id.value_counts().reindex(model.item_ids, fill_value=0)
    base = model.config
    # All three sources, then each alone (with one ANN item, the fewest it can give): a source
    # that stopped contributing, or leaked seen items, shows up in one of them.
    for n_tt, n_ease, n_pop in ((5, 10, 5), (1, 0, 5), (1, 10, 0), (8, 0, 0)):
        model.config = dataclasses.replace(base, n_two_tower=n_tt, n_ease=n_ease, n_popular=n_pop)
        candidates = candidates_of(model.candidate_rows(users, train), model)
        _, ann = tt.retrieve(z_u, n_tt, seen_idx)
        for r, user in enumerate(users):
            seen = seen_of[user]
            from_ann = set(model.item_ids[ann[r][ann[r] >= 0]])
            assert len(from_ann) == n_tt and not from_ann & seen
            must_ease, may_ease = top_with_ties(ease.loc[user].drop(list(seen)), n_ease)
            must_pop, may_pop = top_with_ties(popularity.drop(list(seen)), n_pop)
            cand = candidates[user]
            assert from_ann | must_ease | must_pop <= cand, (user, n_tt, n_ease, n_pop)
            assert cand <= from_ann | may_ease | may_pop, (user, n_tt, n_ease, n_pop)
            assert not cand & seen, user
    model.config = base

    # The ranker scores the candidates; everything else is -inf.
    scores = model._score(model.encode(states_from_interactions(train, users, 200)))
    features = {k: v for k, v in rows.items() if k not in ("user", "row")}
    np.testing.assert_allclose(
        scores[rows["row"], rows["iid"] - 1], model.ranker.score(features), rtol=1e-6
    )
    assert np.isfinite(scores).sum() == len(rows["iid"])
    assert (scores[~np.isfinite(scores)] == -np.inf).all()


def test_candidate_rows_carry_labels_and_generator_scores(fitted):
    model, train = fitted
    users = sorted(train.user_id.unique())[:6]
    history, held = train.iloc[::2], train.iloc[1::2]
    rows = model.candidate_rows(users, history, labels=held)
    truth = set(zip(held.user_id, held.item_id, strict=True))
    items = model.item_ids[rows["iid"] - 1]
    expected = [float((u, i) in truth) for u, i in zip(rows["user"], items, strict=True)]
    np.testing.assert_array_equal(rows["label"], expected)
    # The two-tower score column is z_u·z_i of that user and item.
    z_u = model.two_tower.user_embeddings(users, history)
    z_i = model.two_tower.item_embeddings[rows["iid"] - 1]
    np.testing.assert_allclose(
        rows["d2"], np.einsum("rd,rd->r", z_u[rows["row"]], z_i), rtol=1e-4, atol=1e-5
    )
    n_seen = history[history.user_id.isin(users)].groupby("user_id").size()
    np.testing.assert_allclose(rows["d5"], np.log1p(n_seen[rows["user"]].to_numpy()), rtol=1e-6)


def test_cold_start_users_get_k_items(fitted):
    model, train = fitted
    recs = recommend_rows(model, ["nobody", "new1"], 5, history=train)  # unknown; features only
    assert recs.groupby("user_id").size().to_dict() == {"new1": 5, "nobody": 5}
    assert recs.item_id.isin(model.item_ids).all() and np.isfinite(recs.score).all()
    stranger = pd.DataFrame({"user_id": "stranger", "item_id": ["i1", "i5", "unknown-item"]})
    recs = recommend_rows(model, ["stranger"], 5, history=stranger)
    assert len(recs) == 5 and not set(recs.item_id) & {"i1", "i5"}


def test_unknown_user_without_anything_gets_popularity(fitted):
    """The contract (``Recommender``): users the model cannot score are answered from
    popularity, as the two-tower model and EASE do."""
    model, train = fitted
    recs = recommend_rows(model, ["nobody"], 5, history=train)
    popular = train.item_id.value_counts()
    assert sorted(popular[recs.item_id].tolist()) == sorted(popular.iloc[:5].tolist())


# -- persistence ----------------------------------------------------------------------------
def test_save_load_round_trip(fitted, tmp_path):
    model, train = fitted
    path = model.save(tmp_path / "pipeline")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "pipeline" and manifest["n_items"] == 44
    parts = manifest["parts"]
    assert {"two_tower", "ease", "pipeline_popularity.npy"} <= set(parts)
    assert {"ranker/ranker.pt", "ranker/ranker.json", "ranker/ranker_item_table.npy"} <= set(parts)
    assert all((path / part).exists() for part in parts)
    assert (path / "two_tower" / "manifest.json").exists()  # the generators are model versions
    assert (path / "ease" / "manifest.json").exists()
    # The config round-trips: nested dicts in the manifest become the stages' dataclasses.
    config = PipelineConfig(**manifest["config"])
    assert config == model.config
    assert isinstance(config.two_tower, TwoTowerConfig) and config.two_tower.dim == 16
    assert isinstance(config.ranker, RankerConfig) and config.ranker.epochs == 3

    loaded = load_model(path)
    assert isinstance(loaded, PipelineModel) and loaded.config == model.config
    users = [*sorted(train.user_id.unique()), "nobody", "new2"]
    pd.testing.assert_frame_equal(
        recommend_rows(loaded, users, 5, history=train),
        recommend_rows(model, users, 5, history=train),
    )


def test_config_accepts_nested_dicts():
    cfg = PipelineConfig(
        n_ease=7, ease={"l2": 3.0}, two_tower={"dim": 8}, ranker={"loss": "bce", "epochs": 1}
    )
    assert cfg.ease.l2 == 3.0 and cfg.two_tower.dim == 8
    assert cfg.ranker.loss == "bce" and cfg.ranker.epochs == 1
    assert PipelineConfig(**dataclasses.asdict(cfg)) == cfg
    with pytest.raises(TypeError):
        PipelineConfig(ranker={"no_such_field": 1})


# -- the injected fit callables -------------------------------------------------------------
class Spy:
    """Wraps a fit callable and records each call's tag and arguments."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, *args):
        result = self.inner(*args)
        self.calls.append((args, result))
        return result

    @property
    def tags(self) -> list[str]:
        return [args[-1] for args, _ in self.calls]


def test_fit_uses_the_injected_callables(interactions):
    two_tower, ranker = Spy(fit_two_tower_in_process), Spy(fit_ranker_in_process)
    model = fit(interactions, fit_two_tower=two_tower, fit_ranker=ranker)
    assert two_tower.tags == ["stage-a", "final"] and ranker.tags == ["ranker"]
    (stage_a, *_), _ = two_tower.calls[0]
    (final, _, _, config, _), final_model = two_tower.calls[1]
    # Stage A sees part of each item's interactions, the final fit all of them.
    assert 0.7 * len(interactions) < len(stage_a) < 0.9 * len(interactions)
    assert len(final) == len(interactions) and config == model.config.two_tower
    assert model.two_tower is final_model
    (_, fit_rows, val, _), ranker_model = ranker.calls[0]
    assert model.ranker is ranker_model and "group" in fit_rows and "label" in fit_rows
    assert len(recommend_rows(model, ["u0", "u1"], 3, history=interactions)) == 6


def test_without_refit_the_stage_a_generators_serve(interactions):
    two_tower = Spy(fit_two_tower_in_process)
    model = fit(interactions, refit_generators=False, fit_two_tower=two_tower)
    assert two_tower.tags == ["stage-a"]
    assert model.two_tower is two_tower.calls[0][1]
    recs = recommend_rows(model, sorted(interactions.user_id.unique()), 5, history=interactions)
    assert recs.groupby("user_id").size().eq(5).all()


def test_catalog_over_ease_max_items_has_no_ease_part(interactions, tmp_path):
    model = fit(interactions, ease_max_items=40)  # 44 items with the cold ones
    assert model.ease is None
    users = sorted(interactions.user_id.unique())
    rows = model.candidate_rows(users, interactions)
    assert (rows["d0"] == 0).all() and (rows["d1"] == 0).all()  # no EASE scores
    recs = recommend_rows(model, users, 5, history=interactions)
    assert recs.groupby("user_id").size().eq(5).all() and np.isfinite(recs.score).all()
    path = model.save(tmp_path / "no-ease")
    assert "ease" not in json.loads((path / "manifest.json").read_text())["parts"]
    assert not (path / "ease").exists()
    loaded = load_model(path)
    assert loaded.ease is None
    pd.testing.assert_frame_equal(recommend_rows(loaded, users, 5, history=interactions), recs)
