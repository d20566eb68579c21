"""Feature tables: every aggregate is as of its timestamp, hand-checked on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.io import interactions_checksum
from recsys.features.build import (
    FeatureConfig,
    build_features,
    genre_vocabulary,
    read_store_meta,
    user_profile,
)
from recsys.features.build import _item_genre_matrix as item_genre_matrix
from recsys.features.events import activity_after
from recsys.models.encoding import FeatureEncoder
from recsys.state.activity import user_activity
from recsys.state.items import item_stats
from recsys.state.offline import sorted_events
from recsys.state.user import TICK
from tests.helpers import assert_same_tables

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def events(rows) -> pd.DataFrame:
    """``(user, item, rating, hours after T0)`` rows as an interactions frame."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "hours"])
    frame["timestamp"] = T0 + pd.to_timedelta(frame.pop("hours"), unit="h")
    return frame


ITEMS = pd.DataFrame(
    {
        "item_id": ["a", "b", "c"],
        "genres": ["Drama|War", "Comedy", ""],
        "release_year": [1990, 1995, None],
    }
)


def test_user_activity_rows_include_the_event_and_are_stamped_one_tick_later():
    ev = sorted_events(events([("u", "a", 4.0, 0), ("u", "b", None, 1), ("u", "c", 2.0, 2)]))
    genres = genre_vocabulary(ITEMS)
    out = user_activity(ev, item_genre_matrix(ITEMS, genres), len(genres))
    assert list(out["event_timestamp"]) == [
        T0 + TICK,
        T0 + pd.Timedelta(hours=1) + TICK,
        T0 + pd.Timedelta(hours=2) + TICK,
    ]
    assert list(out["user_interactions"]) == [1, 2, 3]
    assert list(out["user_ratings"]) == [1, 1, 2]  # the unrated event counts but has no rating
    np.testing.assert_allclose(out["user_mean_rating"], [4.0, 4.0, 3.0])
    assert genres == ["Comedy", "Drama", "War"]
    np.testing.assert_allclose(out["genre_affinity"].iloc[1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out["genre_affinity"].iloc[2], [1 / 3, 1 / 3, 1 / 3])


def test_replaying_events_one_at_a_time_gives_the_rows_of_a_batch_rebuild():
    """The event path (``activity_after`` on the online row, one event at a time) and the
    batch build fold the same function: after replaying the later events the online rows are
    the latest rows of a rebuild over all events."""
    rng = np.random.default_rng(3)
    n = 400
    rows = pd.DataFrame(
        {
            "user_id": rng.choice(["u1", "u2", "u3", "u4", "new"], n),
            "item_id": rng.choice(["a", "b", "c"], n),
            "rating": np.where(rng.random(n) < 0.3, np.nan, rng.integers(1, 6, n).astype(float)),
            "timestamp": T0 + pd.to_timedelta(np.arange(n), unit="min"),
        }
    )
    first, later = rows.iloc[:250], rows.iloc[250:]
    first = first[first.user_id != "new"]  # one user the store has never seen
    genres = genre_vocabulary(ITEMS)
    onehot = item_genre_matrix(ITEMS, genres)

    def latest(frame: pd.DataFrame) -> dict[str, dict]:
        table = user_activity(sorted_events(frame), onehot, len(genres))
        return {r["user_id"]: r for r in table.groupby("user_id").tail(1).to_dict("records")}

    online = latest(first)
    item_genres = ITEMS.set_index("item_id")["genres"].str.split("|")
    for event in later.itertuples():
        row = online.get(event.user_id, {})
        rating = None if np.isnan(event.rating) else event.rating
        online[event.user_id] = activity_after(
            row, event.user_id, rating, item_genres[event.item_id], genres
        )
    rebuilt = latest(pd.concat([first, later]))
    assert set(online) == set(rebuilt)
    for user, expected in rebuilt.items():
        got = online[user]
        assert got["user_interactions"] == expected["user_interactions"]
        assert got["user_ratings"] == expected["user_ratings"]
        np.testing.assert_allclose(got["user_mean_rating"], expected["user_mean_rating"], 1e-5)
        np.testing.assert_allclose(got["genre_affinity"], expected["genre_affinity"], 1e-5)


def test_events_at_one_time_give_one_row_with_the_state_after_all_of_them():
    ev = sorted_events(events([("u", "a", 5.0, 0), ("u", "b", 3.0, 0), ("v", "a", 1.0, 0)]))
    out = user_activity(ev, item_genre_matrix(ITEMS, []), 0)
    u = out[out.user_id == "u"]
    assert len(u) == 1 and u["user_interactions"].item() == 2
    assert u["user_mean_rating"].item() == pytest.approx(4.0)
    assert len(out) == 2


def test_item_windows_count_events_before_the_row_and_decay_when_they_leave():
    ev = sorted_events(events([("u", "a", 5.0, 0), ("v", "a", 3.0, 24), ("w", "a", 4.0, 24 * 10)]))
    out = item_stats(ev, (7,)).set_index("event_timestamp")
    day = pd.Timedelta(days=1)
    # change points: each event (+tick) and each event + 7 days (+tick)
    assert len(out) == 6
    at = {t - TICK: row for t, row in out.iterrows()}
    assert at[T0]["popularity_7d"] == 1 and at[T0]["item_interactions"] == 1
    assert at[T0 + day]["popularity_7d"] == 2
    assert at[T0 + 7 * day]["popularity_7d"] == 1  # the first event left the window
    assert at[T0 + 8 * day]["popularity_7d"] == 0  # a quiet item falls back to 0
    assert at[T0 + 10 * day]["popularity_7d"] == 1
    assert at[T0 + 10 * day]["item_interactions"] == 3
    assert at[T0 + 10 * day]["item_mean_rating"] == pytest.approx(4.0)


def test_profiles_carry_age_buckets_and_are_known_from_the_first_event():
    users = pd.DataFrame(
        {"user_id": ["u", "v", "x"], "age": [17, 40, None], "gender": ["F", "M", None]}
    )
    ev = sorted_events(events([("u", "a", 5.0, 3), ("v", "a", 3.0, 5)]))
    out = user_profile(users, ev).set_index("user_id")
    assert out.loc["u", "age_bucket"] == 0 and out.loc["v", "age_bucket"] == 3
    assert pd.isna(out.loc["x", "age_bucket"])
    assert out.loc["u", "event_timestamp"] == T0 + pd.Timedelta(hours=3)
    assert out.loc["x", "event_timestamp"] == T0 + pd.Timedelta(hours=3)  # no events: earliest


def test_encoder_reads_age_buckets_like_raw_ages():
    raw = pd.DataFrame(
        {"user_id": ["u", "v", "w"], "age": [17, 40, None], "gender": ["F", "M", "F"]}
    )
    bucketed = user_profile(raw, sorted_events(events([("u", "a", 1.0, 0)])))
    a = FeatureEncoder.fit(raw, None).codes_of_users(np.array(["u", "v", "w"], dtype=object))
    b = FeatureEncoder.fit(bucketed, None).codes_of_users(np.array(["u", "v", "w"], dtype=object))
    np.testing.assert_array_equal(a, b)
    assert a[2, 0] == 0  # unknown age


def test_build_writes_the_six_tables_the_genre_order_and_the_lineage(tmp_path):
    ev = events([("u", "a", 4.0, 0), ("v", "b", 3.0, 1)])
    rows = build_features(ev, None, ITEMS, tmp_path, FeatureConfig(recent_n=3))
    assert set(rows) == {
        "user_profile",
        "user_activity",
        "user_state",
        "item_profile",
        "item_stats",
        "item_content",
    }
    meta = read_store_meta(tmp_path)
    assert meta.lineage == [interactions_checksum(ev)] and meta.recent_n == 3
    assert meta.probe_user == "u" and meta.genres == ["Comedy", "Drama", "War"]
    rows = build_features(ev, None, ITEMS, tmp_path, lineage=["abc", "def"])
    assert read_store_meta(tmp_path).lineage == ["abc", "def"]
    for name in rows:
        table = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert str(table["event_timestamp"].dtype) == "datetime64[ns, UTC]", name
    items = pd.read_parquet(tmp_path / "item_profile.parquet").set_index("item_id")
    assert (
        list(items.loc["a", "genres"]) == ["Drama", "War"]
        and items.loc["b", "release_year"] == 1995
    )
    assert (tmp_path / "feature_meta.json").read_text().count("Comedy") == 1
    text = pd.read_parquet(tmp_path / "item_content.parquet").set_index("item_id")
    assert set(text.columns) == {"title", "description", "event_timestamp"}
    assert (text["description"] == "").all()  # a catalog without descriptions


def test_a_build_in_buckets_writes_the_tables_a_build_in_one_piece_writes(tmp_path):
    """Users and items in hash buckets of a few events each (what bounds memory at scale):
    every table holds the same rows as the one-piece build, in the same schema."""
    rng = np.random.default_rng(0)
    rows = [
        (f"u{rng.integers(9)}", "abc"[rng.integers(3)], float(rng.integers(1, 6)), h)
        for h in range(60)
    ]
    ev = events(rows)
    whole = build_features(ev, None, ITEMS, tmp_path / "whole")
    parts = build_features(ev, None, ITEMS, tmp_path / "parts", FeatureConfig(events_per_bucket=7))
    assert parts == whole
    assert_same_tables(tmp_path / "whole", tmp_path / "parts", whole)


def test_the_build_engine_follows_the_feature_stage_unless_named(monkeypatch):
    monkeypatch.delenv("RECSYS_OFFLINE_ENGINE", raising=False)
    assert FeatureConfig().engine == "pandas"
    monkeypatch.setenv("RECSYS_OFFLINE_ENGINE", "spark")  # the cluster's Feast tasks
    assert FeatureConfig().engine == "spark"
    assert FeatureConfig(engine="pandas").engine == "pandas"
    monkeypatch.setenv("RECSYS_OFFLINE_ENGINE", "duckdb")
    assert FeatureConfig().engine == "pandas"
    with pytest.raises(ValueError, match="engine must be one of"):
        FeatureConfig(engine="dask")
