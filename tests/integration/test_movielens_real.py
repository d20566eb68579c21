"""The real MovieLens-100k: counts, schema, checksum, and both source formats agreeing."""

import io
import json
import time
import zipfile

import pandas as pd

from recsys.data import movielens
from recsys.data.io import read_dataset_info


def test_fetch_cli_is_verified_and_cached(run_cli, movielens_dir):
    t0 = time.perf_counter()
    proc = run_cli("data", "fetch", "movielens-100k")
    elapsed = time.perf_counter() - t0
    assert "100000 interactions, 943 users, 1682 items" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == str(movielens_dir)
    info = json.loads((movielens_dir / "dataset.json").read_text())
    assert info["checksum"] == movielens.EXPECTED_CHECKSUM
    assert elapsed < 60  # a cached call does no network work (generous: CLI start-up)


def test_tables_follow_the_contract(movielens_dir):
    ratings = pd.read_parquet(movielens_dir / "interactions.parquet")
    users = pd.read_parquet(movielens_dir / "users.parquet")
    items = pd.read_parquet(movielens_dir / "items.parquet")
    assert ratings.iloc[0].tolist()[:3] == ["196", "242", 3.0]  # original ids, as strings
    assert str(ratings.timestamp.dt.tz) == "UTC"
    assert ratings.rating.between(1, 5).all()
    assert len(users) == 943 and set(users.gender) == {"M", "F"}
    assert {"age", "occupation", "zip_code"} <= set(users.columns)
    assert len(items) == 1682 and items.release_year.notna().sum() >= 1680
    toy = items[items.item_id == "1"].iloc[0]
    assert (toy.title, toy.release_year, toy.genres) == (
        "Toy Story",
        1995,
        "Animation|Children's|Comedy",
    )


def _as_grouplens_zip(d) -> bytes:
    """Re-encode the dataset in the official GroupLens layout (u.data, u.user, u.item)."""
    ratings = pd.read_parquet(d / "interactions.parquet")
    users = pd.read_parquet(d / "users.parquet")
    items = pd.read_parquet(d / "items.parquet")
    epoch = ratings.timestamp.astype("int64") // 10**9
    data = "\n".join(
        f"{u}\t{i}\t{int(r)}\t{t}"
        for u, i, r, t in zip(ratings.user_id, ratings.item_id, ratings.rating, epoch, strict=True)
    )
    user_lines = "\n".join("|".join(map(str, row)) for row in users.itertuples(index=False))
    item_lines = []
    for row in items.itertuples(index=False):
        flags = ["1" if g in row.genres.split("|") else "0" for g in movielens.GENRES]
        date = "" if pd.isna(row.release_year) else f"01-Jan-{row.release_year}"
        title = row.title if pd.isna(row.release_year) else f"{row.title} ({row.release_year})"
        item_lines.append("|".join([row.item_id, title, date, "", "http://x", *flags]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", data + "\n")
        zf.writestr("ml-100k/u.user", user_lines + "\n")
        zf.writestr("ml-100k/u.item", "\n".join(item_lines).encode("latin-1"))
    return buf.getvalue()


def test_grouplens_layout_gives_the_same_dataset(movielens_dir, tmp_path):
    ratings, users, items = movielens._parse_grouplens(_as_grouplens_zip(movielens_dir))
    movielens._write_dataset(tmp_path / "gl", ratings, users, items, "grouplens-test")
    assert read_dataset_info(tmp_path / "gl").checksum == movielens.EXPECTED_CHECKSUM
    for name in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "gl" / f"{name}.parquet"),
            pd.read_parquet(movielens_dir / f"{name}.parquet"),
        )
