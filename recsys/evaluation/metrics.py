"""Ranking metrics with the definitions of Microsoft Recommenders' ``python_evaluation``.

The users evaluated are those present both in the recommendations and in the test set. Each
user's top k recommendations are matched against all of that user's test items (binary
relevance). With ``hits_u`` the number of matches and ``actual_u`` the number of test items:

- precision@k = mean(hits_u / k)
- recall@k    = mean(hits_u / actual_u)
- ndcg@k      = mean(DCG_u / IDCG_u), DCG over the hits at their ranks, IDCG over min(actual_u, k)
                (:func:`recsys.ndcg.mean_ndcg`, the one the models validate by)
- map         = mean(sum over hits of (i-th hit / its rank) / actual_u)
- map@k       = the same divided by min(actual_u, k)
- hit_rate@k  = share of users with at least one hit
- mrr         = mean(1 / rank of the first hit), 0 without one
- f1@k        = 2 P R / (P + R) of the precision@k and recall@k above (the design article's F1)

Beyond accuracy, against the training interactions:

- catalog_coverage = distinct recommended items / distinct training items
- novelty          = mean over recommendations of -log2(count_i / n_train_rows)
                     (an item absent from training adds 0)
- arp              = mean over users of the mean training popularity (count) of their items
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, USER, require_columns
from recsys.ndcg import mean_ndcg

RANK, SCORE = "rank", "score"
RECS_COLUMNS = (USER, ITEM, SCORE, RANK)


@dataclass(frozen=True)
class RankingMetrics:
    """One evaluation's figures; ``None`` where the training data was not given."""

    k: int
    n_users: int
    precision: float
    recall: float
    ndcg: float
    map: float
    map_at_k: float
    hit_rate: float
    mrr: float
    f1: float
    catalog_coverage: float | None = None
    novelty: float | None = None
    arp: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def top_k(recs: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each user's first ``k`` rows by rank (ties by score), re-ranked 1..k."""
    require_columns(recs, (USER, ITEM), "recommendations")
    order = [c for c in (RANK, SCORE) if c in recs.columns]
    if not order:
        raise RecsysError("recommendations: need a 'rank' or a 'score' column to order by")
    ascending = [c == RANK for c in order]
    ranked = recs.sort_values([USER, *order], ascending=[True, *ascending], kind="mergesort")
    ranked = ranked.drop_duplicates([USER, ITEM])
    ranked = ranked.assign(**{RANK: ranked.groupby(USER).cumcount() + 1})
    return ranked[ranked[RANK] <= k][[USER, ITEM, RANK]].reset_index(drop=True)


def _hits(recs_k: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Hits (user, item, rank) and each evaluated user's number of test items."""
    truth = test[[USER, ITEM]].drop_duplicates()
    users = np.intersect1d(truth[USER].unique(), recs_k[USER].unique())
    truth = truth[truth[USER].isin(users)]
    hits = recs_k[recs_k[USER].isin(users)].merge(truth, on=[USER, ITEM])
    actual = truth.groupby(USER).size().reindex(users)
    return hits.sort_values([USER, RANK]), actual


def ranking_metrics(
    recs: pd.DataFrame, test: pd.DataFrame, k: int = 10, train: pd.DataFrame | None = None
) -> RankingMetrics:
    """Compute every metric above for one set of recommendations.

    Args:
        recs: ``user_id, item_id`` and ``rank`` (1-based) or ``score``.
        test: held-out interactions, ``user_id, item_id``.
        k: the cut-off.
        train: training interactions, for coverage, novelty and ARP (optional).

    Returns:
        A :class:`RankingMetrics`.
    """
    if k < 1:
        raise RecsysError(f"k must be at least 1, got {k}")
    require_columns(test, (USER, ITEM), "test")
    recs_k = top_k(recs, k)
    hits, actual = _hits(recs_k, test)
    n = len(actual)
    if n == 0:
        raise RecsysError("no user appears both in the recommendations and in the test set")
    g = hits.groupby(USER)
    n_hits = g.size().reindex(actual.index, fill_value=0)
    lists = actual.index.get_indexer(hits[USER])
    ndcg = mean_ndcg(lists, hits[RANK].to_numpy() - 1, actual.to_numpy(), k)

    precision_at_hit = (g.cumcount() + 1) / hits[RANK]
    ap_sum = precision_at_hit.groupby(hits[USER]).sum().reindex(actual.index, fill_value=0.0)
    first = g[RANK].min().reindex(actual.index)
    per_user = {  # each metric's value per user, averaged over the n users below
        "precision": n_hits / k,
        "recall": n_hits / actual,
        "map": ap_sum / actual,
        "map_at_k": ap_sum / np.minimum(actual, k),
        "hit_rate": n_hits > 0,
        "mrr": (1.0 / first).fillna(0.0),
    }
    means = {name: float(values.sum() / n) for name, values in per_user.items()}
    precision, recall = means["precision"], means["recall"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    extra = beyond_accuracy(recs_k, train) if train is not None else {}
    return RankingMetrics(k=k, n_users=n, ndcg=ndcg, f1=f1, **means, **extra)


def beyond_accuracy(recs_k: pd.DataFrame, train: pd.DataFrame) -> dict[str, float]:
    """Catalog coverage, novelty and average recommendation popularity (see module doc)."""
    require_columns(train, (USER, ITEM), "train")
    counts = train.groupby(ITEM).size()
    coverage = recs_k[ITEM].nunique() / counts.size
    rec_counts = counts.reindex(recs_k[ITEM]).to_numpy(dtype=float)
    # As in the reference: an item never seen in training adds 0 but counts in the denominator.
    known = ~np.isnan(rec_counts)
    novelty = float(np.sum(-np.log2(rec_counts[known] / len(train)))) / max(len(recs_k), 1)
    pop = pd.Series(np.nan_to_num(rec_counts), index=recs_k.index)
    arp = float(pop.groupby(recs_k[USER]).mean().mean())
    return {"catalog_coverage": float(coverage), "novelty": novelty, "arp": arp}
