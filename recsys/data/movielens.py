"""MovieLens-100k: fetch, parse, verify and cache as a dataset directory.

Sources, in order: the official GroupLens zip, then the identical copy shipped inside the
``recbole==1.2.1`` wheel (fetched from the package index with ``pip download --no-deps``).
Both are parsed into the same normalised tables and checked against the known counts and the
checksum of the normalised ratings, so the source never changes the numbers.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from recsys.config import RecsysError, datasets_dir, recsys_home
from recsys.data.io import (
    ITEM,
    RATING,
    TS,
    USER,
    DatasetInfo,
    dataset_paths,
    interactions_checksum,
    read_dataset_info,
)
from recsys.data.validate import validate_interactions
from recsys.files import write_json, write_parquet

log = logging.getLogger(__name__)

NAME = "movielens-100k"
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_REQ = "recbole==1.2.1"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/ml-100k"
EXPECTED = {"n_interactions": 100_000, "n_users": 943, "n_items": 1_682}
# SHA-256 of the normalised ratings (see interactions_checksum), identical for both sources.
EXPECTED_CHECKSUM = "a34bd68a83369c6b6ef26abdb1a49e72763dd7841262f65756b6afc28e67a96f"
GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def fetch(dest: str | Path | None = None, *, timeout: float = 10.0) -> Path:
    """Return a verified MovieLens-100k dataset directory, fetching it on the first call.

    Args:
        dest: where the dataset directory goes (default ``$RECSYS_HOME/datasets/movielens-100k``).
        timeout: seconds to wait for a network source before trying the next.

    Returns:
        The dataset directory: interactions/users/items parquet and ``dataset.json``.
    """
    cache = datasets_dir() / NAME
    dest = Path(dest) if dest is not None else cache
    if _is_complete(dest):
        return dest
    if dest != cache and _is_complete(cache):
        _copy_dataset(cache, dest)
        return dest

    errors = []
    for source, loader in _sources(timeout):
        try:
            ratings, users, items = loader()
        except (OSError, RecsysError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
            log.warning("MovieLens-100k source %s unavailable: %s", source, exc)
            errors.append(f"{source}: {exc}")
            continue
        _write_dataset(dest, ratings, users, items, source)
        return dest
    raise RecsysError("could not fetch MovieLens-100k from any source:\n  " + "\n  ".join(errors))


def _is_complete(directory: Path) -> bool:
    paths = dataset_paths(directory)
    if not all(paths[k].exists() for k in ("interactions", "users", "items", "info")):
        return False
    try:
        return read_dataset_info(directory).checksum == EXPECTED_CHECKSUM
    except RecsysError:
        return False


def _copy_dataset(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for key in ("interactions", "users", "items", "info"):
        shutil.copy2(dataset_paths(src)[key], dataset_paths(dest)[key])


def _sources(timeout: float) -> list[tuple[str, Callable[[], tuple]]]:
    return [
        (GROUPLENS_URL, lambda: _parse_grouplens(_download(GROUPLENS_URL, timeout))),
        (f"{RECBOLE_REQ} wheel", lambda: _parse_recbole(_recbole_wheel(timeout))),
    ]


def _download(url: str, timeout: float) -> bytes:
    cached = recsys_home() / "downloads" / Path(url).name
    if cached.exists():
        return cached.read_bytes()
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https URL
        data = resp.read()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def _recbole_wheel(timeout: float) -> Path:
    downloads = recsys_home() / "downloads"
    found = sorted(downloads.glob("recbole-1.2.1-*.whl"))
    if not found:
        downloads.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--timeout",
            str(int(timeout)),
            "-d",
            str(downloads),
            RECBOLE_REQ,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        found = sorted(downloads.glob("recbole-1.2.1-*.whl"))
        if proc.returncode != 0 or not found:
            raise RecsysError(f"pip download {RECBOLE_REQ} failed: {proc.stderr.strip()[-500:]}")
    return found[0]


def _parse_grouplens(zip_bytes: bytes) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:

        def read(name: str, sep: str, names: list[str]) -> pd.DataFrame:
            raw = zf.read(f"ml-100k/{name}")
            return pd.read_csv(
                io.BytesIO(raw),
                sep=sep,
                names=names,
                header=None,
                dtype=str,
                encoding="latin-1",
                keep_default_na=False,
            )

        ratings = read("u.data", "\t", [USER, ITEM, RATING, TS])
        users = read("u.user", "|", [USER, "age", "gender", "occupation", "zip_code"])
        items = read(
            "u.item",
            "|",
            [ITEM, "title", "release_date", "video_release_date", "imdb_url", *GENRES],
        )
    flags = items[list(GENRES)].astype(int).to_numpy().astype(bool)
    items = pd.DataFrame(
        {
            ITEM: items[ITEM],
            "title": _clean_title(items["title"]),
            "release_year": pd.to_datetime(
                items["release_date"], format="%d-%b-%Y", errors="coerce"
            ).dt.year,
            "genres": ["|".join(g for g, f in zip(GENRES, row, strict=True) if f) for row in flags],
        }
    )
    return ratings, users, items


def _parse_recbole(wheel: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    with zipfile.ZipFile(wheel) as zf:

        def read(ext: str) -> pd.DataFrame:
            df = pd.read_csv(
                io.BytesIO(zf.read(f"{RECBOLE_PREFIX}.{ext}")),
                sep="\t",
                dtype=str,
                keep_default_na=False,
            )
            return df.rename(columns=lambda c: c.split(":")[0])

        ratings, users, items = read("inter"), read("user"), read("item")
    ratings = ratings.rename(columns={"user_id": USER, "item_id": ITEM})
    users = users.rename(columns={"zip_code": "zip_code"})
    items = pd.DataFrame(
        {
            ITEM: items["item_id"],
            # The wheel spells the one untitled movie "unkonwn"; GroupLens says "unknown".
            "title": _clean_title(items["movie_title"].replace("unkonwn", "unknown")),
            "release_year": pd.to_numeric(items["release_year"], errors="coerce"),
            "genres": items["class"].str.split().str.join("|"),
        }
    )
    return ratings, users, items


def _clean_title(titles: pd.Series) -> pd.Series:
    """Titles without the trailing "(1995)" that GroupLens appends (and the wheel mostly drops)."""
    return titles.str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True).str.strip()


def _normalise_side(users: pd.DataFrame, items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    users = users[[USER, "age", "gender", "occupation", "zip_code"]].copy()
    users["age"] = users["age"].astype(int)
    items = items.copy()
    items["release_year"] = items["release_year"].astype("Int64")
    items["title"] = items["title"].str.strip()
    for df, key in ((users, USER), (items, ITEM)):
        df[key] = df[key].astype(str)
        df.sort_values(key, key=lambda s: s.astype(int), inplace=True, ignore_index=True)
    return users, items


def _write_dataset(dest: Path, ratings, users, items, source: str) -> None:
    result = validate_interactions(ratings, source=f"{NAME} ratings", rating_range=(1, 5))
    if len(result.quarantine):
        raise RecsysError(f"{source}: MovieLens-100k failed validation\n{result.summary()}")
    clean = result.clean
    users, items = _normalise_side(users, items)
    counts = {
        "n_interactions": len(clean),
        "n_users": clean[USER].nunique(),
        "n_items": clean[ITEM].nunique(),
    }
    checksum = interactions_checksum(clean)
    if counts != EXPECTED or checksum != EXPECTED_CHECKSUM:
        raise RecsysError(
            f"{source}: MovieLens-100k does not match the reference: counts "
            f"{counts} (expected {EXPECTED}), checksum {checksum}"
        )
    if len(users) != EXPECTED["n_users"] or len(items) != EXPECTED["n_items"]:
        raise RecsysError(f"{source}: {len(users)} users / {len(items)} items in the side tables")
    paths = dataset_paths(dest)
    write_parquet(clean, paths["interactions"])
    write_parquet(users, paths["users"])
    write_parquet(items, paths["items"])
    info = DatasetInfo(
        name=NAME,
        checksum=checksum,
        source=source,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={"rating_scale": [1, 5], "genres": GENRES[1:]},
        **counts,
    )
    write_json(info.model_dump(), paths["info"])  # last: its presence marks the set complete
