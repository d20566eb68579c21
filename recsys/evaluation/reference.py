"""A model version's monitoring reference: what it recommended to held-out users, with the
features the prediction log records for live traffic, and whether each item was relevant.

The evaluate step builds it from the candidate's offline top-k; registration stores it in the
version's directory (``reference.parquet``), so the monitor compares live traffic with the very
distributions and quality the version was promoted on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.io import ITEM, RATING, USER, age_bucket, read_table
from recsys.evaluation.evidently_report import TARGET, ranking_frame

REFERENCE_FILE = "reference.parquet"
# Monitored for drift: the request's user features (as the online store serves them, with the
# prediction log's names) and what the model returned (its popularity, its score).
CATEGORICAL = ("user_age_bucket", "user_gender", "user_occupation")
NUMERICAL = ("user_interactions", "user_mean_rating", "user_history_len", "item_popularity")
SCORE, SOURCE = "score", "source"


def monitored_user_features(train: pd.DataFrame, users: pd.DataFrame | None) -> pd.DataFrame:
    """The user features of the online store as of the end of ``train``, one row per user,
    named as the prediction log names them."""
    g = train.groupby(USER)
    out = pd.DataFrame(
        {
            "user_interactions": g.size(),
            "user_ratings": g[RATING].count() if RATING in train else 0,
            "user_mean_rating": g[RATING].mean() if RATING in train else np.nan,
        }
    )
    out["user_history_len"] = g[ITEM].nunique()  # the seen set's size, as the log records
    if users is not None:
        profile = users.set_index(users[USER].astype(str))
        if "age_bucket" in profile:
            out["user_age_bucket"] = profile["age_bucket"].reindex(out.index)
        elif "age" in profile:
            out["user_age_bucket"] = age_bucket(profile["age"]).reindex(out.index)
        for col in ("gender", "occupation"):
            if col in profile:
                out[f"user_{col}"] = profile[col].reindex(out.index)
    return out.rename_axis(USER).reset_index()


def item_popularity(model_dir: str | Path) -> pd.Series:
    """Training interaction counts by item id, read from a model directory's vocabulary
    (no model load: the monitor needs only these two small files)."""
    import json

    model_dir = Path(model_dir)
    ids = json.loads((model_dir / "item_vocab.json").read_text())
    counts = np.load(model_dir / "item_popularity.npy")
    return pd.Series(counts, index=pd.Index(ids, name=ITEM), name="item_popularity")


def build_reference(
    recs: pd.DataFrame,
    test: pd.DataFrame,
    train: pd.DataFrame,
    users: pd.DataFrame | None,
    popularity: pd.Series,
    k: int,
) -> pd.DataFrame:
    """The reference rows: each held-out user's top-k with score and relevance, the user's
    features and the item's popularity.

    Args:
        recs: the version's recommendations (``user_id, item_id, rank, score``, and
            ``source`` from the recommendation path).
        test: held-out interactions (relevance).
        train: training interactions (user features as of their end).
        users: the user side table, when there is one.
        popularity: training counts by item id (:func:`item_popularity`).
        k: the cut-off.
    """
    frame = ranking_frame(recs, test, k)
    frame = frame[frame["rank"] <= k]  # the rows ranked past k are misses: not served
    extra = [c for c in (SCORE, SOURCE) if c in recs]
    frame = frame.merge(recs[[USER, ITEM, *extra]], on=[USER, ITEM], how="left")
    if SOURCE not in frame:
        frame[SOURCE] = "model"
    frame = frame.merge(monitored_user_features(train, users), on=USER, how="left")
    frame["item_popularity"] = popularity.reindex(frame[ITEM].astype(str)).to_numpy()
    return frame.reset_index(drop=True)


def read_reference(version_dir: str | Path) -> pd.DataFrame | None:
    """The reference stored with a version, or None for a version registered without one."""
    path = Path(version_dir) / REFERENCE_FILE
    return read_table(path) if path.exists() else None


__all__ = [
    "CATEGORICAL",
    "NUMERICAL",
    "REFERENCE_FILE",
    "SCORE",
    "SOURCE",
    "TARGET",
    "build_reference",
    "item_popularity",
    "read_reference",
    "monitored_user_features",
]
