"""MovieLens parsing and the fetch fallback, on tiny archives in both source formats."""

import io
import zipfile

import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.data import movielens
from recsys.data.io import interactions_checksum, read_dataset_info

RATINGS = [
    ("196", "242", "3", "881250949"),
    ("186", "302", "3", "891717742"),
    ("22", "242", "1", "878887116"),
]
USERS = [
    ("22", "25", "M", "writer", "40206"),
    ("186", "39", "F", "executive", "00000"),
    ("196", "49", "M", "writer", "55105"),
]


def grouplens_zip() -> bytes:
    genres = ["0"] * len(movielens.GENRES)
    comedy, drama = genres.copy(), genres.copy()
    comedy[movielens.GENRES.index("Comedy")] = "1"
    drama[movielens.GENRES.index("Drama")] = "1"
    drama[movielens.GENRES.index("Romance")] = "1"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "\n".join("\t".join(r) for r in RATINGS) + "\n")
        zf.writestr("ml-100k/u.user", "\n".join("|".join(u) for u in USERS) + "\n")
        zf.writestr(
            "ml-100k/u.item",
            "\n".join(
                [
                    "|".join(["242", "Kolya (1996)", "24-Jan-1997", "", "http://x", *comedy]),
                    "|".join(
                        ["302", "L.A. Confidential (1997)", "01-Jan-1997", "", "http://y", *drama]
                    ),
                ]
            )
            + "\n",
        )
    return buf.getvalue()


def recbole_wheel(path):
    prefix = movielens.RECBOLE_PREFIX
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            f"{prefix}.inter",
            "user_id:token\titem_id:token\trating:float\t"
            "timestamp:float\n" + "\n".join("\t".join(r) for r in RATINGS) + "\n",
        )
        zf.writestr(
            f"{prefix}.user",
            "user_id:token\tage:token\tgender:token\t"
            "occupation:token\tzip_code:token\n" + "\n".join("\t".join(u) for u in USERS) + "\n",
        )
        zf.writestr(
            f"{prefix}.item",
            "item_id:token\tmovie_title:token_seq\t"
            "release_year:token\tclass:token_seq\n242\tKolya\t1997\tComedy\n"
            "302\tL.A. Confidential\t1997\tDrama Romance\n",
        )
    return path


def test_both_formats_parse_to_the_same_tables(tmp_path):
    a = movielens._parse_grouplens(grouplens_zip())
    b = movielens._parse_recbole(recbole_wheel(tmp_path / "r.whl"))
    pd.testing.assert_frame_equal(a[0], b[0])
    users_a, items_a = movielens._normalise_side(a[1], a[2])
    users_b, items_b = movielens._normalise_side(b[1], b[2])
    pd.testing.assert_frame_equal(users_a, users_b)
    pd.testing.assert_frame_equal(items_a, items_b)
    assert items_a.genres.tolist() == ["Comedy", "Drama|Romance"]
    assert items_a.title.tolist() == ["Kolya", "L.A. Confidential"]
    assert users_a.user_id.tolist() == ["22", "186", "196"]  # numeric order, string ids


@pytest.fixture
def tiny_reference(monkeypatch, tmp_path):
    """Point the verifier at the tiny data and make the network source fail."""
    ratings = movielens._parse_grouplens(grouplens_zip())[0]
    from recsys.data.validate import validate_interactions

    clean = validate_interactions(ratings).clean
    monkeypatch.setattr(movielens, "EXPECTED", {"n_interactions": 3, "n_users": 3, "n_items": 2})
    monkeypatch.setattr(movielens, "EXPECTED_CHECKSUM", interactions_checksum(clean))
    calls = {"download": 0, "wheel": 0}

    def offline(url, timeout):
        calls["download"] += 1
        raise OSError("Name or service not known")

    def wheel(timeout):
        calls["wheel"] += 1
        return recbole_wheel(tmp_path / "recbole.whl")

    monkeypatch.setattr(movielens, "_download", offline)
    monkeypatch.setattr(movielens, "_recbole_wheel", wheel)
    return calls


def test_fetch_falls_back_to_the_wheel_then_serves_from_cache(tiny_reference, tmp_path):
    first = movielens.fetch()
    info = read_dataset_info(first)
    assert info.source == "recbole==1.2.1 wheel" and info.n_interactions == 3
    assert tiny_reference == {"download": 1, "wheel": 1}
    assert movielens.fetch() == first
    assert tiny_reference == {"download": 1, "wheel": 1}  # second call: no source touched
    copy = movielens.fetch(tmp_path / "elsewhere")
    assert read_dataset_info(copy).checksum == info.checksum
    ratings = pd.read_parquet(first / "interactions.parquet")
    assert ratings.user_id.tolist() == ["196", "186", "22"]
    assert str(ratings.timestamp.dt.tz) == "UTC"


def test_fetch_refuses_data_that_does_not_match(tiny_reference, monkeypatch):
    monkeypatch.setattr(movielens, "EXPECTED_CHECKSUM", "0" * 64)
    with pytest.raises(RecsysError, match="does not match the reference"):
        movielens.fetch()
    assert not (movielens.datasets_dir() / movielens.NAME / "dataset.json").exists()
