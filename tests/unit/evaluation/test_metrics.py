"""Metrics against small cases computed by hand."""

import math

import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.evaluation.metrics import ranking_metrics, top_k


def recs(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank"])


def truth(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


# User a: recs [1, 2, 3], relevant {1, 3, 9}: hits at ranks 1 and 3.
# User b: recs [4, 5, 6], relevant {6}: a hit at rank 3.
RECS = recs(
    [
        ("a", "1", 0.9, 1),
        ("a", "2", 0.8, 2),
        ("a", "3", 0.7, 3),
        ("b", "4", 0.9, 1),
        ("b", "5", 0.8, 2),
        ("b", "6", 0.7, 3),
    ]
)
TEST = truth([("a", "1"), ("a", "3"), ("a", "9"), ("b", "6")])


def d(rank):
    return 1 / math.log2(rank + 1)


def test_accuracy_metrics_by_hand():
    m = ranking_metrics(RECS, TEST, k=3)
    assert m.n_users == 2
    assert m.precision == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m.recall == pytest.approx((2 / 3 + 1 / 1) / 2)
    ndcg_a = (d(1) + d(3)) / (d(1) + d(2) + d(3))
    ndcg_b = d(3) / d(1)
    assert m.ndcg == pytest.approx((ndcg_a + ndcg_b) / 2)
    # AP: a = (1/1 + 2/3) / 3 test items; b = (1/3) / 1.
    assert m.map == pytest.approx(((1 + 2 / 3) / 3 + (1 / 3) / 1) / 2)
    # map@k divides by min(actual, k): a -> 3, b -> 1 (same here as k = 3).
    assert m.map_at_k == pytest.approx(((1 + 2 / 3) / 3 + 1 / 3) / 2)
    assert m.hit_rate == 1.0
    assert m.mrr == pytest.approx((1 / 1 + 1 / 3) / 2)
    p, r = m.precision, m.recall
    assert m.f1 == pytest.approx(2 * p * r / (p + r))


def test_cutoff_smaller_than_list():
    m = ranking_metrics(RECS, TEST, k=1)
    assert m.precision == pytest.approx(0.5)  # a hits at rank 1, b misses
    assert m.recall == pytest.approx((1 / 3 + 0) / 2)
    assert m.map_at_k == pytest.approx((1 / 1 + 0) / 2)  # min(actual, 1) = 1
    assert m.map == pytest.approx((1 / 3 + 0) / 2)
    assert m.ndcg == pytest.approx(0.5)
    assert m.hit_rate == 0.5 and m.mrr == pytest.approx(0.5)


def test_users_without_hits_count_and_unshared_users_do_not():
    r = pd.concat([RECS, recs([("c", "1", 1.0, 1)])])  # c has no test items: not evaluated
    t = pd.concat([TEST, truth([("d", "1")]), truth([("e", "7")])])
    r = pd.concat([r, recs([("e", "8", 1.0, 1)])])  # e evaluated, no hit
    m = ranking_metrics(r, t, k=3)
    assert m.n_users == 3
    assert m.hit_rate == pytest.approx(2 / 3)


def test_ndcg_idcg_uses_min_of_actual_and_k():
    many = truth([("a", str(i)) for i in range(1, 21)])
    m = ranking_metrics(RECS[RECS.user_id == "a"], many, k=3)
    assert m.ndcg == pytest.approx(1.0)  # three hits in three slots is ideal at k = 3
    assert m.recall == pytest.approx(3 / 20)


def test_order_comes_from_rank_not_file_order():
    shuffled = RECS.sample(frac=1.0, random_state=3)
    assert ranking_metrics(shuffled, TEST, k=2) == ranking_metrics(RECS, TEST, k=2)


def test_score_orders_when_rank_missing():
    by_score = RECS.drop(columns="rank")
    assert top_k(by_score, 1)["item_id"].tolist() == ["1", "4"]


def test_beyond_accuracy_by_hand():
    train = truth([("x", "1"), ("y", "1"), ("x", "2"), ("y", "4"), ("z", "5"), ("z", "7")])
    m = ranking_metrics(RECS, TEST, k=2, train=train)
    # Recommended at k=2: a -> 1, 2; b -> 4, 5. Distinct 4 of 5 training items.
    assert m.catalog_coverage == pytest.approx(4 / 5)
    n = len(train)
    expected = (-math.log2(2 / n) - math.log2(1 / n) - math.log2(1 / n) - math.log2(1 / n)) / 4
    assert m.novelty == pytest.approx(expected)
    assert m.arp == pytest.approx(((2 + 1) / 2 + (1 + 1) / 2) / 2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(RecsysError, match="k must be at least 1"):
        ranking_metrics(RECS, TEST, k=0)
    with pytest.raises(RecsysError, match="no user appears both"):
        ranking_metrics(RECS, truth([("zz", "1")]), k=3)
    with pytest.raises(RecsysError, match="missing required column"):
        ranking_metrics(RECS.drop(columns="item_id"), TEST, k=3)
