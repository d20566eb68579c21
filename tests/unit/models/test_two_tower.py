"""The two-tower model in-process: score, point-in-time examples, losses, learning, cold start,
persistence and the feature encoder. Tiny seeded data; never starts Ray."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recsys.config import RecsysError
from recsys.models import neural
from recsys.models.encoding import (
    AGE_EDGES,
    MAX_GENRES,
    FeatureEncoder,
    gather_history,
    history_windows,
    profile_samples,
)
from recsys.models.kinds import create_model, load_model
from recsys.models.neural import make_optimizers
from recsys.models.two_tower import TwoTower
from recsys.models.two_tower.towers import TwoTowerConfig, TwoTowerLoss, TwoTowerNet
from tests.helpers import cluster, recommend_rows, side_tables

# Small enough for well under a second per fit; lr high enough to learn in 20 tiny epochs.
TINY = dict(
    dim=16,
    id_dim=16,
    feat_dim=8,
    hidden=32,
    history_len=8,
    batch_size=64,
    epochs=20,
    patience=0,
    lr=0.01,
    sparse_lr=0.05,
)
CARD = {"age": len(AGE_EDGES) + 2, "gender": 3, "occupation": 5, "genre": 6, "year": 4}


def tiny_net(cfg: TwoTowerConfig, n_users: int = 10, n_items: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    table = np.zeros((n_items + 1, MAX_GENRES + 1), dtype=np.int64)
    table[1:, :2] = rng.integers(1, CARD["genre"], (n_items, 2))
    table[1:, MAX_GENRES] = rng.integers(1, CARD["year"], n_items)
    torch.manual_seed(seed)
    return TwoTowerNet(n_users, n_items, CARD, table, cfg)


def tiny_batch(n_users: int = 10, n_items: int = 12, size: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    iid = torch.randint(1, n_items + 1, (size,), generator=g)
    iid[1] = iid[0]  # an accidental hit: the same item twice in one batch
    return {
        "uid": torch.randint(1, n_users + 1, (size,), generator=g),
        "iid": iid,
        "ufeat": torch.stack(
            [
                torch.randint(0, CARD["age"], (size,), generator=g),
                torch.randint(0, CARD["gender"], (size,), generator=g),
                torch.randint(0, CARD["occupation"], (size,), generator=g),
            ],
            dim=1,
        ),  # (size, 3)
        "hist": torch.randint(0, n_items + 1, (size, 5), generator=g),  # (size, 5), 0 = padding
    }


# -- the served score ---------------------------------------------------------------------
def test_score_is_sigmoid_of_the_tower_dot_product():
    cfg = TwoTowerConfig(**TINY)
    net = tiny_net(cfg).eval()
    batch = tiny_batch()
    with torch.no_grad():
        z_u = net.user_tower(batch["uid"], batch["ufeat"], batch["hist"])  # (B, dim)
        z_i = net.item_tower(batch["iid"])  # (B, dim)
        score = net(batch)
    assert score.shape == (8,)
    torch.testing.assert_close(score, torch.sigmoid((z_u * z_i).sum(dim=1)))
    # Both towers are L2-normalised and scaled by 1/sqrt(temperature).
    expected = torch.full((8,), cfg.temperature**-0.5)
    torch.testing.assert_close(z_u.norm(dim=1), expected)
    torch.testing.assert_close(z_i.norm(dim=1), expected)
    assert ((score > 0) & (score < 1)).all()


# -- point-in-time training examples ------------------------------------------------------
def test_history_windows_exact_small_case():
    users = np.array([1, 1, 1, 2, 2])
    items = np.array([10, 11, 12, 20, 21])
    out = history_windows(users, items, 2)
    np.testing.assert_array_equal(out, [[0, 0], [10, 0], [11, 10], [0, 0], [20, 0]])


def test_history_windows_never_see_own_or_later_items():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(1, 41), rng.integers(1, 12, 40))  # grouped, time-ordered
    items = np.arange(1, len(users) + 1)  # item code = row + 1, so a code names its row
    n = 5
    out = history_windows(users, items, n)
    assert out.shape == (len(users), n)
    for row in range(len(users)):
        earlier = [r for r in range(max(0, row - n), row) if users[r] == users[row]]
        got = out[row][out[row] > 0] - 1  # the rows this window looked at
        assert got.tolist() == earlier[::-1]  # exactly the previous rows, most recent first
        assert (got < row).all() and (users[got] == users[row]).all()


def test_recent_examples_are_point_in_time_even_from_shuffled_rows(interactions):
    model = TwoTower(TwoTowerConfig(**{**TINY, "history_mode": "recent", "history_len": 4}))
    train = model.prepare_base(interactions.sample(frac=1.0, random_state=1), None)
    ex = model.prepare(train, None, None)
    when = interactions.set_index(["user_id", "item_id"])["timestamp"]
    n_hist = sum(1 for k in ex if k.startswith("h"))
    assert n_hist == 4 and len(ex["uid"]) == len(interactions)
    for r in range(len(ex["uid"])):
        user = model.user_ids[ex["uid"][r] - 1]
        now = when[(user, model.item_ids[ex["iid"][r] - 1])]
        hist = [ex[f"h{j}"][r] for j in range(n_hist) if ex[f"h{j}"][r] > 0]
        times = [when[(user, model.item_ids[c - 1])] for c in hist]
        assert all(t < now for t in times), (user, r)  # never its own item, nothing later
        assert times == sorted(times, reverse=True)  # most recent first
        n_before = int((when.loc[user] < now).sum())
        assert len(hist) == min(4, n_before)


def test_profile_samples_other_rows_of_the_same_user():
    users = np.repeat([1, 2, 3, 4], [5, 1, 3, 2])
    pos = profile_samples(users, 20, seed=0)
    assert pos.shape == (len(users), 20)
    rows = np.arange(len(users))[:, None]
    single = users == 2
    assert (pos[single] == -1).all()
    multi = pos[~single]
    assert (multi >= 0).all()
    assert (multi != rows[~single]).all()  # never the row itself
    assert (users[multi] == users[~single][:, None]).all()  # within the user
    # With 20 draws each row sees all of its user's other rows (a random profile, not a prefix).
    assert set(pos[0]) == {1, 2, 3, 4}
    np.testing.assert_array_equal(pos, profile_samples(users, 20, seed=0))  # seeded
    # computed a few rows at a time (bounded memory), the same positions
    np.testing.assert_array_equal(pos, profile_samples(users, 20, seed=0, chunk_rows=3))
    items = np.arange(len(users)) + 1
    hist = gather_history(pos, items, chunk_rows=4)
    np.testing.assert_array_equal(hist, np.where(pos >= 0, items[np.maximum(pos, 0)], 0))


# -- losses and optimisers ----------------------------------------------------------------
LOSSES = {
    "softmax+logq": dict(loss="softmax", logq_correction=True),
    "softmax": dict(loss="softmax", logq_correction=False),
    "softmax+uniform": dict(loss="softmax", extra_negatives=6),
    "bce": dict(loss="bce", bce_negatives=3),
}
SPARSE = ("user_tower.id.weight", "user_tower.history.weight", "item_tower.id.weight")


@pytest.fixture(params=[False, True], ids=["dense-rows", "sparse"])
def sparse_ids(request, monkeypatch) -> bool:
    """Id tables as small ones are (dense gradients) or as large ones (sparse gradients), both
    trained by RowAdam: the tables tiny_net builds after it takes either."""
    if request.param:
        monkeypatch.setattr(neural, "DENSE_GRAD_MAX_ROWS", 0)
    return request.param


@pytest.mark.parametrize("variant", list(LOSSES))
def test_losses_are_finite_with_sparse_and_dense_grads(variant, sparse_ids):
    cfg = TwoTowerConfig(**{**TINY, **LOSSES[variant], "id_dropout": 0.0})
    net = tiny_net(cfg)
    counts = np.arange(12, dtype=float) ** 2  # skewed popularity
    loss_fn = TwoTowerLoss(net, counts, cfg)
    torch.manual_seed(0)
    loss = loss_fn(tiny_batch())
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    params = dict(loss_fn.named_parameters())
    for name in SPARSE:
        grad = params[f"net.{name}"].grad
        assert grad is not None and grad.is_sparse == sparse_ids, name
    dense = {n: p for n, p in params.items() if n.removeprefix("net.") not in SPARSE}
    assert all(p.grad is not None and not p.grad.is_sparse for p in dense.values())
    assert params["net.user_tower.mlp.0.weight"].grad.abs().sum() > 0
    assert params["net.item_tower.mlp.2.weight"].grad.abs().sum() > 0


def test_make_optimizers_row_wise_adam_for_id_tables_adamw_for_the_rest(sparse_ids):
    cfg = TwoTowerConfig(**TINY)
    loss_fn = TwoTowerLoss(tiny_net(cfg), np.ones(12), cfg)
    opts = make_optimizers(loss_fn, lr=0.01, sparse_lr=0.05, weight_decay=1e-5)
    assert [type(o) for o in opts] == [neural.RowAdam, torch.optim.AdamW]
    named = dict(loss_fn.named_parameters())
    in_opt = [{id(p) for g in o.param_groups for p in g["params"]} for o in opts]
    assert in_opt[0] == {id(named[f"net.{n}"]) for n in SPARSE}
    assert in_opt[1] == {id(p) for n, p in named.items() if n.removeprefix("net.") not in SPARSE}
    assert opts[0].param_groups[0]["lr"] == 0.05 and opts[1].param_groups[0]["lr"] == 0.01
    # One real step: AdamW refuses sparse grads, so this fails if the split is wrong.
    before = {n: p.detach().clone() for n, p in named.items()}
    loss_fn(tiny_batch()).backward()
    for opt in opts:
        opt.step()
    assert all(not torch.equal(before[f"net.{n}"], named[f"net.{n}"]) for n in SPARSE)
    assert not torch.equal(
        before["net.user_tower.mlp.0.weight"], named["net.user_tower.mlp.0.weight"]
    )


@pytest.mark.parametrize("sparse", [False, True], ids=["dense-grad", "sparse-grad"])
def test_row_adam_is_sparse_adams_update(sparse):
    """The same table, the same lookups (repeated ids among them), step after step: RowAdam
    on a dense or a sparse gradient leaves the weights SparseAdam leaves; a row no batch
    looked up stays as it was."""
    torch.manual_seed(0)
    ours = neural.MeanBag(50, 8, sparse=sparse)
    stock = torch.nn.EmbeddingBag(50, 8, mode="mean", padding_idx=0, sparse=True)
    stock.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    opts = [neural.RowAdam(ours.parameters(), lr=0.05)]
    opts.append(torch.optim.SparseAdam(stock.parameters(), lr=0.05))
    for step in range(5):
        ids = torch.randint(0, 40, (16, 4), generator=torch.Generator().manual_seed(step))
        for table, opt in zip((ours, stock), opts, strict=True):
            opt.zero_grad(set_to_none=True)
            table(ids).pow(2).sum().backward()
            opt.step()
        assert ours.weight.grad.is_sparse == sparse
    torch.testing.assert_close(ours.weight, stock.weight, rtol=1e-5, atol=1e-6)
    assert torch.equal(ours.weight[40:], start[40:])  # never looked up: as it was
    assert torch.equal(ours.weight[0], torch.zeros(8))  # padding: zero, never trained
    assert not torch.equal(ours.weight[1:40], start[1:40])


def test_mean_bag_is_the_padded_mean_embedding_bag():
    """MeanBag starts from EmbeddingBag's weights for the same seed (the padding row zero) and
    gives its means (padding left out, a row of padding only → zeros) and its gradient."""
    for sparse in (False, True):
        torch.manual_seed(3)
        bag = torch.nn.EmbeddingBag(30, 8, mode="mean", padding_idx=0, sparse=sparse)
        torch.manual_seed(3)
        ours = neural.MeanBag(30, 8, sparse=sparse)
        assert torch.equal(ours.weight, bag.weight)
        ids = torch.randint(0, 25, (6, 5), generator=torch.Generator().manual_seed(1))
        ids[0], ids[1, 2:], ids[2] = 0, 0, torch.tensor([4, 4, 4, 7, 0])
        outputs = [table(ids) for table in (bag, ours)]
        torch.testing.assert_close(outputs[1], outputs[0])
        assert torch.equal(outputs[1][0], torch.zeros(8))
        for out in outputs:
            out.pow(2).sum().backward()
        grads = [t.weight.grad.to_dense() for t in (bag, ours)]
        torch.testing.assert_close(grads[1], grads[0])


def test_shares_bag_is_the_mean_embedding_bag():
    """SharesBag starts from EmbeddingBag's weights for the same seed, gives its means (padding
    left out, a row of padding only → zeros) and its gradient, zero on rows no id named."""
    torch.manual_seed(3)
    bag = torch.nn.EmbeddingBag(30, 8, mode="mean", padding_idx=0)
    torch.manual_seed(3)
    shares = neural.SharesBag(30, 8)
    assert torch.equal(shares.weight, bag.weight)
    ids = torch.randint(0, 25, (6, 5), generator=torch.Generator().manual_seed(1))
    ids[0] = 0  # padding only
    ids[1, 2:] = 0
    ids[2] = torch.tensor([4, 4, 4, 7, 0])  # repeats count as many times as they appear
    outputs = [table(ids) for table in (bag, shares)]
    torch.testing.assert_close(outputs[1], outputs[0])
    assert torch.equal(outputs[1][0], torch.zeros(8))
    for out in outputs:
        out.pow(2).sum().backward()
    torch.testing.assert_close(shares.weight.grad, bag.weight.grad)
    unnamed = torch.ones(30, dtype=torch.bool)
    unnamed[ids.flatten()] = False
    unnamed[0] = True
    assert not shares.weight.grad[unnamed].any() and shares.weight.grad[~unnamed].any(dim=1).all()


def test_id_table_picks_the_bag_for_the_table_and_the_history():
    """The shares product on a small table with long bags; EmbeddingBag where the bags are
    short for the table; sparse gradients and MeanBag past DENSE_GRAD_MAX_ROWS; all trained
    row-wise."""
    tables = [
        neural.id_table(1_683, 8, bag_len=200),
        neural.id_table(1_683, 8, bag_len=20),
        neural.id_table(neural.DENSE_GRAD_MAX_ROWS + 1, 8, bag_len=10_000),
        neural.id_table(1_683, 8),
    ]
    assert [type(t).__name__ for t in tables] == [
        "SharesBag",
        "EmbeddingBag",
        "MeanBag",
        "Embedding",
    ]
    assert tables[2].sparse and not tables[1].sparse
    assert all(t.row_sparse for t in tables)
    opts = neural.make_optimizers(torch.nn.ModuleList(tables), 0.01, 0.05)
    assert [type(o).__name__ for o in opts] == ["RowAdam"]


@pytest.mark.parametrize("logq", [True, False])
def test_in_batch_softmax_matches_its_definition(logq):
    cfg = TwoTowerConfig(**{**TINY, "logq_correction": logq})
    counts = np.arange(12, dtype=float) ** 2
    loss_fn = TwoTowerLoss(tiny_net(cfg), counts, cfg).eval()  # eval: no id dropout
    batch = tiny_batch()
    with torch.no_grad():
        z_u, z_i = loss_fn.net.user(batch), loss_fn.net.item_tower(batch["iid"])
        logits = z_u @ z_i.T  # (B, B)
        if logq:
            q = (counts + 1) / (counts + 1).sum()
            logits = logits - torch.as_tensor(np.log(q), dtype=torch.float)[batch["iid"] - 1]
        # Another row's copy of the positive item is not a negative (rows 0 and 1 share one).
        same = batch["iid"][None, :] == batch["iid"][:, None]
        hits = same & ~torch.eye(8, dtype=torch.bool)
        assert hits[0, 1] and hits[1, 0]
        logits[hits] = float("-inf")
        expected = F.cross_entropy(logits, torch.arange(8))
        got = loss_fn(batch)
    torch.testing.assert_close(got, expected)


# -- learning and cold start --------------------------------------------------------------
def test_fit_learns_the_clusters(interactions):
    model = create_model("two_tower", TINY).fit(interactions)
    users = sorted(interactions.user_id.unique())
    recs = recommend_rows(model, users, 10, history=interactions, exclude_seen=False)
    assert recs.groupby("user_id").size().eq(10).all()
    # Chance is 1/4; each cluster has 10 items, so a perfect model fills the top-10 with them.
    assert (cluster(recs.item_id) == cluster(recs.user_id)).mean() > 0.6
    # The 2 unseen items of a user's cluster among 32 unseen: chance is about 6%.
    unseen = recommend_rows(model, users, 2, history=interactions)
    assert (cluster(unseen.item_id) == cluster(unseen.user_id)).mean() > 0.5
    seen = set(zip(interactions.user_id, interactions.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(unseen.user_id, unseen.item_id, strict=True))
    # The ranking score is the logit z_u·z_i: its sigmoid is what the served module returns.
    row = recs.iloc[0]
    z_u = model.user_embeddings([row.user_id], interactions)[0]
    z_i = model.item_embeddings[model._item_index[row.item_id]]
    assert np.isclose(row.score, z_u @ z_i, atol=1e-5)


def test_candidates_come_from_the_item_index_at_its_precision(interactions):
    """The served candidates are the index's: with the exact fp32 index, each user's unseen
    items by z_u·z_i, as a pass over the whole catalog orders them; an int8 index returns its
    own (what the manifest's measured recall describes)."""
    from recsys.state.offline import states_from_interactions

    model = create_model("two_tower", TINY).fit(interactions)
    users = sorted(interactions.user_id.unique())
    batch = model.encode(states_from_interactions(interactions, users, model.config.history_len))
    model.n_candidates = 10
    got = model.candidates(batch)
    dense = model._score(batch)
    dense[batch.seen.toarray() > 0] = -np.inf
    for u, cand in enumerate(got):
        order = np.argsort(-dense[u], kind="stable")[:10]
        assert cand.known and set(cand.codes) == set(order)
        np.testing.assert_allclose(cand.scores, dense[u, cand.codes], atol=1e-5)
    int8 = dataclasses.replace(model.config.index, precision="int8")
    model.index = type(model.index).build(model.item_embeddings, int8)
    assert model.index_info()["precision"] == "int8"
    assert (
        model.candidates(batch)[0].codes.tolist()
        == model.retrieve(
            model.embed_users(batch.user_ids[:1], batch.recent[:1])[0],
            10,
            [batch.seen[0].indices],
        )[1][0].tolist()
    )


def test_the_item_index_measures_its_recall_on_the_training_users(interactions, monkeypatch):
    """The index a fit builds is measured on real queries: a seeded sample of the training
    examples' users (their ids, features and histories), embedded by the trained user tower;
    the sample is let go once the index is built."""
    from recsys.models.two_tower import model as module

    seen = []
    build = module.ItemIndex.build

    def spy(items, config=None, query_sample=None):
        seen.append(query_sample)
        return build(items, config, query_sample)

    monkeypatch.setattr(module.ItemIndex, "build", spy)
    model = create_model("two_tower", TINY).fit(interactions)
    (queries,) = seen
    n = min(model.config.index.recall_queries, len(interactions))  # an example per row
    assert queries.shape == (n, model.config.dim)
    norms = np.linalg.norm(queries, axis=1) * model.config.temperature**0.5
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)  # user-tower outputs, not item copies
    assert model._query_rows is None


@pytest.fixture
def with_tables(interactions):
    users, items = side_tables()
    model = create_model("two_tower", TINY).fit(interactions, users, items)
    return model, interactions


def test_cold_user_from_side_features_only(with_tables):
    model, train = with_tables
    new = [f"new{c}" for c in range(4)]
    recs = recommend_rows(model, new, 5, history=train)
    popular = recommend_rows(model, ["nobody"], 5, history=train)
    assert recs.groupby("user_id").size().eq(5).all()
    for user in new:
        assert recs[recs.user_id == user].item_id.tolist() != popular.item_id.tolist()
    # Occupation, age and the items' genres give the cluster away; chance is 1/4.
    assert (cluster(recs.item_id) == cluster(recs.user_id)).mean() >= 0.6


def test_unseen_user_with_history_uses_it(interactions):
    # Without side tables no user has features, so a new user with history is in distribution.
    model = create_model("two_tower", TINY).fit(interactions)
    history = pd.DataFrame({"user_id": "stranger", "item_id": ["i1", "i5", "i9", "i13"]})
    recs = recommend_rows(model, ["stranger"], 4, history=history)
    assert len(recs) == 4 and not set(recs.item_id) & set(history.item_id)
    assert (cluster(recs.item_id) == 1).mean() >= 0.75  # chance 1/4


def test_unseen_user_with_history_and_no_features_is_not_a_crash(with_tables):
    model, train = with_tables
    history = pd.DataFrame({"user_id": "stranger", "item_id": ["i1", "i5", "i9", "not-an-item"]})
    recs = recommend_rows(model, ["stranger"], 4, history=history)
    popular = recommend_rows(model, ["nobody"], 4, history=history)
    assert len(recs) == 4 and not set(recs.item_id) & set(history.item_id)
    assert recs.item_id.tolist() != popular.item_id.tolist()  # scored by the towers


def test_unknown_user_without_anything_gets_popularity(with_tables):
    model, train = with_tables
    recs = recommend_rows(model, ["nobody"], 5, history=train)
    popular = train.item_id.value_counts()
    assert recs.score.tolist() == popular.iloc[:5].astype(float).tolist()
    assert popular[recs.item_id].tolist() == popular.iloc[:5].tolist()


def test_cold_item_gets_an_embedding_from_its_features(with_tables):
    model, train = with_tables
    cold = [f"i{40 + c}" for c in range(4)]  # in the items table, never interacted with
    assert set(cold) <= set(model.item_ids) and len(model.item_ids) == 44
    idx = [model._item_index[i] for i in cold]
    assert (model.item_popularity[idx] == 0).all()
    emb = model.item_embeddings[idx]
    assert np.isfinite(emb).all() and (np.linalg.norm(emb, axis=1) > 0).all()
    # Its genres/year put it with its cluster: each cluster's users prefer their own cold item.
    users = sorted(train.user_id.unique())
    scores = model.user_embeddings(users, train) @ emb.T  # (users, 4)
    own = cluster(pd.Series(users)).to_numpy()
    assert (scores.argmax(axis=1) == own).mean() > 0.5  # chance 1/4
    # And it can be recommended: it is ranked, with a finite score, like any other item.
    recs = recommend_rows(model, users[:4], len(model.item_ids), history=None, exclude_seen=False)
    assert set(cold) <= set(recs.item_id) and np.isfinite(recs.score).all()


# -- persistence --------------------------------------------------------------------------
def test_save_load_round_trip(with_tables, tmp_path):
    model, train = with_tables
    users = [*sorted(train.user_id.unique()), "new0", "nobody"]
    before = recommend_rows(model, users, 5, history=train)
    path = model.save(tmp_path / "m", data_checksum="abc")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["kind"] == "two_tower" and manifest["n_items"] == 44
    assert manifest["config"] == dataclasses.asdict(model.config)
    assert all((path / part).exists() for part in manifest["parts"])
    loaded = load_model(path)
    assert isinstance(loaded, TwoTower) and loaded.config == model.config
    np.testing.assert_array_equal(loaded.item_embeddings, model.item_embeddings)
    pd.testing.assert_frame_equal(recommend_rows(loaded, users, 5, history=train), before)


# -- the feature encoder ------------------------------------------------------------------
def test_age_buckets():
    ages = [10, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 80, None]
    users = pd.DataFrame({"user_id": [f"u{j}" for j in range(len(ages))], "age": ages})
    enc = FeatureEncoder.fit(users, None)
    codes = enc.codes_of_users(users.user_id.to_numpy())[:, 0]
    assert codes.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 0]
    assert codes.max() < enc.cardinalities["age"]


def test_unknown_users_and_categories_map_to_zero():
    users = pd.DataFrame(
        {
            "user_id": ["a", "b", "c"],
            "age": [30, None, 60],
            "gender": ["M", "F", None],
            "occupation": ["writer", "artist", ""],
        }
    )
    enc = FeatureEncoder.fit(users, None)
    assert enc.genders == {"F": 1, "M": 2} and enc.occupations == {"artist": 1, "writer": 2}
    codes = enc.codes_of_users(np.array(["c", "ghost", "a", "b"], dtype=object))
    np.testing.assert_array_equal(codes, [[7, 0, 0], [0, 0, 0], [3, 2, 2], [0, 1, 1]])
    assert enc.cardinalities == {"age": 8, "gender": 3, "occupation": 3, "genre": 1, "year": 1}
    empty = FeatureEncoder.fit(None, None)
    np.testing.assert_array_equal(empty.codes_of_users(np.array(["a"], dtype=object)), [[0, 0, 0]])


def test_item_table_genre_and_year_codes(tmp_path):
    items = pd.DataFrame(
        {
            "item_id": ["x", "y", "z", "x"],
            "genres": ["Drama|Action", "Comedy", "A|B|C|D|E|F|G|Action", "Horror"],
            "release_year": [1995, 1997, 2001, 1950],
        }
    )
    enc = FeatureEncoder.fit(None, items)
    assert list(enc.genres) == sorted([*"ABCDEFG", "Action", "Comedy", "Drama", "Horror"])
    assert list(enc.genres.values()) == list(range(1, 12))  # 0 is "unknown"
    assert enc.years == {"1950": 1, "1995": 2, "2000": 3}
    # The catalog order, not the table's; "w" has no side row; "x" keeps its first row.
    table = enc.item_table(np.array(["w", "x", "y", "z"], dtype=object), items)
    assert table.shape == (5, MAX_GENRES + 1)
    assert (table[0] == 0).all() and (table[1] == 0).all()  # padding row; an item without side
    g = enc.genres
    assert table[2].tolist() == [g["Drama"], g["Action"], 0, 0, 0, 0, 2]
    assert table[3].tolist() == [g["Comedy"], 0, 0, 0, 0, 0, 2]  # 1997 → the 1995 bucket
    assert table[4].tolist() == [g[c] for c in "ABCDEF"] + [3]  # at most MAX_GENRES genres
    # Unknown genres and years (not in the fitted vocabulary) are 0, not a crash.
    later = pd.DataFrame({"item_id": ["n"], "genres": ["Western|Drama"], "release_year": [1900]})
    assert enc.item_table(np.array(["n"], dtype=object), later)[1].tolist() == [
        0,
        g["Drama"],
        0,
        0,
        0,
        0,
        0,
    ]
    enc.save(tmp_path)
    again = FeatureEncoder.load(tmp_path)
    assert again.genres == enc.genres and again.years == enc.years


def test_users_table_with_a_repeated_id_does_not_crash_fit(interactions):
    users, items = side_tables()
    users = pd.concat([users, users.iloc[:1]], ignore_index=True)
    model = create_model("two_tower", {**TINY, "epochs": 1}).fit(interactions, users, items)
    assert len(recommend_rows(model, ["u0"], 3, history=interactions)) == 3


# -- the user table's precision -----------------------------------------------------------
def test_a_trained_user_table_is_kept_at_its_precision_and_served_as_evaluated(
    interactions, tmp_path
):
    """``user_table="fp16"``: after training the id table is half precision, the scores are
    the fp32 model's with its table rounded, and the saved model loads and serves the same."""
    users = [*sorted(interactions.user_id.unique()), "nobody"]
    half = create_model("two_tower", {**TINY, "user_table": "fp16"}).fit(interactions)
    table = half.net.user_tower.id.weight
    assert table.dtype == torch.float16 and not table.requires_grad
    full = create_model("two_tower", TINY).fit(interactions)  # "auto": a small table, fp32
    assert full.net.user_tower.id.weight.dtype == torch.float32
    assert torch.equal(full.net.user_tower.id.weight.half(), table)  # the same training
    rounded = {**full.net.state_dict(), "user_tower.id.weight": table.float()}
    full.net.load_state_dict(rounded)
    np.testing.assert_allclose(
        half.user_embeddings(users, interactions), full.user_embeddings(users, interactions)
    )
    before = recommend_rows(half, users, 5, history=interactions)
    loaded = load_model(half.save(tmp_path / "m", data_checksum="abc"))
    assert loaded.net.user_tower.id.weight.dtype == torch.float16
    pd.testing.assert_frame_equal(recommend_rows(loaded, users, 5, history=interactions), before)
    with pytest.raises(RecsysError, match="user_table"):
        TwoTowerConfig(user_table="int4")


def test_auto_halves_only_a_large_user_table():
    from recsys.models.two_tower.towers import user_table_dtype

    cfg = TwoTowerConfig()
    assert user_table_dtype(cfg, neural.DENSE_GRAD_MAX_ROWS) == torch.float32
    assert user_table_dtype(cfg, neural.DENSE_GRAD_MAX_ROWS + 1) == torch.float16
    assert user_table_dtype(TwoTowerConfig(user_table="fp32"), 10**7) == torch.float32
