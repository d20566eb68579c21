"""The Evidently recommendation-quality report: a candidate's top-k against a reference's.

Evidently's ranking metrics read one row per (user, item) with the item's rank and a relevance
label. Held-out items a list missed must be rows too (ranked past ``k``), or recall would
count only the hits.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.data.io import ITEM, USER, atomic_path
from recsys.evaluation.metrics import top_k

RANK = "rank"
TARGET = "target"


def ranking_frame(recs: pd.DataFrame, test: pd.DataFrame, k: int) -> pd.DataFrame:
    """Evidently's recsys rows for ``recs``: the top-k with ``target`` 1 for a held-out item,
    plus each user's missed held-out items ranked ``k + 1``.

    Args:
        recs: ``user_id, item_id, rank``.
        test: held-out interactions, ``user_id, item_id``.
        k: the cut-off.

    Returns:
        ``user_id, item_id, rank, target``, for users present in both frames.
    """
    shown = top_k(recs, k)
    users = set(shown[USER]) & set(test[USER])
    shown = shown[shown[USER].isin(users)]
    held = test[test[USER].isin(users)][[USER, ITEM]].drop_duplicates()
    merged = shown.merge(held.assign(**{TARGET: 1}), on=[USER, ITEM], how="outer")
    merged[TARGET] = merged[TARGET].fillna(0).astype(int)
    merged[RANK] = merged[RANK].fillna(k + 1).astype(int)
    return merged.sort_values([USER, RANK], kind="stable").reset_index(drop=True)


def write_quality_report(
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    test: pd.DataFrame,
    train: pd.DataFrame,
    k: int,
    path: str | Path,
) -> Path:
    """Run Evidently's ranking metrics on ``current`` (against ``reference`` when given) and
    save the HTML report.

    Args:
        current: the candidate's recommendations (``user_id, item_id, rank``).
        reference: the recommendations it is compared with (the champion's, or a baseline's).
        test: held-out interactions.
        train: training interactions (popularity bias and novelty need them).
        k: the cut-off.
        path: the HTML file to write.

    Returns:
        ``path``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.datasets import Recsys
    from evidently.metrics import recsys as m

    definition = DataDefinition(
        categorical_columns=[USER, ITEM],
        numerical_columns=[TARGET, RANK],
        ranking=[Recsys(target=TARGET, prediction=RANK, recommendations_type="rank")],
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        frame = frame.astype({USER: str, ITEM: str})
        return Dataset.from_pandas(frame, data_definition=definition)

    train_rows = train[[USER, ITEM]].astype(str).assign(**{TARGET: 1, RANK: 1})
    # RecsysPreset minus ScoreDistribution (needs scores, and a list past k has only ranks) and
    # RecCasesTable (one table per user: megabytes of HTML on a real dataset).
    metrics = [
        *(cls(k=k) for cls in (m.PrecisionTopK, m.RecallTopK, m.FBetaTopK, m.MAP, m.NDCG)),
        *(cls(k=k) for cls in (m.MRR, m.HitRate, m.Personalization, m.Novelty)),
        m.PopularityBiasMetric(k=k),
    ]
    snapshot = Report(metrics).run(
        dataset(ranking_frame(current, test, k)),
        dataset(ranking_frame(reference, test, k)) if reference is not None else None,
        additional_data={"current_train_data": dataset(train_rows)},
    )
    with atomic_path(path) as tmp:
        snapshot.save_html(str(tmp))
    return Path(path)
