"""The Evidently recommendation-quality report: a list's top-k against a reference's.

Evidently's ranking metrics read one row per (user, item) with the item's rank and a relevance
label. Held-out items a list missed must be rows too (ranked past ``k``), or recall would
count only the hits.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from recsys.data.io import ITEM, USER
from recsys.evaluation.metrics import top_k
from recsys.files import atomic_path

RANK = "rank"
TARGET = "target"


@contextmanager
def quiet_imports() -> Iterator[None]:
    """Import Evidently inside: its first import warns of its dependencies' deprecations
    (numpy.core, litestar), nothing a user of ours can act on, in the middle of their screen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


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


def quality_snapshot(
    current: pd.DataFrame, reference: pd.DataFrame | None, train: pd.DataFrame | None, k: int
):
    """Evidently's ranking metrics on ``current`` (against ``reference`` when given).

    Args:
        current: :func:`ranking_frame` rows of the list under test.
        reference: :func:`ranking_frame` rows it is compared with (a champion's, a baseline's,
            or a version's offline reference).
        train: training interactions (popularity bias and novelty need them; left out without).
        k: the cut-off.

    Returns:
        The Evidently snapshot (``save_html``, or add it to a workspace).
    """
    with quiet_imports():
        from evidently import DataDefinition, Dataset, Report
        from evidently.core.datasets import Recsys
        from evidently.metrics import recsys as m

    definition = DataDefinition(
        categorical_columns=[USER, ITEM],
        numerical_columns=[TARGET, RANK],
        ranking=[Recsys(target=TARGET, prediction=RANK, recommendations_type="rank")],
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        frame = frame[[USER, ITEM, RANK, TARGET]].astype({USER: str, ITEM: str})
        return Dataset.from_pandas(frame, data_definition=definition)

    # RecsysPreset minus ScoreDistribution (needs scores, and a list past k has only ranks) and
    # RecCasesTable (one table per user: megabytes of HTML on a real dataset).
    metrics = [
        *(cls(k=k) for cls in (m.PrecisionTopK, m.RecallTopK, m.FBetaTopK, m.MAP, m.NDCG)),
        *(cls(k=k) for cls in (m.MRR, m.HitRate, m.Personalization)),
    ]
    additional = {}
    if train is not None:
        metrics += [m.Novelty(k=k), m.PopularityBiasMetric(k=k)]
        train_rows = train[[USER, ITEM]].astype(str).assign(**{TARGET: 1, RANK: 1})
        additional["current_train_data"] = dataset(train_rows)
    return Report(metrics).run(
        dataset(current),
        dataset(reference) if reference is not None else None,
        additional_data=additional,
    )


def save_html(snapshot, path: str | Path) -> Path:
    """Write an Evidently snapshot's HTML; the file appears only when complete."""
    with atomic_path(path) as tmp:
        snapshot.save_html(str(tmp))
    return Path(path)
