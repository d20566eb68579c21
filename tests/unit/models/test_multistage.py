"""The multi-stage model in-process: cross-fitted training rows, candidates (EASE ∪ RP3beta ∪
popular [∪ two-tower ANN], minus seen), features under every fold's fit, both rankers, cold
start, persistence and the injected fit callables. Tiny seeded data; never starts Ray."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from recsys.config import RecsysError
from recsys.models.content import content_scores
from recsys.models.extend import with_new_items
from recsys.models.kinds import create_model, load_model
from recsys.models.manifest import read_manifest
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.models.multistage.candidates import candidate_pairs
from recsys.models.multistage.crossfit import StageTrainer
from recsys.models.multistage.ranker_inputs import (
    CONTENT_FEATURES,
    FEATURES,
    RECENT_FEATURES,
    features,
)
from recsys.models.multistage.sources import CONTENT, RECENT_WINDOWS
from recsys.models.rankers.dcn import DCNRanker
from recsys.models.rankers.gbdt import GBDTRanker, RankingRows
from recsys.models.two_tower import TwoTowerConfig
from recsys.recommend import Request, recommend_frame
from recsys.state.offline import item_context, states_from_interactions
from tests.helpers import TINY_MULTISTAGE, cluster, make_interactions, recommend_rows, side_tables

TINY = TINY_MULTISTAGE


def fit(train: pd.DataFrame, **overrides) -> MultiStageModel:
    users, items = side_tables()
    trainer = overrides.pop("trainer", None)
    return MultiStageModel(MultiStageConfig(**{**TINY, **overrides}), trainer=trainer).fit(
        train, users, items
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[MultiStageModel, pd.DataFrame]:
    train = with_noise(make_interactions())
    return fit(train), train


def with_noise(interactions: pd.DataFrame, per_user: int = 3, seed: int = 1) -> pd.DataFrame:
    """Each user also picks ``per_user`` random unseen items of any cluster: EASE scores are
    then rarely tied, so its top-N differs from RP3beta's and from popularity's."""
    rng = np.random.default_rng(seed)
    catalog = sorted(set(interactions.item_id))
    extra = []
    for user, g in interactions.groupby("user_id"):
        others = sorted(set(catalog) - set(g.item_id))
        later = g.timestamp.max() + pd.Timedelta(minutes=1)
        extra += [(user, i, 3.0, later) for i in rng.choice(others, per_user, replace=False)]
    extra = pd.DataFrame(extra, columns=interactions.columns)
    return pd.concat([interactions, extra], ignore_index=True)


def spread_over_days(train: pd.DataFrame) -> pd.DataFrame:
    """Every user active across the whole span, a day per interaction (the fixture gives each
    user one day): what a time cross-fitting needs, users seen before each window."""
    step = pd.to_timedelta(train.groupby("user_id").cumcount() * 24, unit="h")
    seconds = train.index.to_series().map(lambda i: pd.Timedelta(seconds=i))
    return train.assign(timestamp=pd.Timestamp("2024-01-01", tz="UTC") + step + seconds)


def top_with_ties(scores: pd.Series, n: int) -> tuple[set, set]:
    """(items that must be in a top-``n``, items that may be): ties at the cut go either way."""
    if n == 0:
        return set(), set()
    cut = scores.nlargest(n).min()
    return set(scores.index[scores > cut]), set(scores.index[scores >= cut])


def batch_of(model: MultiStageModel, history: pd.DataFrame, users: list[str]):
    return model.encode(states_from_interactions(history, users, 200))


def items_of(model: MultiStageModel, history: pd.DataFrame) -> dict:
    return item_context(history, model.item_ids)  # what the store holds of the items


# -- fit and recommend --------------------------------------------------------------------
def test_recommends_k_unseen_items_mostly_from_the_users_cluster(fitted):
    model, train = fitted
    assert model.sources.ease is not None and model.sources.rp3 is not None
    assert model.sources.two_tower is None and isinstance(model.ranker, GBDTRanker)
    assert len(model.fold_sources) == TINY["folds"]
    users = sorted(train.user_id.unique())
    recs = recommend_rows(model, users, 5, history=train)
    assert recs.groupby("user_id").size().eq(5).all() and set(recs.user_id) == set(users)
    assert recs.merge(train, on=["user_id", "item_id"]).empty
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 0).all()
    # Each user has 2-3 unseen items of their cluster among ~40: the top 2 should mostly be
    # from it (chance is about 8%).
    top2 = recommend_rows(model, users, 2, history=train)
    assert (cluster(top2.item_id) == cluster(top2.user_id)).mean() > 0.6
    log = model.training_log
    assert 0.0 < log["candidate_recall"] <= 1.0 and log["ranker_positives"] > 0
    assert log["ranker_rows"] > log["ranker_positives"] and log["ranker"] == "gbdt"


def test_candidates_are_the_full_fits_sources_minus_seen(fitted):
    model, train = fitted
    users = sorted(train.user_id.unique())
    batch = batch_of(model, train, users)
    got = model.candidates(batch, items=items_of(model, train))
    x = batch.seen.toarray()
    ease = pd.DataFrame(x @ model.sources.ease, index=users, columns=model.item_ids)
    rp3 = pd.DataFrame(
        (batch.seen @ model.sources.rp3).toarray(), index=users, columns=model.item_ids
    )
    popularity = pd.Series(model.sources.popularity, index=model.item_ids)
    content = pd.DataFrame(  # the items nearest the user's history in content space
        content_scores(batch.seen, model.content), index=users, columns=model.item_ids
    )
    seen_of = train.groupby("user_id")["item_id"].apply(set)
    cfg = model.config
    for u, user in enumerate(users):
        seen = seen_of[user]
        cand = set(model.item_ids[got[u].codes])
        must, may = set(), set()
        for scores, n in (
            (ease.loc[user], cfg.n_ease),
            (rp3.loc[user], cfg.n_rp3),
            (popularity, cfg.n_popular),
            (content.loc[user], cfg.n_content),
        ):
            m, y = top_with_ties(scores.drop(list(seen)), n)
            must, may = must | m, may | y
        assert must <= cand <= may, user
        assert not cand & seen and got[u].known
        assert got[u].rows["x"].shape == (cfg.folds, len(cand), len(model.feature_names()))


def test_each_folds_features_come_from_that_folds_fit(fitted):
    model, train = fitted
    users = sorted(train.user_id.unique())[:5]
    batch = batch_of(model, train, users)
    items = items_of(model, train)
    cands = model.candidates(batch, items=items)
    r = np.concatenate([np.full(len(c.codes), u) for u, c in enumerate(cands)])
    c = np.concatenate([c.codes for c in cands])
    context = model._context(batch, r, c, items)
    stacked = np.concatenate([cand.rows["x"] for cand in cands], axis=1)
    for f, sources in enumerate(model.fold_sources):
        scores = sources.score_batch(batch, batch.seen)
        names = model.feature_names()
        alone = features([scores], batch.seen, r, c, context, names)[0]  # one fit's, alone
        np.testing.assert_allclose(stacked[f], alone, rtol=1e-6)
    # The final score is the ranker's mean over the folds' feature rows.
    ranked = np.concatenate(model.rank(cands))
    folds = [model.ranker.score(stacked[f]) for f in range(len(model.fold_sources))]
    np.testing.assert_allclose(ranked, np.mean(folds, axis=0), rtol=1e-6)


def test_the_sources_score_as_their_own_products_joined_or_apart(fitted, monkeypatch):
    """EASE and RP3beta are scored by one product over their weights side by side; each
    source's scores are its own product's, to the bit, and so they are with RP3beta sparse
    and apart (a catalog over DENSE_ITEMS)."""
    from recsys.models.multistage import sources as module

    model, train = fitted
    batch = batch_of(model, train, sorted(train.user_id.unique())[:7])
    ease, rp3 = model.sources.ease.copy(), model.sources.rp3
    joined = model.sources.item_item_scores(batch.seen, batch.recent)
    assert [names for names, _ in model.sources._item_item()] == [("ease", "rp3")]
    assert np.shares_memory(model.sources.ease, model.sources._item_item()[0][1])
    assert np.array_equal(joined["ease"], batch.seen @ ease)
    assert np.array_equal(joined["rp3"], batch.seen @ rp3.toarray())
    assert joined["ease"].dtype == np.float32
    monkeypatch.setattr(module, "DENSE_ITEMS", 0)
    apart = module.Sources(model.sources.popularity, ease, rp3)
    got = apart.item_item_scores(batch.seen, batch.recent)
    assert [names for names, _ in apart._item_item()] == [("ease",), ("rp3",)]
    assert got.keys() == joined.keys() == {"ease", "rp3"}
    assert all(np.array_equal(got[k], joined[k]) for k in ("ease", "rp3"))
    # the recent windows are rows of the first product (EASE), joined or apart, and leave the
    # history's scores as they were
    for sources in (model.sources, apart):
        windowed = sources.item_item_scores(batch.seen, batch.recent, windows=(1, 5))
        assert all(np.array_equal(windowed[k], joined[k]) for k in ("ease", "rp3"))
        last = batch.recent[:, 0] - 1
        assert np.array_equal(windowed["recent_1"], ease[last])


def test_the_ranker_learns_from_cross_fitted_rows(interactions, caplog):
    """Every training interaction is a label once, found among candidates of sources that
    never saw it; each step says so on the progress logger."""
    spy = SpyTrainer()
    train = with_noise(interactions)
    with caplog.at_level("INFO", logger="recsys.progress"):
        model = fit(train, trainer=spy)
    lines = [r.getMessage() for r in caplog.records if r.name == "recsys.progress"]
    steps = [line.split(":")[0] for line in lines]
    assert lines[0] == "sources: " + "; ".join(
        f"{k} {v}" for k, v in model.training_log["sources"].items()
    )
    assert steps[1:7] == ["fold 1/3", "fold 1/3", "fold 2/3", "fold 2/3", "fold 3/3", "fold 3/3"]
    assert lines[2].endswith("ranker rows") and steps[7] == "full fit"
    assert lines[-1] == "gbdt ranker trained"
    (ranker, rows, val, tag), result = spy.calls["ranker"][0]
    assert tag == "ranker" and model.ranker is result and val is None  # fixed rounds
    assert isinstance(rows, RankingRows) and rows.x.shape[1] == len(model.feature_names())
    assert (np.diff(rows.group) >= 0).all()  # queries contiguous
    assert rows.label.sum() == model.training_log["ranker_positives"] <= len(train)
    # Each fold's sources were fitted without that fold: their counts add up to the rest.
    held = sum(len(train) - s.popularity.sum() for s in model.fold_sources)
    assert held == len(train)


def test_time_cross_fitting_learns_the_future_from_the_past_and_serves_the_full_fit(
    interactions, tmp_path
):
    """``crossfit="time"``: each window's items are labels for sources fitted on everything
    before the window only; at serving the full fit alone gives the features."""
    train = spread_over_days(with_noise(interactions))
    model = fit(train, crossfit="time")
    folds = list(model._folds(train))
    assert len(folds) == TINY["folds"] - 1
    for history, labels in folds:
        assert history.timestamp.max() < labels.timestamp.min()  # never the future
        assert set(labels.user_id) <= set(history.user_id)  # users the sources know
    labelled = sum(len(labels) for _, labels in folds)
    assert model.training_log["ranker_positives"] <= labelled < len(train)
    assert model.fold_sources == [] and model.serving_fits() == [model.sources]
    users = sorted(train.user_id.unique())[:5]
    cands = model.candidates(batch_of(model, train, users), items=items_of(model, train))
    assert all(c.rows["x"].shape[0] == 1 for c in cands)
    path = model.save(tmp_path / "time")
    assert not any(p.startswith("folds/") for p in read_manifest(path).parts)
    users += ["nobody"]
    pd.testing.assert_frame_equal(
        recommend_rows(load_model(path), users, 5, history=train),
        recommend_rows(model, users, 5, history=train),
    )
    with pytest.raises(ValueError, match="crossfit must be one of"):
        MultiStageConfig(crossfit="weekly")
    # each fixture user lives one day: no window has a user seen before it
    with pytest.raises(RecsysError, match="no fold has a user with history before it"):
        fit(interactions, crossfit="time")


def test_user_time_cross_fitting_labels_each_users_latest_interactions(interactions, caplog):
    """``crossfit="user-time"``: one fold, the temporal protocol inside the training data:
    each user's latest 1/folds of interactions are the labels, for sources fitted on every
    user's earlier ones; the full fit alone serves."""
    train = spread_over_days(with_noise(interactions))
    with caplog.at_level("INFO", logger="recsys.progress"):
        model = fit(train, crossfit="user-time")
    assert "fold 1/1: sources fitted on" in caplog.text
    [(history, labels)] = list(model._folds(train))
    assert len(history) + len(labels) == len(train) and len(labels) > 0
    for user, mine in labels.groupby("user_id"):
        before = history[history.user_id == user]
        assert before.timestamp.max() <= mine.timestamp.min()  # the user's past only
        total = len(before) + len(mine)
        assert len(before) == np.round((1 - 1 / TINY["folds"]) * total)
    assert 0 < model.training_log["ranker_positives"] <= len(labels)
    assert model.fold_sources == [] and model.serving_fits() == [model.sources]
    # the full fit saw everything; the fold's fit (its labels withheld) is not kept
    assert model.sources.popularity.sum() == len(train)
    users = sorted(train.user_id.unique())[:5]
    recs = recommend_rows(model, users, 5, history=train)
    assert recs.groupby("user_id").size().eq(5).all()
    # ... and its ranker reads what the user did last: EASE's weights from their latest items
    names = model.feature_names()
    assert (
        names[len(FEATURES) : len(FEATURES) + len(RECENT_FEATURES)]
        == RECENT_FEATURES
        == ("recent_1", "recent_5", "recent_10", "recent_20")
    )
    assert names[-len(CONTENT_FEATURES) :] == CONTENT_FEATURES  # the items' text: auto
    assert "recent_5" not in fit(train).feature_names()  # random folds: no gain, not read
    assert model.state_spec().recent_n >= max(RECENT_WINDOWS)
    batch = batch_of(model, train, users)
    cands = model.candidates(batch)
    for u, cand in enumerate(cands):
        latest = batch.recent[u][batch.recent[u] > 0] - 1  # most recent first
        for w in RECENT_WINDOWS:
            expected = model.sources.ease[np.unique(latest[:w])][:, cand.codes].sum(axis=0)
            got = cand.rows["x"][0, :, names.index(f"recent_{w}")]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_cold_start_users_get_k_items(fitted):
    model, train = fitted
    recs = recommend_rows(model, ["nobody", "new1"], 5, history=train)  # unknown; features only
    assert recs.groupby("user_id").size().to_dict() == {"new1": 5, "nobody": 5}
    assert (recs[recs.user_id == "nobody"].source == "popular").all()
    assert (recs[recs.user_id == "new1"].source == "model").all()  # a profile: ranked
    stranger = pd.DataFrame({"user_id": "stranger", "item_id": ["i1", "i5", "unknown-item"]})
    recs = recommend_rows(model, ["stranger"], 5, history=stranger)
    assert len(recs) == 5 and not set(recs.item_id) & {"i1", "i5"}


# -- persistence ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ranker", "content"), [("gbdt", "auto"), ("dcn", "auto"), ("gbdt", "off")]
)
def test_save_load_round_trip(interactions, tmp_path, ranker, content):
    """Every part comes back, content or none (a version trained before it read content)."""
    model = fit(interactions, ranker=ranker, content=content)
    assert (model.content is not None) == (content == "auto")
    assert isinstance(model.ranker, GBDTRanker if ranker == "gbdt" else DCNRanker)
    path = model.save(tmp_path / "multistage")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "multistage" and manifest["n_items"] == 44
    parts = manifest["parts"]
    assert {"sources/ease_B.npy", "sources/rp3beta_W.npz", "sources/popularity.npy"} <= set(parts)
    assert "folds/fold-2/ease_B.npy" in parts
    assert all((path / part).exists() for part in parts)
    config = MultiStageConfig(**manifest["config"])
    assert config == model.config and isinstance(config.two_tower, TwoTowerConfig)
    loaded = load_model(path)
    assert isinstance(loaded, MultiStageModel) and loaded.config == model.config
    assert ("content_vectors.npy" in parts) == (loaded.content is not None) == (content == "auto")
    users = [*sorted(interactions.user_id.unique()), "nobody", "new2"]
    pd.testing.assert_frame_equal(
        recommend_rows(loaded, users, 5, history=interactions),
        recommend_rows(model, users, 5, history=interactions),
    )


def test_a_large_catalogs_content_source_is_searched_in_an_index(interactions, tmp_path):
    """Above ``content_exact_max_items`` the content source reads each user's nearest items
    from a content index (here a 44-item catalog is "large"): the candidates include them, a
    batch answers each user as if alone, the index is saved and loaded, and new items join
    it (the copy searched, the loaded index left as it was)."""
    model = fit(interactions, content_exact_max_items=10)
    assert model.content_index is not None and model.content_index.n_items == 44
    assert "from its flat index (fp32)" in model.source_plan()["content"]
    users = sorted(interactions.user_id.unique())[:8]
    batch = batch_of(model, interactions, users)
    full = model.sources.score_batch(
        batch, batch.seen, (), 0, model.sources.content_view(batch, batch.seen, 10)
    )
    profiles, (scores, ids) = full.content
    assert CONTENT not in full.dense and ids.shape == (8, 10)
    exact = content_scores(batch.seen, model.content)
    exact[batch.seen.nonzero()] = -np.inf
    for u in range(8):  # the index's nearest: exact search's, best first
        np.testing.assert_allclose(scores[u], np.sort(exact[u])[::-1][:10], rtol=1e-5)
    r, c = candidate_pairs(full, batch.seen, {CONTENT: 10})
    assert len(r) == 80 and not batch.seen[r, c].any()
    together = recommend_rows(model, [*users, "nobody"], 5, history=interactions)
    alone = pd.concat(
        [recommend_rows(model, [u], 5, history=interactions) for u in [*users, "nobody"]],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(together, alone)
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.content_index is not None and loaded.sources.content_index is not None
    pd.testing.assert_frame_equal(
        recommend_rows(loaded, users, 5, history=interactions), together.iloc[:40]
    )
    fresh = pd.DataFrame({"item_id": ["x1"], "title": ["x1"], "genres": ["G1|Drama"]})
    added = with_new_items(loaded, fresh)
    assert added.content_index.n_items == 45 and loaded.content_index.n_items == 44
    assert all(s.content_index is added.content_index for s in added.fold_sources)
    listed = recommend_frame(
        added, ["u1", "u5"], Request(k=1, candidates=["x1", "i2"]), history=interactions
    )
    assert listed.item_id.tolist() == ["x1", "x1"]  # cluster 1's new item over cluster 2's


def test_a_model_directory_of_the_old_kind_name_still_loads(interactions, tmp_path):
    """The kind was called "pipeline" before it was renamed "multistage": such a directory
    loads as the multi-stage model, and the old name still creates one."""
    model = fit(interactions)
    path = model.save(tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "kind": "pipeline"}))
    loaded = load_model(path)
    assert isinstance(loaded, MultiStageModel)
    users = sorted(interactions.user_id.unique())
    pd.testing.assert_frame_equal(
        recommend_rows(loaded, users, 5, history=interactions),
        recommend_rows(model, users, 5, history=interactions),
    )
    assert isinstance(create_model("pipeline"), MultiStageModel)


def test_config_accepts_nested_dicts_and_refuses_unknowns():
    cfg = MultiStageConfig(n_ease=7, ease={"l2": 3.0}, two_tower={"dim": 8}, gbdt={"rounds": 9})
    assert cfg.ease.l2 == 3.0 and cfg.two_tower.dim == 8 and cfg.gbdt.rounds == 9
    assert MultiStageConfig(**dataclasses.asdict(cfg)) == cfg
    with pytest.raises(TypeError):
        MultiStageConfig(gbdt={"no_such_field": 1})
    with pytest.raises(ValueError, match="ranker"):
        MultiStageConfig(ranker="forest")


# -- the injected fit callables and the optional two-tower source -----------------------
class SpyTrainer(StageTrainer):
    """Trains in process and records each call's arguments and result, by part."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {"two_towers": [], "ranker": []}
        self.onlys: list = []

    def two_towers(self, parts, *args):
        tags = []

        def recorded():  # the parts as the trainer takes them, their tags noted
            for train, tag, only in parts:
                tags.append(tag)
                self.onlys.append(only)
                yield train, tag, only

        result = super().two_towers(recorded(), *args)
        self.calls["two_towers"].append((tags, result))
        return result

    def ranker(self, *args):
        result = super().ranker(*args)
        self.calls["ranker"].append((args, result))
        return result


def test_a_two_tower_source_is_fitted_per_fold_and_adds_its_ann_candidates(interactions):
    spy = SpyTrainer()
    model = fit(interactions, n_two_tower=5, trainer=spy)
    ((tags, towers),) = spy.calls["two_towers"]  # every fit in one call (one Ray Train run)
    assert tags == ["fold-0", "fold-1", "fold-2", "all"]
    assert model.sources.two_tower is towers[-1]
    assert [s.two_tower for s in model.fold_sources] == towers[:3]
    users = sorted(interactions.user_id.unique())
    batch = batch_of(model, interactions, users)
    cands = model.candidates(batch, items=items_of(model, interactions))
    tower = model.sources.two_tower
    z_u, _ = tower.embed_users(batch.user_ids, batch.recent)
    seen = [np.flatnonzero(row) for row in batch.seen.toarray()]
    _, ann = tower.retrieve(z_u, 5, seen)
    assert all(set(ann[u][ann[u] >= 0]) <= set(c.codes) for u, c in enumerate(cands))
    col = FEATURES.index("two_tower")
    assert np.isfinite(cands[0].rows["x"][:, :, col]).all()
    assert model.item_vectors() is tower.item_embeddings  # diversity and reasons use them


@pytest.mark.parametrize("table", ["auto", "fp16"])
def test_a_continued_full_two_tower_starts_from_the_last_fold_and_trains_on_the_rest(
    interactions, table
):
    """``two_tower_full_fit="continue"``: the full fit's two-tower starts from the last fold's
    weights (each user's id row mapped, a user the fold lacked at zeros) and trains on the rows
    that fold did not: with no epoch it is the fold's tower (a half-precision user table too);
    with its epochs it moves on."""
    train = spread_over_days(with_noise(interactions)).reset_index(drop=True)
    # user u0's rows all come last: the last fold (everything before the last window) lacks u0
    train.loc[train.user_id == "u0", "timestamp"] += pd.Timedelta(days=400)
    spy = SpyTrainer()
    kw = dict(crossfit="time", n_two_tower=5, two_tower_full_fit="continue")
    tower = {**TINY["two_tower"], "epochs": 0, "user_table": table}
    fit(train, **kw, trainer=spy, two_tower=tower)
    ((tags, (_, fold, full)),) = spy.calls["two_towers"]
    assert tags == ["fold-0", "fold-1", "all"] and spy.onlys[:2] == [None, None]
    config = MultiStageConfig(**{**TINY, "crossfit": "time"})
    history, _ = list(MultiStageModel(config)._folds(train))[-1]
    assert np.array_equal(spy.onlys[2], ~train.index.isin(history.index))
    for name in ("item_tower.id.weight", "user_tower.history.weight", "item_tower.mlp.0.weight"):
        assert torch.equal(full.net.state_dict()[name], fold.net.state_dict()[name]), name
    ids = lambda m, u: m.net.user_tower.id.weight[m.user_ids.positions([u])[0] + 1]  # noqa: E731
    assert all(torch.equal(ids(full, u), ids(fold, u)) for u in sorted(set(history.user_id)))
    assert not ids(full, "u0").any() and "u0" not in set(history.user_id)
    spy = SpyTrainer()
    fit(train, **kw, trainer=spy)
    ((_, (_, fold, full)),) = spy.calls["two_towers"]
    fresh = int(spy.onlys[2].sum())  # the rows it trains on, less its validation share
    assert full.training_log["examples"] == fresh - int(fresh * full.config.val_share)
    assert fresh < len(train)
    moved = full.net.state_dict()["item_tower.mlp.0.weight"]
    assert not torch.equal(moved, fold.net.state_dict()["item_tower.mlp.0.weight"])
    with pytest.raises(ValueError, match="crossfit 'user-time' or 'time'"):
        MultiStageConfig(two_tower_full_fit="continue", crossfit="random")
    with pytest.raises(ValueError, match="two_tower_full_fit must be one of"):
        MultiStageConfig(two_tower_full_fit="warm")
    wrong = {**fold.net.state_dict(), "item_tower.id.weight": torch.zeros(3, 16)}
    with pytest.raises(ValueError, match="must share the catalog"):
        full.start_from(wrong, full.user_rows(fold))


def test_features_on_the_candidates_equal_their_whole_catalog_definitions(interactions):
    """Nothing after retrieval reads the whole catalog, and nothing changes for it: each
    fold's popularity rank, two-tower score and two-tower rank of every candidate equal what
    a (users x catalog) pass over the unseen items gives (ranks among the index's top
    ``n_two_tower``, the depth below them)."""
    depth = 5
    model = fit(with_noise(interactions), n_two_tower=depth)
    users = sorted(interactions.user_id.unique())
    batch = batch_of(model, interactions, users)
    cands = model.candidates(batch, items=items_of(model, interactions))
    seen = batch.seen.toarray() > 0
    col = {name: FEATURES.index(name) for name in FEATURES}

    def rank_feature(rank):
        return (1.0 / np.log2(np.asarray(rank, dtype=np.float64) + 2.0)).astype(np.float32)

    checked = 0
    for f, sources in enumerate(model.fold_sources):
        tower = sources.two_tower
        z_u, _ = tower.embed_users(batch.user_ids, batch.recent)
        dense = z_u @ tower.item_embeddings.T  # (U, n_items)
        for u, cand in enumerate(cands):
            unseen = ~seen[u]
            x = cand.rows["x"][f]
            pop = sources.popularity
            higher = [(pop[unseen] > pop[c]).sum() for c in cand.codes]
            assert np.array_equal(x[:, col["popularity_rank"]], rank_feature(higher))
            np.testing.assert_allclose(
                x[:, col["two_tower"]], dense[u, cand.codes], rtol=1e-6, atol=1e-6
            )
            above = [(dense[u, unseen] > dense[u, c]).sum() for c in cand.codes]
            expected = rank_feature(np.minimum(above, depth))
            assert np.array_equal(x[:, col["two_tower_rank"]], expected)
            checked += len(cand.codes)
    assert checked > 100


def test_catalog_over_ease_max_items_has_no_ease_part(interactions, tmp_path):
    model = fit(interactions, ease={"max_items": 40})  # 44 items with the cold ones
    assert model.sources.ease is None and all(s.ease is None for s in model.fold_sources)
    said = model.training_log["sources"]  # which sources it kept, and why
    assert said["ease"] == "off: 44 items > ease.max_items 40 (whole-catalog)"
    assert said["rp3"].startswith("on: top") and said["two_tower"] == "off: n_two_tower=0"
    users = sorted(interactions.user_id.unique())
    cands = model.candidates(
        batch_of(model, interactions, users), items=items_of(model, interactions)
    )
    assert np.isnan(cands[0].rows["x"][:, :, FEATURES.index("ease")]).all()
    recs = recommend_rows(model, users, 5, history=interactions)
    assert recs.groupby("user_id").size().eq(5).all() and np.isfinite(recs.score).all()
    path = model.save(tmp_path / "no-ease")
    assert not any("ease_B" in p for p in json.loads((path / "manifest.json").read_text())["parts"])
    pd.testing.assert_frame_equal(
        recommend_rows(load_model(path), users, 5, history=interactions), recs
    )


def test_with_store_context_the_ranker_reads_the_stores_features_and_needs_them(interactions):
    """The mean ratings come from the feature store's views (offline: the same build
    functions over the interactions); without the items' context a request is refused rather
    than ranked on missing values. Off by default: measured, they do not pay (docs/models.md)."""
    assert MultiStageModel(MultiStageConfig()).state_spec().context == []
    train = with_noise(interactions)
    model = fit(train, store_context=True)
    assert model.state_spec().context == [
        "user_activity:user_mean_rating",
        "item_stats:item_mean_rating",
    ]
    names = model.feature_names()
    assert names[len(FEATURES) : len(FEATURES) + 2] == ("user_mean_rating", "item_mean_rating")
    assert model.ranker.features == model.feature_names()
    users = sorted(train.user_id.unique())[:3]
    batch = batch_of(model, train, users)
    means = train.groupby("user_id").rating.mean()
    np.testing.assert_allclose(batch.features["user_mean_rating"], means[users], rtol=1e-6)
    items = items_of(model, train)
    item_means = train.groupby("item_id").rating.mean().reindex(model.item_ids)
    np.testing.assert_allclose(items["item_mean_rating"], item_means, rtol=1e-6)
    cands = model.candidates(batch, items=items)
    col = model.feature_names().index("item_mean_rating")
    np.testing.assert_allclose(
        cands[0].rows["x"][0, :, col], item_means.iloc[cands[0].codes], rtol=1e-6
    )
    with pytest.raises(RecsysError, match="items' context"):
        model.candidates(batch)
    recs = recommend_rows(model, users, 5, history=train)  # offline: computed from history
    assert recs.groupby("user_id").size().eq(5).all()


def test_a_rank_is_exact_down_to_the_depth_and_the_depth_below_it(monkeypatch):
    from recsys.models.multistage import ranker_inputs as sources

    rng = np.random.default_rng(0)
    scores = rng.standard_normal((3, 500))
    scores[:, :20] = -np.inf  # hidden items
    scores[1, 100:110] = scores[1, 99]  # a tie
    rows = np.repeat(np.arange(3), 40)
    cols = rng.integers(0, 500, 120)
    exact = np.array([(scores[r] > scores[r, c]).sum() for r, c in zip(rows, cols, strict=True)])

    def feature(rank):
        return (1.0 / np.log2(rank + 2.0)).astype(np.float32)

    # several score matrices in one call: each row's ranks among its own matrix's row
    flipped = -scores
    flipped[:, :20] = -np.inf
    other = np.array([(flipped[r] > flipped[r, c]).sum() for r, c in zip(rows, cols, strict=True)])
    both = np.stack([scores, flipped])
    expected = feature(np.stack([exact, other]))
    assert np.array_equal(sources._rank_features(both, rows, cols), expected)
    single = sources._rank_features(both.astype(np.float32), rows, cols)
    assert np.array_equal(single, expected)
    monkeypatch.setattr(sources, "RANK_DEPTH", 50)
    assert (exact < 50).any() and (exact >= 50).any()
    got = sources._rank_features(both, rows, cols)
    assert np.array_equal(got, feature(np.minimum(np.stack([exact, other]), 50)))


def test_the_ranker_learns_from_at_most_ranker_users_users_per_fold(interactions):
    model = fit(with_noise(interactions), ranker_users=5)
    every = fit(with_noise(interactions))
    assert model.training_log["ranker_rows"] < every.training_log["ranker_rows"]
    assert len(set(model._user_keys)) <= 5 * model.config.folds
    with pytest.raises(ValueError, match="ranker_users"):
        MultiStageConfig(ranker_users=-1)


def test_the_scale_benchmarks_model_ranks_two_tower_and_popular_items_fitted_in_time(
    interactions, tmp_path
):
    """``benchmarks/scale.py``'s model for a catalog too large for EASE: the two-tower's and
    the most popular items' candidates, one time window, a sample of users for the ranker."""
    from benchmarks.scale import index_variants, scalable_multistage

    train = spread_over_days(with_noise(interactions))
    model = scalable_multistage(TwoTowerConfig(**TINY["two_tower"]), ranker_users=5)
    users, items = side_tables()
    model.fit(train, users, items)
    assert model.sources.ease is None and model.sources.rp3 is None
    assert model.sources.two_tower is not None and model.fold_sources == []
    assert model.config.two_tower_full_fit == "continue"  # from the fold's weights
    assert 0 < len(model._user_keys) <= 5  # one window, five users' candidates
    assert model.training_log["ranker_positives"] > 0
    ids = sorted(train.user_id.unique())[:6] + ["nobody"]
    recs = recommend_rows(model, ids, 5, history=train)
    assert recs.groupby("user_id").size().eq(5).all()
    path = model.save(tmp_path / "scale")
    pd.testing.assert_frame_equal(recommend_rows(load_model(path), ids, 5, history=train), recs)
    # the same model served from other item indexes, measured, and the served one put back
    served = model.sources.two_tower.index
    held = train.groupby("user_id").tail(2)
    rows = index_variants(model, ids[:6], held, train, "flat:fp32,flat:int8")
    assert [(r["kind"], r["precision"]) for r in rows] == [("flat", "fp32"), ("flat", "int8")]
    assert rows[1]["bytes_per_item"] < rows[0]["bytes_per_item"]
    assert rows[0]["index_recall_at_100"] == 1.0 and 0 <= rows[1]["recall_at_100"] <= 1
    assert model.sources.two_tower.index is served


def test_more_draws_of_the_folds_teach_the_ranker_and_the_first_draw_serves(interactions):
    """``draws=2``: every training interaction is a label once per draw, under two different
    fold draws; the first draw's fits alone give the features at serving."""
    train = with_noise(interactions)
    one, two = fit(train), fit(train, draws=2)
    folds = list(two._folds(train))
    assert len(folds) == 2 * TINY["folds"]
    for draw in (folds[: TINY["folds"]], folds[TINY["folds"] :]):
        labels = pd.concat([labels for _, labels in draw])
        assert len(labels) == len(train) and not labels.index.duplicated().any()
    assert not folds[0][1].index.equals(folds[TINY["folds"]][1].index)  # another draw
    assert [f[1].index.tolist() for f in folds[: TINY["folds"]]] == [
        f[1].index.tolist() for f in one._folds(train)
    ]
    assert len(two.fold_sources) == TINY["folds"] == len(two.serving_fits())
    assert two.training_log["ranker_rows"] > 1.5 * one.training_log["ranker_rows"]
    with pytest.raises(ValueError, match="draws must be at least 1"):
        MultiStageConfig(draws=0)
