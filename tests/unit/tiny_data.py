"""Side tables for the clustered interactions fixture of ``tests/conftest.py``."""

import pandas as pd

# A pipeline small enough to fit in seconds on one thread (unit and serving tests).
TINY_MULTISTAGE = dict(
    n_ease=10,
    n_rp3=10,
    n_popular=5,
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
