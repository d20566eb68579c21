"""The cold-item protocol's figures (``recsys data split --protocol cold-items``): how well a
model ranks items that have no training interaction, for the users who later met them.

Two settings, as in the ColdRec benchmark: **cold** ranks the cold items only (a request's
candidate list: the one recommendation path), **mixed** ranks the whole catalog, the held-out
interactions with cold items the only hits. nDCG@10 and recall@50 in each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, USER
from recsys.evaluation.metrics import ranking_metrics
from recsys.models.base import Recommender
from recsys.recommend import PreparedModel, Request, recommend_frame

DEPTH = 50  # recall's cut-off


def cold_items(test: pd.DataFrame) -> list[str]:
    """The cold items of a cold-items split: every item its test set holds."""
    return sorted(test[ITEM].astype(str).unique())


def cold_metrics(recs: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """nDCG@10 and recall@50 of ranked lists (at least 50 deep) against the test's items
    (a model that lists none of them: 0)."""
    if recs.empty:
        return {"ndcg_at_10": 0.0, "recall_at_50": 0.0}
    return {
        "ndcg_at_10": ranking_metrics(recs, test, k=10).ndcg,
        "recall_at_50": ranking_metrics(recs, test, k=DEPTH).recall,
    }


def evaluate_cold(
    model: Recommender | PreparedModel, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, dict[str, float]]:
    """A model's figures in both settings, over every test user (their states from
    ``train``)."""
    users = sorted(test[USER].astype(str).unique())
    cold = Request(k=DEPTH, candidates=cold_items(test))
    mixed = Request(k=DEPTH)
    return {
        "cold": cold_metrics(recommend_frame(model, users, cold, history=train), test),
        "mixed": cold_metrics(recommend_frame(model, users, mixed, history=train), test),
    }


def random_lists(test: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The floor: each test user's cold items in a random order (seeded per run)."""
    items = np.asarray(cold_items(test), dtype=object)
    rng = np.random.default_rng(seed)
    users = sorted(test[USER].astype(str).unique())
    depth = min(DEPTH, len(items))
    picks = np.stack([rng.permutation(len(items))[:depth] for _ in users])  # (users, depth)
    return pd.DataFrame(
        {
            USER: np.repeat(users, depth),
            ITEM: items[picks.ravel()],
            "rank": np.tile(np.arange(1, depth + 1), len(users)),
        }
    )
