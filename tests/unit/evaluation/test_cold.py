"""The cold-item protocol's figures: ranked among the cold items (a request's candidate list)
and over the whole catalog, through the one recommendation path; random is the floor a model
of the items' content must clear."""

from __future__ import annotations

from recsys.data.split import cold_items_split
from recsys.evaluation.cold import cold_items, cold_metrics, evaluate_cold, random_lists
from recsys.models.kinds import create_model
from tests.helpers import make_interactions, side_tables


def test_genre_affinity_ranks_the_cold_items_of_the_users_cluster_far_above_random():
    interactions = make_interactions(n_users=40, n_items=80, per_user=10)
    users, items = side_tables(n_users=40, n_items=80)  # genre G<i % 4>: the item's cluster
    train, test = cold_items_split(interactions, 0.25, seed=1)
    cold = cold_items(test)
    assert not set(cold) & set(train.item_id) and len(cold) == 20
    floor = cold_metrics(random_lists(test, seed=1), test)
    lists = random_lists(test, seed=1)
    assert lists.groupby("user_id").size().eq(20).all() and set(lists.item_id) == set(cold)
    model = create_model("genre").fit(train, users, items)
    figures = evaluate_cold(model, train, test)
    assert figures["cold"]["ndcg_at_10"] > 2 * floor["ndcg_at_10"]
    assert figures["cold"]["recall_at_50"] == 1.0  # 20 cold items, every one listed
    assert 0.0 < figures["mixed"]["ndcg_at_10"] <= figures["cold"]["ndcg_at_10"]
    ease = create_model("ease").fit(train, users, items)  # knows no cold item at all
    blind = evaluate_cold(ease, train, test)
    assert blind["cold"] == {"ndcg_at_10": 0.0, "recall_at_50": 0.0}
