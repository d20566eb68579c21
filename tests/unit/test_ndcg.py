"""The one nDCG (``recsys.ndcg``) gives, to the last bit, what the evaluation's formula gave
before it was shared, through each of its three callers."""

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.metrics import ranking_metrics
from recsys.models.neural import ranking_ndcg
from recsys.models.rankers.dcn import grouped_ndcg
from recsys.ndcg import list_ndcg, mean_ndcg


def reference_ndcg(hit_users: np.ndarray, hit_ranks: np.ndarray, actual: pd.Series, k: int):
    """The evaluation's formula as it stood (``recsys.evaluation.metrics``, 1-based ranks of
    the hits within the top k, sorted by user then rank; ``actual``: test items per user)."""
    gain = 1.0 / np.log2(hit_ranks + 1.0)
    dcg = pd.Series(gain).groupby(hit_users).sum()
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
    idcg = pd.Series(discounts[np.minimum(actual.to_numpy(), k) - 1], index=actual.index)
    return float((dcg.reindex(actual.index, fill_value=0.0) / idcg).sum() / len(actual))


def random_lists(rng: np.random.Generator, k: int):
    """Lists with their relevant items' (list, 0-based rank), sorted, and each list's count."""
    n_lists = int(rng.integers(1, 60))
    n_relevant = rng.integers(1, 2 * k + 2, n_lists)
    lists, ranks = [], []
    for i, n in enumerate(n_relevant):
        hit = np.sort(rng.choice(k, size=int(rng.integers(0, min(n, k) + 1)), replace=False))
        lists += [i] * len(hit)
        ranks += hit.tolist()
    return np.array(lists, dtype=np.int64), np.array(ranks, dtype=np.int64), n_relevant


@pytest.mark.parametrize("seed", range(40))
def test_the_one_ndcg_is_the_evaluation_formula_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 21))
    lists, ranks, n_relevant = random_lists(rng, k)
    expected = reference_ndcg(lists, ranks + 1, pd.Series(n_relevant), k)
    assert mean_ndcg(lists, ranks, n_relevant, k) == expected


@pytest.mark.parametrize("seed", range(10))
def test_the_evaluation_gives_the_reference_figure(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 15))
    users = [f"u{i}" for i in range(40)]
    recs = pd.DataFrame(
        [(u, f"i{j}", r + 1) for u in users for r, j in enumerate(rng.permutation(50)[:k])],
        columns=["user_id", "item_id", "rank"],
    )
    test = pd.DataFrame(
        [(u, f"i{j}") for u in users for j in rng.choice(50, int(rng.integers(1, 12)), False)],
        columns=["user_id", "item_id"],
    )
    hits = recs.merge(test, on=["user_id", "item_id"]).sort_values(["user_id", "rank"])
    actual = test.groupby("user_id").size()
    expected = reference_ndcg(hits["user_id"].to_numpy(), hits["rank"].to_numpy(), actual, k)
    assert ranking_metrics(recs, test, k).ndcg == expected


@pytest.mark.parametrize("seed", range(10))
def test_the_two_tower_validation_gives_the_reference_figure(seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((200, 30)).round(1)  # ties too: a tie ranks the item higher
    positives = rng.integers(0, 30, 200)
    rank = (scores > scores[np.arange(200), positives][:, None]).sum(axis=1)
    top = rank < 10
    rows = pd.Series(np.ones(200, dtype=np.int64))
    expected = reference_ndcg(np.flatnonzero(top), rank[top] + 1, rows, 10)
    assert ranking_ndcg(scores, positives, k=10) == expected


@pytest.mark.parametrize("seed", range(10))
def test_the_ranker_validation_gives_the_reference_figure(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 25, 400)
    scores = rng.standard_normal(400)
    labels = (rng.random(400) < 0.3).astype(np.float64)
    order = np.lexsort((-scores, groups))
    g, y = groups[order], labels[order]
    rank = np.concatenate([np.arange(n) for n in np.unique(g, return_counts=True)[1]])
    hit = (y > 0) & (rank < 10)
    actual = pd.Series(y).groupby(g).sum().astype(int)
    actual = actual[actual > 0]  # a user without a positive is left out
    expected = reference_ndcg(g[hit], rank[hit] + 1, actual, 10)
    assert grouped_ndcg(groups, scores, labels, k=10) == expected


def test_no_relevant_item_anywhere_is_zero():
    assert mean_ndcg(np.zeros(0, int), np.zeros(0, int), np.zeros(3, int), 10) == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_each_lists_ndcg_is_that_list_alone_and_a_list_without_relevant_items_scores_zero(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 21))
    lists, ranks, n_relevant = random_lists(rng, k)
    n_relevant = np.r_[n_relevant, 0]  # one list more, with nothing relevant
    each = list_ndcg(lists, ranks, n_relevant, k)
    assert len(each) == len(n_relevant) and each[-1] == 0.0
    for i in range(len(n_relevant) - 1):
        mine = lists == i
        assert each[i] == mean_ndcg(lists[mine] * 0, ranks[mine], n_relevant[i : i + 1], k)
