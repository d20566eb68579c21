"""Split protocols: disjoint, complete, deterministic, and faithful to their definitions."""

import numpy as np
import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.data.split import (
    cold_items_split,
    global_time_split,
    leave_last_out,
    split,
    stratified_split,
    temporal_split,
)


def key(df):
    return set(zip(df.user_id, df.item_id, df.timestamp, strict=True))


def test_stratified_is_per_item_75_25_and_deterministic(interactions):
    train, test = stratified_split(interactions, 0.75, seed=42)
    assert key(train) | key(test) == key(interactions)
    assert not key(train) & key(test)
    for item, group in interactions.groupby("item_id"):
        n_train = (train.item_id == item).sum()
        assert n_train == np.round(0.75 * len(group))
    train2, _ = stratified_split(interactions, 0.75, seed=42)
    pd.testing.assert_frame_equal(train, train2)
    train3, _ = stratified_split(interactions, 0.75, seed=7)
    assert key(train3) != key(train)


def test_temporal_holds_each_users_latest_share(interactions):
    train, test = temporal_split(interactions, 0.75)
    assert key(train) | key(test) == key(interactions)
    assert not key(train) & key(test)
    for user, group in interactions.groupby("user_id"):
        mine = train[train.user_id == user]
        assert len(mine) == np.round(0.75 * len(group))
        later = test[test.user_id == user]
        if len(later):  # nothing the user did later trains
            assert mine.timestamp.max() <= later.timestamp.min()
    assert test.user_id.nunique() > 0.9 * interactions.user_id.nunique()
    pd.testing.assert_frame_equal(train, temporal_split(interactions.sample(frac=1), 0.75)[0])


def test_global_time_cuts_at_global_quantile(interactions):
    train, test = global_time_split(interactions, 0.8)
    assert train.timestamp.max() < test.timestamp.min()
    assert len(train) == pytest.approx(0.8 * len(interactions), abs=2)


def test_leave_last_out_holds_latest_per_user(interactions):
    extra = pd.DataFrame(
        {
            "user_id": ["solo"],
            "item_id": ["i1"],
            "rating": [3.0],
            "timestamp": [pd.Timestamp("2024-05-01", tz="UTC")],
        }
    )
    df = pd.concat([interactions, extra], ignore_index=True)
    train, test = leave_last_out(df, n_last=2)
    assert "solo" not in set(test.user_id)  # one interaction: nothing to hold out
    assert test.groupby("user_id").size().eq(2).all()
    latest = train.groupby("user_id").timestamp.max()
    earliest_test = test.groupby("user_id").timestamp.min()
    assert (latest.reindex(earliest_test.index) <= earliest_test).all()


def test_cold_items_hold_out_every_interaction_of_a_seeded_fifth_of_the_items(interactions):
    train, test = split(interactions, "cold-items", seed=3)
    assert key(train) | key(test) == key(interactions) and not key(train) & key(test)
    items = interactions.item_id.nunique()
    assert test.item_id.nunique() == round(0.2 * items)  # the cold items: test's, all of them
    assert not set(test.item_id) & set(train.item_id)  # no training interaction at all
    again, _ = cold_items_split(interactions, seed=3)
    other, _ = cold_items_split(interactions, seed=4)
    assert key(again) == key(train) and key(other) != key(train)
    _, half = cold_items_split(interactions, 0.5, seed=3)
    assert half.item_id.nunique() == round(0.5 * items)
    with pytest.raises(RecsysError, match="cold-items share must be between 0 and 1"):
        cold_items_split(interactions, 1.0)


def test_bad_protocol_and_ratio():
    df = pd.DataFrame(columns=["user_id", "item_id", "rating", "timestamp"])
    with pytest.raises(RecsysError, match="unknown split protocol 'random'"):
        split(df, "random")
    with pytest.raises(RecsysError, match="between 0 and 1"):
        split(df, "stratified", ratio=1.5)
