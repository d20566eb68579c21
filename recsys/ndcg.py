"""nDCG@k with binary relevance: the one definition, for every layer that ranks.

The evaluation reports it (``recsys.evaluation.metrics``) and the models learn by it (the
two-tower's and the DCN ranker's validation signal for early stopping), so it stands at the
ground, below both: a model may not import the evaluation, and the two must not drift apart.

For a list with relevant items at 0-based ranks ``r`` and ``n`` relevant items in all:
``DCG = sum over r < k of 1 / log2(r + 2)``, ``IDCG = sum over j < min(n, k) of
1 / log2(j + 2)``, nDCG = DCG / IDCG. Each list's DCG is summed as pandas sums a group
(compensated), in rank order: the figures Microsoft Recommenders' ``python_evaluation`` gives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def mean_ndcg(lists: np.ndarray, ranks: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Mean nDCG@k over the lists that hold at least one relevant item.

    Args:
        lists: each relevant item's list, as a position in ``n_relevant``; within a list, the
            items in rank order.
        ranks: each relevant item's 0-based rank in its list (from ``k`` on it gains nothing).
        n_relevant: each list's number of relevant items (the ideal list's length, cut at k).
        k: the cut-off.

    Returns:
        The mean over the lists with ``n_relevant > 0``; 0.0 when there is none.
    """
    n_relevant = np.asarray(n_relevant)
    has = n_relevant > 0
    if not has.any():
        return 0.0
    return float(list_ndcg(lists, ranks, n_relevant, k)[has].mean())


def list_ndcg(lists: np.ndarray, ranks: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """nDCG@k of every list (arguments as :func:`mean_ndcg`'s); 0 for a list with no relevant
    item."""
    ranks = np.asarray(ranks)
    n_relevant = np.asarray(n_relevant)
    keep = ranks < k
    gain = 1.0 / np.log2(ranks[keep] + 2.0)
    dcg = (
        pd.Series(gain)
        .groupby(np.asarray(lists)[keep])
        .sum()
        .reindex(np.arange(len(n_relevant)), fill_value=0.0)
        .to_numpy()
    )
    discounts = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]  # IDCG by length
    out = np.zeros(len(n_relevant))
    has = n_relevant > 0
    out[has] = dcg[has] / discounts[np.minimum(n_relevant[has], k)]
    return out
