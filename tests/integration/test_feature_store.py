"""The real Feast repository: apply, materialize, point-in-time training sets, online reads,
pushes from events — on SQLite, and on a real Redis server."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys.data.io import age_bucket
from recsys.features.asof import AsofOfflineStoreConfig, _spark
from recsys.features.build import FeatureConfig, build_features
from recsys.features.events import EventIngestor, EventLog
from recsys.features.offline_store import training_set
from recsys.features.spark import stop_spark
from recsys.features.store import DEFAULT_SERVICE, FeatureStore
from recsys.models.kinds import create_model
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.recommend import Request, recommend_frame
from recsys.state.items import ITEM_CONTEXT
from recsys.state.offline import item_context, states_from_interactions
from recsys.state.user import DEFAULT_RECENT_N
from tests.helpers import (
    asof_case,
    assert_same_tables,
    check_asof,
    copy_feature_repo,
    make_interactions,
)

DAY = pd.Timedelta(days=1)


def side_tables(interactions):
    users = pd.DataFrame({"user_id": sorted(interactions.user_id.unique())})
    users["age"] = 15 + users.index
    users["gender"] = np.where(users.index % 2, "M", "F")
    users["occupation"] = "student"
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)]})
    items["genres"] = [f"G{i % 4}|Common" for i in range(40)]
    items["release_year"] = 1990 + np.arange(40) % 10
    return users, items


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A feature repository built from 30 users × 8 events spread over 30 days."""
    interactions = make_interactions(n_users=30, n_items=40, per_user=8)
    users, items = side_tables(interactions)
    path = copy_feature_repo(tmp_path_factory.mktemp("feature_repo"))
    FeatureStore(path).refresh(interactions, users, items)
    return path, interactions, users, items


@pytest.fixture(scope="module")
def spark_afterwards():
    yield
    stop_spark()


@pytest.fixture(params=["duckdb", "spark"])
def engine(request, monkeypatch, spark_afterwards):
    """The as-of offline store's engine: DuckDB, and the same SQL on Spark's local mode."""
    monkeypatch.setenv("RECSYS_OFFLINE_ENGINE", request.param)
    return request.param


def test_training_rows_see_only_what_happened_before_them(repo, engine):
    path, interactions, _, _ = repo
    rows, users, items, joined = FeatureStore(path).load_training_set(interactions)
    assert len(joined) == len(interactions)
    pd.testing.assert_frame_equal(
        rows[["user_id", "item_id"]], interactions[["user_id", "item_id"]]
    )
    for r in joined.itertuples():
        mine = interactions[
            (interactions.user_id == r.user_id) & (interactions.timestamp < r.timestamp)
        ]
        its = interactions[
            (interactions.item_id == r.item_id) & (interactions.timestamp < r.timestamp)
        ]
        if len(mine):
            assert r.user_interactions == len(mine)  # never its own event
        else:
            assert pd.isna(r.user_interactions)
        if len(its):
            assert r.item_interactions == len(its)
            assert r.popularity_7d == (its.timestamp >= r.timestamp - 7 * DAY).sum()
        else:
            assert pd.isna(r.item_interactions)
    # the models' side tables come out of the join: every user, the whole catalog
    assert len(users) == 30 and users.age_bucket.notna().all()
    assert len(items) == 40 and items.genres.str.contains("Common").all()


def test_the_as_of_join_gives_what_feasts_own_duckdb_join_gives(repo, engine):
    """The as-of store (either engine) against Feast's own DuckDB store, which pairs each
    entity row with every feature row of its key: the same frame, row for row."""
    path, interactions, _, _ = repo
    stock = path / "feature_store.feast-duckdb.yaml"
    stock.write_text(
        (path / "feature_store.yaml")
        .read_text()
        .replace("type: recsys.features.asof.AsofOfflineStore", "type: duckdb")
    )
    from feast import FeatureStore as FeastStore

    feast = FeastStore(repo_path=str(path), fs_yaml_file=stock)
    assert type(feast._get_provider().offline_store).__name__ == "DuckDBOfflineStore"
    ours = FeatureStore(path)
    assert ours.feast.config.offline_store.engine == engine
    probe = interactions.assign(timestamp=interactions.timestamp + pd.Timedelta(seconds=1))
    both = pd.concat([interactions, probe], ignore_index=True)
    expected = training_set(feast, both, DEFAULT_SERVICE)
    pd.testing.assert_frame_equal(ours.training_set(both), expected)
    assert expected.user_interactions.notna().any() and expected.popularity_7d.notna().any()


def test_a_value_written_after_an_interaction_never_reaches_its_row(repo, engine):
    path, interactions, _, _ = repo
    table = path / "data" / "user_profile.parquet"
    original = pd.read_parquet(table)
    first = interactions.sort_values("timestamp").iloc[0]
    late = original[original.user_id == first.user_id].assign(
        gender="LATE", event_timestamp=first.timestamp + pd.Timedelta(seconds=1)
    )
    try:
        pd.concat([original, late]).to_parquet(table)
        probe = pd.DataFrame(
            {
                "user_id": [first.user_id] * 2,
                "item_id": [first.item_id] * 2,
                "timestamp": [first.timestamp, first.timestamp + pd.Timedelta(seconds=2)],
            }
        )
        joined = FeatureStore(path).training_set(probe)
        assert joined.gender.tolist() == [
            original.set_index("user_id").gender[first.user_id],
            "LATE",
        ]
    finally:
        original.to_parquet(table)


@pytest.mark.parametrize("boundary", ["hour", "day", "month"])
def test_a_value_written_just_before_a_window_boundary_reaches_rows_just_after_it(
    repo, boundary, engine
):
    """The point-in-time join must not lose a value written one second before a time window's
    boundary (an hour, a day, a month) for entity rows one second after it: a join that
    splits the feature rows into windows and looks back only within a row's own window
    misses it (Feast's Ray offline store is suspected of this for large views)."""
    path, interactions, _, _ = repo
    table = path / "data" / "user_profile.parquet"
    original = pd.read_parquet(table)
    user = interactions.sort_values("timestamp").iloc[0]
    later = user.timestamp + pd.Timedelta(days=35)  # after every event of the fixture
    edge = {
        "hour": later.ceil("h"),
        "day": later.ceil("D"),
        "month": (later + pd.offsets.MonthBegin(1)).normalize(),
    }[boundary]
    second = pd.Timedelta(seconds=1)
    written = original[original.user_id == user.user_id].assign(
        gender=["BEFORE-EDGE"], event_timestamp=edge - second
    )
    after = written.assign(gender="AFTER-PROBE", event_timestamp=edge + 2 * second)
    try:
        pd.concat([original, written, after]).to_parquet(table)
        probe = pd.DataFrame(
            {
                "user_id": [user.user_id] * 3,
                "item_id": [user.item_id] * 3,
                "timestamp": [edge - 2 * second, edge + second, edge + 3 * second],
            }
        )
        joined = FeatureStore(path).training_set(probe)
        assert joined.sort_values("timestamp").gender.tolist() == [
            original.set_index("user_id").gender[user.user_id],  # before the write
            "BEFORE-EDGE",  # across the boundary: the value written a second before it
            "AFTER-PROBE",
        ]
    finally:
        original.to_parquet(table)


def test_a_rebuild_applies_only_when_the_definitions_changed(repo):
    """``refresh`` runs ``feast apply`` only when what it reads changed (the first build, an
    edited definition, a lost registry) and skips it otherwise; the store reads the same."""
    path, interactions, users, items = repo
    again = FeatureStore(path).refresh(interactions, users, items)
    assert again["apply_s"] < 0.1, again
    user = interactions.user_id.iloc[0]
    state, _ = FeatureStore(path).online().read_user(user)
    assert set(state.seen) == set(interactions[interactions.user_id == user].item_id)

    definitions = path / "feature_views.py"
    original = definitions.read_text()
    try:  # the same definitions in another text: applied once, then skipped
        definitions.write_text(original + "\n# edited\n")
        assert FeatureStore(path).apply(if_changed=True) != ""  # the CLI ran
        assert FeatureStore(path).apply(if_changed=True) == ""  # and not again
    finally:
        definitions.write_text(original)


def test_the_online_state_is_the_offline_state_of_every_user(repo):
    """Store parity: what materialization put online is what the offline path computes."""
    path, interactions, _, _ = repo
    reader = FeatureStore(path).online()
    users = sorted(interactions.user_id.unique())
    offline = states_from_interactions(interactions, users, DEFAULT_RECENT_N)
    for user, expected in zip(users, offline, strict=True):
        state, _ = reader.read_user(user)
        assert state == expected, user
        mine = interactions[interactions.user_id == user]
        assert set(state.seen) == set(mine.item_id)


def test_the_rankers_store_features_read_online_equal_the_offline_ones(repo):
    """What the ranker reads of the store (with ``store_context``) is in the feature service,
    and the online values are those the offline path computes from the interactions."""
    path, interactions, _, _ = repo
    reader = FeatureStore(path).online()
    readable = {*reader.user_features, *reader.item_features}
    model = MultiStageModel(MultiStageConfig(store_context=True))
    assert set(model.state_spec().context) <= readable
    items = [f"i{i}" for i in range(42)]  # i40, i41: never interacted with
    online, offline = reader.item_context(items), item_context(interactions, items)
    for name in ITEM_CONTEXT:
        np.testing.assert_allclose(online[name], offline[name], rtol=1e-6, equal_nan=True)
    assert np.isnan(online["item_mean_rating"][-2:]).all()
    users = sorted(interactions.user_id.unique())
    expected = states_from_interactions(interactions, users, DEFAULT_RECENT_N)
    assert [reader.read_user(u)[0].features for u in users] == [s.features for s in expected]


def test_one_online_read_gives_the_user_and_200_candidates(repo):
    path, interactions, _, _ = repo
    reader = FeatureStore(path).online()
    candidates = [f"i{i}" for i in range(40)] * 5  # 200 items, repeats included
    result = reader.read("u3", candidates)
    mine = interactions[interactions.user_id == "u3"].sort_values("timestamp", ascending=False)
    assert result.known_user and result.user["user_interactions"] == len(mine)
    assert list(result.state.recent) == mine.item_id.tolist()
    age = repo[2].set_index("user_id").age["u3"]
    assert result.user["age_bucket"] == age_bucket(pd.Series([age])).iloc[0]
    assert result.items.item_id.tolist() == candidates
    counts = interactions.item_id.value_counts()
    got = result.items.drop_duplicates("item_id").set_index("item_id").item_interactions
    assert got.to_dict() == {i: counts.get(i) for i in got.index if i in counts}
    assert not reader.read("nobody", ["i1"]).known_user


def test_an_event_updates_the_online_features_and_the_next_recommendations(repo, tmp_path):
    path, interactions, _, _ = repo
    store = FeatureStore(path)
    reader = store.online()
    model = create_model("ease", {"l2": 10.0}).fit(interactions)
    before = reader.read("u5")

    def recommend():
        state, _ = reader.read_user("u5")
        rows = recommend_frame(model, ["u5"], Request(k=5), states=[state])
        return rows.item_id.tolist()

    top = recommend()[0]
    log = EventLog(tmp_path / "events")
    result = EventIngestor(store, log).ingest(
        json.dumps({"user_id": "u5", "item_id": top, "type": "rating", "rating": 5})
    )
    assert result.accepted and result.pushed and not result.new_user
    after = reader.read("u5")
    assert after.user["user_interactions"] == before.user["user_interactions"] + 1
    assert after.state.recent == (top, *before.state.recent)
    assert after.state.seen == (*before.state.seen, top)
    assert after.user["user_ratings"] == before.user["user_ratings"] + 1
    assert top not in recommend()
    assert log.read().item_id.tolist() == [top]  # durably logged


def test_bad_events_are_rejected_logged_and_change_nothing(repo, tmp_path):
    path, _, _, _ = repo
    store = FeatureStore(path)
    log = EventLog(tmp_path / "events")
    ingestor = EventIngestor(store, log)
    before = store.online().read("u7")
    bad = [
        {"user_id": "u7", "item_id": "i1", "type": "click", "extra": 1},
        {"user_id": "u7", "item_id": "i1", "type": "rating", "rating": 11},
        {"user_id": "u7", "item_id": "i1", "type": "click", "timestamp": True},
        {"user_id": ["u7"], "item_id": "i1", "type": "click"},
    ]
    reasons = [ingestor.ingest(b).reason for b in bad]
    assert reasons[0] == "extra: unknown field"
    assert reasons[1] == "rating: 11.0 is outside [1.0, 5.0]"
    assert reasons[2].startswith("timestamp: Input should be a valid datetime")
    assert reasons[3].startswith("user_id: Input should be a valid string")
    assert log.read("rejected").reason.tolist() == reasons
    assert log.read().empty
    after = store.online().read("u7")
    assert after.user == before.user and after.state == before.state


def test_a_clock_skewed_event_is_kept_at_its_time_of_receipt(repo, tmp_path):
    """A time far ahead of the server's clock (or before 1970) is not the client's fault to
    fix: the event is kept, stamped when received, with a warning and the client's value."""
    path, _, _, _ = repo
    log = EventLog(tmp_path / "events")
    ingestor = EventIngestor(FeatureStore(path), log)
    sent = {"user_id": "u8", "item_id": "i1", "type": "click", "timestamp": "2999-01-01T00:00:00Z"}
    result = ingestor.ingest(sent)
    assert result.accepted and result.pushed, result.reason
    assert "taken as received" in result.reason and "2999-01-01" in result.reason
    (kept,) = log.read().to_dict("records")
    assert kept["client_timestamp"] == "2999-01-01T00:00:00Z"
    assert pd.Timestamp(kept["timestamp"]) == pd.Timestamp(kept["received"])


def test_an_unseen_user_becomes_a_cold_start_user(repo, tmp_path):
    path, _, _, _ = repo
    store = FeatureStore(path)
    result = EventIngestor(store, EventLog(tmp_path / "ev")).ingest(
        {"user_id": "brand-new", "item_id": "i2", "type": "view"}
    )
    assert result.accepted and result.new_user
    read = store.online().read("brand-new")
    user = read.user
    assert user["user_interactions"] == 1 and read.state.seen == read.state.recent == ("i2",)
    assert user["age_bucket"] is None  # no profile yet: the cold-start path
    assert user["genre_affinity"][0] == pytest.approx(1.0)  # "Common" sorts first


def test_the_cli_builds_applies_materializes_reads_and_trains_from_features(
    run_cli, cli_here, tmp_path
):
    """Every ``recsys features`` command in order, in this process; the refused event through
    the installed command, for its exit code and message."""
    interactions = make_interactions(n_users=12, n_items=40, per_user=6, seed=3)
    users, items = side_tables(interactions)
    data = tmp_path / "data"
    data.mkdir()
    for name, table in (("interactions", interactions), ("users", users), ("items", items)):
        table.to_parquet(data / f"{name}.parquet")
    repo = copy_feature_repo(tmp_path / "repo")
    assert "user_activity" in cli_here("features", "build", "--data", data, "--repo", repo).stdout
    assert (
        "Created feature service ranker_v1" in cli_here("features", "apply", "--repo", repo).stdout
    )
    assert "into sqlite" in cli_here("features", "materialize", "--repo", repo).stdout
    got = json.loads(
        cli_here("features", "get", "--user", "u1", "--items", "i1,i5", "--repo", repo).stdout
    )
    assert got["user"]["user_interactions"] == 6 and len(got["items"]) == 2
    assert len(got["state"]["seen_items"]) == 6 and len(got["state"]["recent_items"]) == 6
    events = tmp_path / "events"
    ok = cli_here(
        "features",
        "event",
        '{"user_id":"u1","item_id":"i9","type":"view"}',
        "--repo",
        repo,
        "--events-dir",
        events,
    )
    assert "accepted (known user, pushed)" in ok.stdout
    bad = run_cli(
        "features",
        "event",
        '{"user_id":"u1","type":"view"}',
        "--repo",
        repo,
        "--events-dir",
        events,
        check=False,
    )
    assert bad.returncode == 1 and "item_id: Field required" in bad.stderr
    out = tmp_path / "ts.parquet"
    cli_here("features", "training-set", "--data", data, "--out", out, "--repo", repo)
    assert len(pd.read_parquet(out)) == len(interactions)
    named = tmp_path / "ts-duckdb.parquet"  # the engine named on the command line
    cli_here(
        "features",
        "training-set",
        "--data",
        data,
        "--out",
        named,
        "--repo",
        repo,
        "--engine",
        "duckdb",
    )
    pd.testing.assert_frame_equal(pd.read_parquet(named), pd.read_parquet(out))
    model = tmp_path / "model"
    cli_here("train", "--data", data, "--model", "ease", "--out", model, "--features", repo)
    assert json.loads((model / "manifest.json").read_text())["feature_service"] == "ranker_v1"


def test_the_redis_online_store_serves_the_same_features(repo, redis_server, monkeypatch, tmp_path):
    path, _, _, _ = repo
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_server)
    redis = FeatureStore(path, "redis")
    redis.apply()
    result = redis.materialize()
    assert result["online"] == "redis" and result["rows"]["user_activity"] > 0
    on_redis = redis.online()
    on_sqlite = FeatureStore(path, "sqlite").online()
    items = [f"i{i}" for i in range(40)]
    a, b = on_redis.read("u9", items), on_sqlite.read("u9", items)
    assert a.user == b.user
    pd.testing.assert_frame_equal(a.items, b.items)
    ingest = EventIngestor(FeatureStore(path, "redis"), EventLog(tmp_path / "ev"))
    assert ingest.ingest({"user_id": "u9", "item_id": "i0", "type": "click"}).pushed
    assert a.state == b.state
    assert on_redis.read("u9").state.recent[0] == "i0"
    assert on_sqlite.read("u9").state == b.state  # the other store is untouched


def test_the_as_of_sql_gives_on_spark_what_it_gives_on_duckdb(tmp_path, spark_afterwards):
    """The hand-made rows of the unit test (ties, duplicates, a TTL, a missing key), on Spark."""
    sql, entity, paths, expected = asof_case(tmp_path)
    check_asof(
        _spark(AsofOfflineStoreConfig(engine="spark"), sql, entity, paths).to_pandas(), expected
    )


def test_the_feature_build_on_spark_writes_what_the_embedded_build_writes(
    tmp_path, spark_afterwards
):
    """The per-event tables' bucket functions on Spark's executors (users and items hashed into
    groups by Spark): every table holds the rows of the embedded build, in its schema; two
    events of one user in the same second keep their order in the user's state; times in
    milliseconds keep every digit (as a double, a nanosecond time in 2024 does not)."""
    interactions = make_interactions(n_users=20, n_items=30, per_user=6, seed=1)
    millis = np.random.default_rng(1).integers(1, 1000, len(interactions))
    interactions["timestamp"] += pd.to_timedelta(millis, unit="ms")
    first, second = interactions.index[:2]  # u0's first two events: one time
    interactions.loc[second, "timestamp"] = interactions.loc[first, "timestamp"]
    users, items = side_tables(interactions)
    here = build_features(interactions, users, items, tmp_path / "here", FeatureConfig())
    config = FeatureConfig(events_per_bucket=25, engine="spark")  # 5 groups
    spark = build_features(interactions, users, items, tmp_path / "spark", config)
    assert spark == here
    assert_same_tables(tmp_path / "here", tmp_path / "spark", here)
    state = pd.read_parquet(tmp_path / "spark" / "user_state.parquet").set_index("user_id")
    tied = interactions.loc[[second, first], "item_id"].tolist()  # latest first, input order
    assert state.loc["u0", "recent_items"].tolist()[-2:] == tied
    assert not list((tmp_path / "spark").glob(".spark-build-*"))  # the staged events are gone
