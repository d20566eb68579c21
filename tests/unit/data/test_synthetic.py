"""The synthetic generator: files, determinism, chunking, the planted signal, drift, errors."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.config import RecsysError
from recsys.data import synthetic
from recsys.data.io import dataset_paths, interactions_checksum, read_dataset_info
from recsys.data.synthetic import generate, make_world
from recsys.data.synthetic_config import WORLDS, SynthConfig, config_for
from recsys.data.synthetic_tables import DRIFT_OCCUPATIONS, GENRES, OCCUPATIONS
from recsys.data.validate import validate_interactions

SMALL = SynthConfig(n_users=400, n_items=150, n_interactions=6_000, chunk_size=1_500, seed=3)


def _read(directory) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    paths = dataset_paths(directory)
    return tuple(pd.read_parquet(paths[k]) for k in ("interactions", "users", "items"))


def _index(ids: pd.Series) -> np.ndarray:
    return ids.str[1:].astype(int).to_numpy()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "small"
    info = generate(SMALL, out, progress=False)
    return out, info, *_read(out)


def test_schema_dtypes_and_counts(small):
    out, info, df, users, items = small
    schema = pq.read_schema(dataset_paths(out)["interactions"])
    assert [(f.name, f.type) for f in schema] == [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("timestamp", pa.timestamp("ns", tz="UTC")),
    ]
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert df["user_id"].map(type).eq(str).all() and df["item_id"].map(type).eq(str).all()
    assert len(df) == info.n_interactions == SMALL.n_interactions
    assert info.n_users == df["user_id"].nunique() and info.n_items == df["item_id"].nunique()
    assert (info.name, info.source) == ("synthetic", "synthetic")
    assert info.extra["config"] == asdict(SMALL)
    assert "affinity" in info.extra["ground_truth"]
    assert list(users["user_id"]) == [f"u{i}" for i in range(SMALL.n_users)]
    assert list(items["item_id"]) == [f"i{i}" for i in range(SMALL.n_items)]
    assert users["age"].dtype == np.int64 and items["release_year"].dtype == np.int64
    assert set(users["gender"]) == {"M", "F"} and set(users["occupation"]) <= set(OCCUPATIONS)
    assert users["zip_code"].str.fullmatch(r"\d{5}").all()
    genres = items["genres"].str.split("|").explode()
    assert set(genres) <= set(GENRES) and genres.nunique() > len(GENRES) // 2
    assert df["rating"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all() and df["rating"].nunique() == 5


def test_checksum_matches_the_file(small):
    out, info, df, *_ = small
    assert info.checksum == read_dataset_info(out).checksum == interactions_checksum(df)


def test_validation_finds_no_bad_rows(small):
    result = validate_interactions(small[2], rating_range=(1, 5))
    assert len(result.quarantine) == 0 and len(result.clean) == SMALL.n_interactions


def test_same_seed_same_bytes_other_seed_other_data(small, tmp_path):
    out, info, *_ = small
    again = generate(SMALL, tmp_path / "again", progress=False)
    for key in ("interactions", "users", "items"):
        assert (
            dataset_paths(tmp_path / "again")[key].read_bytes()
            == dataset_paths(out)[key].read_bytes()
        ), key
    assert again.checksum == info.checksum
    other = generate(replace(SMALL, seed=4), tmp_path / "other", progress=False)
    assert other.checksum != info.checksum


def test_chunking_keeps_counts_and_time_order(small, tmp_path):
    first, end = (pd.Timestamp(ms, unit="ms", tz="UTC") for ms in SMALL.window_ms())
    whole = generate(replace(SMALL, chunk_size=10**6), tmp_path / "whole", progress=False)
    pieces = generate(replace(SMALL, chunk_size=700), tmp_path / "pieces", progress=False)
    assert whole.n_interactions == pieces.n_interactions == SMALL.n_interactions
    meta = pq.ParquetFile(dataset_paths(tmp_path / "pieces")["interactions"]).metadata
    assert meta.num_rows == SMALL.n_interactions and meta.num_row_groups == 9  # ceil(6000/700)
    for name in ("whole", "pieces"):
        ts = _read(tmp_path / name)[0]["timestamp"]
        assert ts.is_monotonic_increasing and ts.is_unique, name
        assert ts.iloc[0] >= first and ts.iloc[-1] < end, name


def test_popularity_is_skewed(small):
    counts = small[2]["item_id"].value_counts()
    top = counts.iloc[: SMALL.n_items // 10].sum() / SMALL.n_interactions
    assert top > 0.3


def test_choices_and_ratings_follow_the_latent_affinity(small):
    df = small[2]
    world = make_world(SMALL)
    users, items = _index(df["user_id"]), _index(df["item_id"])
    chosen = world.affinity(users, items)
    rng = np.random.default_rng(0)
    popular = rng.choice(SMALL.n_items, size=len(users), p=world.popularity)
    assert chosen.mean() > world.affinity(users, popular).mean() + 0.5
    assert np.corrcoef(chosen, df["rating"])[0, 1] > 0.3


def test_side_features_carry_the_factors(small):
    _, _, _, users, items = small
    world = make_world(SMALL)

    def r2(x: np.ndarray, y: np.ndarray) -> float:
        x = np.column_stack([x, np.ones(len(x))])
        residual = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
        return 1 - residual.var() / y.var()

    assert r2(world.user_factors, users["age"].to_numpy(float)) > 0.5
    drama = items["genres"].str.contains("Drama").to_numpy(float)
    assert r2(world.item_factors, drama) > 0.15


def test_drift_moves_user_features_and_popularity(small, tmp_path):
    _, _, df, users, _ = small
    generate(replace(SMALL, drift=0.5), tmp_path / "drift", progress=False)
    df_d, users_d, _ = _read(tmp_path / "drift")
    assert users_d["age"].mean() > users["age"].mean() + 5
    favoured = list(DRIFT_OCCUPATIONS)
    share = users["occupation"].isin(favoured).mean()
    assert users_d["occupation"].isin(favoured).mean() > share + 0.1
    top = df["item_id"].value_counts().index[: SMALL.n_items // 10]
    assert df_d["item_id"].isin(top).mean() < df["item_id"].isin(top).mean() - 0.15
    world, world_d = make_world(SMALL), make_world(replace(SMALL, drift=0.5))
    np.testing.assert_array_equal(world.user_factors, world_d.user_factors)  # same tastes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_users", 0),
        ("n_items", -1),
        ("n_interactions", 0),
        ("chunk_size", 0),
        ("latent_dim", 0),
        ("drift", 1.5),
        ("drift", -0.1),
        ("drift", float("nan")),
        ("days", 0.0),
        ("start", "not-a-time"),
        ("start", "2999-01-01T00:00:00+00:00"),
        ("start", "1900-01-01"),
        ("popularity_exponent", -1.0),
        ("popularity_offset", -1.0),
        ("popularity_decay", -0.5),
        ("activity_sigma", -0.1),
        ("sequence", -1.0),
        ("trend", 1.5),
        ("n_users", 2.5),
        ("n_items", True),
        ("seed", -1),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(RecsysError, match=f"{field}={value!r}".replace("+", r"\+")):
        SynthConfig(**{field: value})


def test_config_changed_after_creation_is_checked_before_writing(tmp_path):
    config = replace(SMALL)
    config.chunk_size = 0
    with pytest.raises(RecsysError, match="chunk_size=0"):
        generate(config, tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_failure_leaves_no_complete_looking_dataset(small, tmp_path, monkeypatch):
    out = tmp_path / "ds"
    generate(SMALL, out, progress=False)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "_choose", boom)
    with pytest.raises(RuntimeError):
        generate(replace(SMALL, seed=9), out, progress=False)
    assert not dataset_paths(out)["info"].exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "users.parquet",
    ]  # no temp files left


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    generate(replace(SMALL, n_interactions=100), tmp_path / "p", progress=True)
    assert "synthetic" in capsys.readouterr().err


MOVING = dict(n_users=300, n_items=400, n_interactions=24_000, seed=5)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The same sizes and seed in the independent world and the one fitted to MovieLens."""
    out = {}
    for world in ("independent", "movielens"):
        directory = tmp_path_factory.mktemp(world)
        generate(config_for(world, **MOVING), directory, progress=False)
        frame = _read(directory)[0]
        out[world] = frame.assign(user=_index(frame["user_id"]), item=_index(frame["item_id"]))
    return out


def _consecutive_similarity(df: pd.DataFrame, world, order: np.ndarray) -> float:
    """The mean ``sqrt(d) V[a]·V[b]`` of each user's consecutive items, in ``order``."""
    ordered = df.iloc[order]
    ordered = ordered.iloc[np.argsort(ordered["user"].to_numpy(), kind="stable")]
    users, items = ordered["user"].to_numpy(), ordered["item"].to_numpy()
    same = users[1:] == users[:-1]
    v = world.item_factors
    return float(np.mean((v[items[:-1]] * v[items[1:]]).sum(axis=1)[same]) * np.sqrt(v.shape[1]))


def test_in_a_moving_world_the_next_item_resembles_the_previous_one(worlds):
    """``sequence``: a user's consecutive items are closer in the latent space in time order
    than in a shuffled order; in the independent world the order carries nothing."""
    rng = np.random.default_rng(0)
    lift = {}
    for name, df in worlds.items():
        world = make_world(config_for(name, **MOVING))
        in_time = _consecutive_similarity(df, world, np.arange(len(df)))
        shuffled = _consecutive_similarity(df, world, rng.permutation(len(df)))
        lift[name] = in_time - shuffled
    assert lift["movielens"] > 0.15, lift
    assert abs(lift["independent"]) < 0.05, lift


def test_in_a_moving_world_popularity_moves_to_the_second_ranking_over_time(worlds):
    """``trend``: the items the second permutation favours gain share from the first half of
    the span to the second; without it they do not."""
    gain = {}
    for name, df in worlds.items():
        world = make_world(config_for(name, **MOVING))
        favoured = np.argsort(-world.moved)[: MOVING["n_items"] // 10]
        half = len(df) // 2
        early = np.isin(df["item"].to_numpy()[:half], favoured).mean()
        late = np.isin(df["item"].to_numpy()[half:], favoured).mean()
        gain[name] = late - early
    assert gain["movielens"] > 0.05, gain
    assert abs(gain["independent"]) < 0.02, gain


def test_the_movielens_world_has_a_flat_head_and_a_tail_of_rare_items(worlds):
    """The popularity curve fitted to MovieLens: the top 1% of items hold far less and many
    more items are rare than under the independent world's Zipf law."""
    shape = {}
    for name, df in worlds.items():
        counts = np.sort(np.bincount(df["item"], minlength=MOVING["n_items"]))[::-1]
        rare = (counts < 0.1 * counts.mean()).mean()
        shape[name] = (counts[: MOVING["n_items"] // 100].sum() / len(df), rare)
    assert shape["movielens"][0] < shape["independent"][0] / 2, shape
    assert shape["movielens"][1] > shape["independent"][1] + 0.05, shape


def test_a_world_is_its_knobs_and_an_unknown_one_is_named():
    config = config_for("movielens", **MOVING)
    assert {k: getattr(config, k) for k in WORLDS["movielens"]} == WORLDS["movielens"]
    assert config_for("independent", **MOVING) == SynthConfig(**MOVING)
    with pytest.raises(RecsysError, match="'mars' is unknown; known: independent, movielens"):
        config_for("mars", **MOVING)
