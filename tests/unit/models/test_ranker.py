"""The ranker in-process: the DCN-v2 cross layer, the wide-prior start, the listwise and BCE
losses, grouped nDCG, whole-user batches, learning, the epoch -1 rule and persistence.
Tiny seeded tables; never starts Ray."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.encoding import MAX_GENRES
from recsys.models.neural import fit_in_memory
from recsys.models.rankers.dcn import (
    DENSE_FEATURES,
    CrossLayer,
    DCNRanker,
    RankerConfig,
    RankerLoss,
    RankerNet,
    grouped_ndcg,
    to_batch,
    user_batches,
)

CARD = {"age": 4, "gender": 3, "occupation": 4, "genre": 5, "year": 3}
N_ITEMS = 30
PRIOR = DENSE_FEATURES.index("ease_rank")  # the feature the wide part starts from
SIGNAL = DENSE_FEATURES.index("two_tower")  # a feature the prior does not use
# Small and quick to train: each fit below takes well under a second.
TINY = dict(
    id_dim=4,
    feat_dim=4,
    hidden=16,
    cross_layers=1,
    dropout=0.0,
    lr=0.01,
    sparse_lr=0.01,
    patience=0,
    val_share=0.25,
    users_per_batch=8,
    seed=0,
)


def item_table(n_items: int = N_ITEMS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = np.zeros((n_items + 1, MAX_GENRES + 1), dtype=np.int64)  # row 0: padding
    table[1:, :2] = rng.integers(1, CARD["genre"], (n_items, 2))
    table[1:, MAX_GENRES] = rng.integers(1, CARD["year"], n_items)
    return table


def make_ranker(**overrides) -> DCNRanker:
    return DCNRanker(RankerConfig(**{**TINY, **overrides}), N_ITEMS, CARD, item_table())


def candidate_table(
    signal: int, n_users: int = 120, per_user: int = 15, n_pos: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """The pipeline's candidate rows, synthetic: each user's positives are their ``n_pos``
    candidates with the highest dense feature ``signal``; everything else is noise."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    user_idx = np.repeat(np.arange(n_users), per_user)
    rows = {
        "user": np.array([f"u{u}" for u in user_idx], dtype=object),
        "iid": np.concatenate(
            [rng.choice(N_ITEMS, per_user, replace=False) + 1 for _ in range(n_users)]
        ),
        "f0": rng.integers(0, CARD["age"], n),
        "f1": rng.integers(0, CARD["gender"], n),
        "f2": rng.integers(0, CARD["occupation"], n),
    }
    dense = rng.normal(size=(n, len(DENSE_FEATURES))) * 3.0 + 1.0  # (n, n_dense)
    rows |= {f"d{j}": dense[:, j].astype(np.float32) for j in range(len(DENSE_FEATURES))}
    rows["label"] = top_per_user(user_idx, dense[:, signal], n_pos)
    return rows


def top_per_user(users: np.ndarray, values: np.ndarray, n_pos: int) -> np.ndarray:
    """1.0 for each user's ``n_pos`` rows with the highest ``values``."""
    order = np.lexsort((-values, users))
    u = users[order]
    start = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    rank = np.arange(len(u)) - np.repeat(start, np.diff(np.r_[start, len(u)]))
    label = np.zeros(len(u), dtype=np.float32)
    label[order[rank < n_pos]] = 1.0
    return label


def fit_in_process(ranker: DCNRanker, fit_rows: dict, val) -> dict:
    loss = ranker.loss_module()
    return fit_in_memory(ranker, loss, fit_rows, val)


class FixedLogits(nn.Module):
    """Stands in for the net: the batch's ``x`` column is the logit (to check the loss alone)."""

    def logits(self, batch):
        return batch["x"]


# -- the network ----------------------------------------------------------------------------
def test_cross_layer_is_x0_times_linear_of_x_plus_x():
    layer = CrossLayer(3)
    with torch.no_grad():
        layer.linear.weight.copy_(
            torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0], [0.5, 0.5, 0.5]])
        )
        layer.linear.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    x0 = torch.tensor([[1.0, 2.0, 3.0]])
    x = torch.tensor([[2.0, -1.0, 4.0]])
    # W x + b = [2 + 8, 1 + 1, 0.5 * 5 - 1] = [10, 2, 1.5]; x0 ⊙ that + x:
    expected = torch.tensor([[1.0 * 10 + 2, 2.0 * 2 - 1, 3.0 * 1.5 + 4]])
    torch.testing.assert_close(layer(x0, x), expected)


@pytest.mark.parametrize("prior_weight", [2.0, 0.5])
def test_untrained_net_scores_the_standardised_prior(prior_weight):
    cfg = RankerConfig(**{**TINY, "prior_weight": prior_weight})
    torch.manual_seed(0)
    net = RankerNet(N_ITEMS, CARD, item_table(), DENSE_FEATURES, cfg).eval()
    mean = torch.arange(len(DENSE_FEATURES), dtype=torch.float32)
    std = torch.linspace(0.5, 3.0, len(DENSE_FEATURES))
    net.dense_mean.copy_(mean)
    net.dense_std.copy_(std)
    rows = candidate_table(SIGNAL, n_users=4, per_user=10)
    batch = to_batch({k: v for k, v in rows.items() if k != "user"})
    with torch.no_grad():
        got = net.logits(batch)  # (B,)
        deep = net.mlp(torch.zeros(1, net.mlp[0].in_features))[0, 0]  # the last layer's bias
    # Only the prior feature is weighted; the deep part's last layer starts at zero, so its
    # output is one constant for every row whatever the ids, side features and other scores.
    assert (net.wide.weight[0, np.arange(len(DENSE_FEATURES)) != PRIOR] == 0).all()
    assert (net.mlp[-1].weight == 0).all()
    standardised = (batch["dense"][:, PRIOR] - mean[PRIOR]) / std[PRIOR]
    expected = prior_weight * standardised + net.wide.bias[0] + deep
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(net(batch), torch.sigmoid(got))  # the served module: σ(logit)


# -- the losses -----------------------------------------------------------------------------
def listwise_by_hand(x: np.ndarray, group: np.ndarray, label: np.ndarray) -> float:
    """-Σ over positives of log softmax within the positive's group, over the positives."""
    total = 0.0
    for g in np.unique(group):
        xs, ys = x[group == g], label[group == g]
        log_softmax = xs - np.log(np.exp(xs).sum())
        total -= (ys * log_softmax).sum()
    return total / label.sum()


def test_listwise_loss_is_a_softmax_over_each_users_candidates():
    # Two users, interleaved rows, group ids that are neither 0-based nor contiguous.
    x = np.array([1.0, -0.5, 0.3, 2.0, 0.0, -1.0, 0.7])
    group = np.array([7, 3, 7, 3, 7, 3, 7])
    label = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    loss = RankerLoss(FixedLogits(), "listwise")

    def value(logits: np.ndarray) -> torch.Tensor:
        batch = {
            "x": torch.tensor(logits, dtype=torch.float32),
            "group": torch.tensor(group),
            "label": torch.tensor(label, dtype=torch.float32),
        }
        return loss(batch)

    expected = listwise_by_hand(x, group, label)
    # By hand for user 3: logits (-0.5, 2, -1), positives 2 and -1.
    lse3 = np.log(np.exp(-0.5) + np.exp(2.0) + np.exp(-1.0))
    lse7 = np.log(np.exp(1.0) + np.exp(0.3) + np.exp(0.0) + np.exp(0.7))
    assert expected == pytest.approx(
        ((lse7 - 1.0) + (lse7 - 0.0) + (lse3 - 2.0) + (lse3 + 1.0)) / 4
    )
    assert value(x).item() == pytest.approx(expected, rel=1e-6)
    # A constant per user changes nothing (a softmax within each user); a large one overflows
    # nothing either (the loss subtracts each group's peak).
    shifted = x + np.where(group == 7, 5.0, -40.0)
    assert value(shifted).item() == pytest.approx(expected, rel=1e-5)
    assert value(x + 1000.0).item() == pytest.approx(expected, rel=1e-5)  # no overflow
    # Mixing the users into one softmax would give another value: the groups matter.
    one_group = listwise_by_hand(x, np.zeros_like(group), label)
    assert abs(one_group - expected) > 0.1


def test_listwise_loss_backpropagates_through_the_net_and_bce_is_pointwise():
    ranker = make_ranker()
    rows = candidate_table(SIGNAL, n_users=6, per_user=8)
    fit, _ = ranker.prepare(rows)
    batch = ranker.batch(fit)
    listwise = ranker.loss_module()
    value = listwise(batch)
    assert value.ndim == 0 and torch.isfinite(value) and value.item() > 0
    value.backward()
    assert ranker.net.wide.weight.grad.abs().sum() > 0
    assert ranker.net.mlp[-1].weight.grad.abs().sum() > 0  # the deep part learns from zero

    bce = RankerLoss(FixedLogits(), "bce")
    x = torch.tensor([3.0, -2.0, 0.0, 50.0])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    got = bce({"x": x, "label": y, "group": torch.tensor([0, 0, 1, 1])})
    # -[y log σ(x) + (1 - y) log(1 - σ(x))] = log(1 + e^-x) + (1 - y) x, row by row.
    by_hand = np.mean(
        [np.log1p(np.exp(-3.0)), np.log1p(np.exp(-2.0)), np.log(2.0), 50.0 + np.log1p(np.exp(-50))]
    )
    assert torch.isfinite(got) and got.item() == pytest.approx(by_hand, rel=1e-6)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(x, y))


# -- grouped nDCG and whole-user batches ----------------------------------------------------
def test_grouped_ndcg_hand_computed():
    groups = np.array(["b", "a", "a", "c", "a", "b", "c", "c"], dtype=object)
    scores = np.array([0.8, 0.9, 0.5, 0.3, 0.1, 0.2, 0.2, 0.1])
    labels = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    # a: order 0.9 (0), 0.5 (1), 0.1 (1) → (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    # b: order 0.8 (0), 0.2 (1) → (1/log2 3) / 1;  c: no positive, left out of the mean
    a = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    b = 1 / np.log2(3)
    assert grouped_ndcg(groups, scores, labels, k=10) == pytest.approx((a + b) / 2)
    # At k = 2 the third item of "a" no longer counts, and the ideal list is cut at 2 too.
    a2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert grouped_ndcg(groups, scores, labels, k=2) == pytest.approx((a2 + b) / 2)
    # More positives than k: the ideal list holds k of them, not all.
    d = np.zeros(4, dtype=int)
    got = grouped_ndcg(d, np.array([0.9, 0.8, 0.7, 0.6]), np.array([1.0, 0.0, 1.0, 1.0]), k=2)
    assert got == pytest.approx(1 / (1 + 1 / np.log2(3)))
    # Rows in any order, and a perfect ranking gives 1.
    perm = np.random.default_rng(0).permutation(len(groups))
    got = grouped_ndcg(groups[perm], scores[perm], labels[perm], k=10)
    assert got == pytest.approx((a + b) / 2)
    assert grouped_ndcg(groups, labels, labels, k=10) == pytest.approx(1.0)


def test_user_batches_hold_whole_users_cover_every_row_once_in_a_seeded_order():
    groups = np.random.default_rng(1).integers(0, 11, 80)  # 11 users, rows interleaved
    batches = list(user_batches(groups, 3, seed=5))
    assert len(batches) == 4  # ceil(11 / 3)
    every = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(every), np.arange(80))  # each row exactly once
    seen = set()
    for idx in batches:
        users = set(groups[idx])
        assert len(users) <= 3 and not users & seen
        for u in users:  # all of a user's rows are in this batch
            assert set(np.flatnonzero(groups == u)) <= set(idx)
        seen |= users

    def user_order(seed: int) -> list[int]:
        return [int(g) for idx in user_batches(groups, 1, seed) for g in np.unique(groups[idx])]

    assert user_order(5) == user_order(5)  # seeded
    orders = {tuple(user_order(s)) for s in range(5)}
    assert len(orders) > 1 and all(sorted(o) == list(range(11)) for o in orders)  # shuffled


def test_example_order_keeps_users_contiguous_for_listwise_only():
    groups = np.random.default_rng(2).integers(0, 20, 200)
    rows = {"iid": np.arange(200), "group": groups}
    order = make_ranker(loss="listwise").example_order(rows, seed=0)
    np.testing.assert_array_equal(np.sort(order), np.arange(200))
    runs = np.count_nonzero(np.diff(groups[order]) != 0) + 1
    assert runs == len(np.unique(groups))  # one run of rows per user

    def users_in(o: np.ndarray) -> list[int]:
        return groups[o][np.r_[True, np.diff(groups[o]) != 0]].tolist()

    assert users_in(order) != sorted(users_in(order))  # in a shuffled user order, seeded
    other = make_ranker(loss="listwise").example_order(rows, seed=1)
    assert users_in(other) != users_in(order)
    np.testing.assert_array_equal(make_ranker().example_order(rows, seed=0), order)
    bce = make_ranker(loss="bce")
    shuffled = bce.example_order(rows, seed=0)
    np.testing.assert_array_equal(np.sort(shuffled), np.arange(200))
    assert np.count_nonzero(np.diff(groups[shuffled]) != 0) + 1 > 100  # rows, not users
    assert bce.shuffle_buffer() == 4 * bce.config.batch_size
    assert make_ranker(loss="listwise").shuffle_buffer() is None  # a buffer would split users


# -- prepare, score, learn ------------------------------------------------------------------
def test_prepare_sets_dense_statistics_and_holds_out_whole_users():
    ranker = make_ranker(val_share=0.25)
    rows = candidate_table(SIGNAL, n_users=40, per_user=5)
    fit, val = ranker.prepare(rows)
    dense = np.stack([rows[f"d{j}"] for j in range(len(DENSE_FEATURES))], axis=1)
    np.testing.assert_allclose(ranker.net.dense_mean.numpy(), dense.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(ranker.net.dense_std.numpy(), dense.std(axis=0), rtol=1e-4)
    assert "user" not in fit and "group" in fit and "user" in val
    assert len(fit["iid"]) + len(val["iid"]) == len(rows["iid"])
    assert len(np.unique(val["user"])) == 10  # 25% of 40 users
    # A user is either held out or trained on, never both.
    assert not set(fit["group"]) & set(val["group"])
    assert len(np.unique(fit["group"])) == 30


def test_score_returns_logits_that_do_not_saturate():
    ranker = make_ranker()
    rows = candidate_table(SIGNAL, n_users=4, per_user=10)
    ranker.prepare(rows)
    ranker.net.eval()
    with torch.no_grad():
        ranker.net.wide.weight[0, PRIOR] = 40.0  # logits far beyond where σ rounds to 1
    scores = ranker.score({k: v for k, v in rows.items() if k != "user"})
    assert scores.dtype == np.float64 and scores.shape == (40,)
    with torch.no_grad():
        logits = ranker.net.logits(to_batch({k: v for k, v in rows.items() if k != "user"}))
    np.testing.assert_allclose(scores, logits.numpy(), rtol=1e-6)
    top = np.sort(scores)[-10:]
    assert top.min() > 20.0 and len(np.unique(top)) == 10  # distinct, in order
    assert len(np.unique(torch.sigmoid(torch.tensor(top, dtype=torch.float32)))) < 10  # σ ties


def test_training_beats_the_prior_when_the_label_needs_another_feature():
    ranker = make_ranker(epochs=6)
    fit, val = ranker.prepare(candidate_table(SIGNAL))
    start = ranker.validate(val)
    state = fit_in_process(ranker, fit, val)
    stopping = state["early_stopping"]
    # The prior (noise for these labels) is near chance; the signal column gives them away.
    assert start < 0.6
    assert stopping["best_epoch"] >= 0 and stopping["best"] > start + 0.25
    assert ranker.validate(val) == pytest.approx(stopping["best"])  # the best weights are kept
    assert ranker.validate(val) > 0.85


def test_the_untrained_model_stays_when_training_does_not_improve_validation():
    """The epoch -1 rule: the prior's ordering is the first best; training that only hurts
    held-out users leaves exactly the initial weights."""
    ranker = make_ranker(epochs=3)
    rows = candidate_table(SIGNAL)
    fit, val = ranker.prepare(rows)
    # Held-out users' positives are the prior's top (so it is perfect on them); training users'
    # follow another feature, which the ranker will learn, away from the prior.
    val["label"] = top_per_user(val["group"], val[f"d{PRIOR}"], 3)
    initial = {k: v.clone() for k, v in ranker.net.state_dict().items()}
    start = ranker.validate(val)
    assert start == pytest.approx(1.0)
    state = fit_in_process(ranker, fit, val)
    stopping = state["early_stopping"]
    assert len(stopping["history"]) == 3 and max(stopping["history"]) < start  # it did hurt
    assert stopping["best_epoch"] == -1 and stopping["best"] == pytest.approx(start)
    final = ranker.net.state_dict()
    assert all(torch.equal(final[k], initial[k]) for k in initial)
    assert ranker.validate(val) == pytest.approx(start)


def test_save_load_round_trip(tmp_path):
    ranker = make_ranker(epochs=2)
    rows = candidate_table(SIGNAL, n_users=30)
    fit, val = ranker.prepare(rows)
    fit_in_process(ranker, fit, val)
    ranker.net.eval()
    features = {k: v for k, v in rows.items() if k != "user"}
    files = ranker.save(tmp_path)
    assert all((tmp_path / f).exists() for f in files)
    loaded = DCNRanker.load(tmp_path, ranker.config)
    np.testing.assert_array_equal(loaded.score(features), ranker.score(features))
    np.testing.assert_array_equal(loaded.item_table, ranker.item_table)
    assert loaded.card == CARD and loaded.n_items == N_ITEMS
    # The standardisation statistics travel with the weights.
    torch.testing.assert_close(loaded.net.dense_mean, ranker.net.dense_mean)
    torch.testing.assert_close(loaded.net.dense_std, ranker.net.dense_std)
