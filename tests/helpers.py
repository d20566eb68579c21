"""What the tests share, in one module: tiny seeded interaction tables and their side tables,
a tiny multi-stage configuration, a private copy of the Feast repository, the one
recommendation path's rows, the as-of join's hand-made case, and the feature-table comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.features.asof import ROW, ViewJoin, asof_sql
from recsys.features.repository import copy_definitions
from recsys.recommend import Request, recommend_frame


def make_interactions(
    n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0
) -> pd.DataFrame:
    """Users prefer items of their own cluster, so a model has something real to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for u in range(n_users):
        cluster = u % 4
        own = [i for i in range(n_items) if i % 4 == cluster]
        picks = rng.choice(own, size=min(per_user, len(own)), replace=False)
        for j, i in enumerate(picks):
            rows.append(
                (
                    f"u{u}",
                    f"i{i}",
                    float(rng.integers(1, 6)),
                    start + pd.Timedelta(hours=u * 24 + j),
                )
            )
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


# A pipeline small enough to fit in seconds on one thread (unit and serving tests).
TINY_MULTISTAGE = dict(
    n_ease=10,
    n_rp3=10,
    n_popular=5,
    n_content=10,
    folds=3,
    gbdt=dict(rounds=20, num_leaves=7, min_data_in_leaf=5),
    two_tower=dict(
        dim=16, id_dim=16, feat_dim=8, hidden=32, epochs=5, batch_size=64, history_len=10
    ),
    dcn=dict(epochs=3, batch_size=256),
)


def cluster(ids: pd.Series) -> pd.Series:
    """``u13`` / ``i13`` / ``new1`` → 13 % 4, the cluster of the conftest fixture."""
    return ids.str.extract(r"(\d+)$")[0].astype(int) % 4


def side_tables(n_users: int = 30, n_items: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users and items whose features give away the cluster; ``new0..new3`` have no
    interactions, nor do items ``i40..i43`` (one per cluster)."""
    uids = [f"u{u}" for u in range(n_users)] + [f"new{c}" for c in range(4)]
    users = pd.DataFrame(
        {
            "user_id": uids,
            "age": [20 + 10 * int(c) for c in cluster(pd.Series(uids))],
            "gender": ["F", "M"] * (len(uids) // 2),
            "occupation": [f"occ{c}" for c in cluster(pd.Series(uids))],
        }
    )
    iids = [f"i{i}" for i in range(n_items + 4)]
    items = pd.DataFrame(
        {
            "item_id": iids,
            "genres": [f"G{i % 4}|Drama" for i in range(len(iids))],
            "release_year": [1980 + 5 * (i % 4) for i in range(len(iids))],
        }
    )
    return users, items


REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_feature_repo(dest: Path) -> Path:
    """A private copy of ``feature_repo/`` (definitions only; its data/ starts empty)."""
    return copy_definitions(REPO_ROOT / "feature_repo", dest)


def recommend_rows(model, user_ids, k: int = 10, *, history=None, exclude_seen: bool = True):
    """The one recommendation path's rows for ``user_ids``, states from ``history``."""
    return recommend_frame(
        model, user_ids, Request(k=k, exclude_seen=exclude_seen), history=history
    )


T0 = pd.Timestamp("2024-01-01", tz="UTC")


def at(seconds: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def asof_case(tmp_path) -> tuple[str, pd.DataFrame, dict, pd.DataFrame]:
    """``(sql, entity rows, {relation: parquet path}, expected)``: view ``v0`` (no TTL) and
    view ``v1`` (TTL 30 s, duplicates at one stamp told apart by their created time)."""
    plain = pd.DataFrame({"k": ["a", "a"], "x": [1, 2], "ts": [at(10), at(20)]})
    expiring = pd.DataFrame(
        {
            "key": ["a", "a", "a"],
            "y": [10, 30, 20],
            "ts": [at(10), at(20), at(20)],
            "created": [at(0), at(2), at(1)],
        }
    )
    paths = {"v0": str(tmp_path / "plain.parquet"), "v1": str(tmp_path / "expiring.parquet")}
    plain.to_parquet(paths["v0"])
    expiring.to_parquet(paths["v1"])
    seconds = [5, 10, 15, 20, 49, 51, 20]
    entity = pd.DataFrame({"user": ["a"] * 6 + ["b"], "event_timestamp": [at(s) for s in seconds]})
    entity[ROW] = range(len(entity))
    views = [
        ViewJoin("v0", {"k": "user"}, "ts", {"x": "x"}),
        ViewJoin("v1", {"key": "user"}, "ts", {"y": "v1__y"}, "created", 30),
    ]
    sql = asof_sql("entity", "event_timestamp", ["user", "event_timestamp", ROW], views)
    expected = entity.assign(
        x=[None, 1, 1, 2, 2, 2, None],  # a tie goes to the feature row; "b" has none
        v1__y=[None, 10, 10, 30, 30, None, None],  # the latest created; expired after 30 s
    )
    return sql, entity, paths, expected


def check_asof(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = result.sort_values(ROW).reset_index(drop=True)
    for col in ("x", "v1__y"):
        assert got[col].astype("Int64").tolist() == expected[col].astype("Int64").tolist(), col
    assert got["event_timestamp"].tolist() == expected["event_timestamp"].tolist()


def assert_same_tables(one: Path, other: Path, names) -> None:
    """The feature tables ``names`` of two builds hold the same rows in the same schema."""
    for name in names:
        a, b = (pd.read_parquet(d / f"{name}.parquet") for d in (one, other))
        key = "user_id" if "user_id" in a else "item_id"
        a, b = (t.sort_values([key, "event_timestamp"]).reset_index(drop=True) for t in (a, b))
        assert a.dtypes.equals(b.dtypes), name
        pd.testing.assert_frame_equal(a.map(_plain), b.map(_plain), obj=name)


def _plain(value):
    return list(value) if isinstance(value, np.ndarray) else value
