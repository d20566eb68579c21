"""Interaction tables and dataset directories on disk (writes go through ``recsys.files``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from recsys.config import RecsysError
from recsys.files import read_json_model

USER, ITEM, RATING, TS = "user_id", "item_id", "rating", "timestamp"
INTERACTION_COLUMNS = (USER, ITEM, RATING, TS)
AGE_EDGES = (18, 25, 35, 45, 50, 56)  # the MovieLens-1M age buckets
GENRE_SEP = "|"  # an item's genres in one value: "Comedy|Drama"


def age_bucket(age: pd.Series) -> pd.Series:
    """Ages as buckets 0..6 over :data:`AGE_EDGES` (0 is under 18); missing stays missing."""
    age = pd.to_numeric(age, errors="coerce")
    bucket = np.searchsorted(AGE_EDGES, age.fillna(0).to_numpy(), "right")
    return pd.Series(bucket, index=age.index).where(age.notna()).astype("Int64")


def split_genres(value: str) -> list[str]:
    """The genre names in one item's ``"a|b"`` value (none in ``""``)."""
    return [g for g in value.split(GENRE_SEP) if g]


def genre_names(values: pd.Series) -> list[str]:
    """Every genre named in a column of ``"a|b"`` values, sorted; missing values name none."""
    split = values.dropna().astype(str).str.split(GENRE_SEP).explode()
    return sorted(g for g in split.unique() if g)


def genre_membership(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The genres items' ``"a|b"`` values name (sorted), and ``(items, genres)`` membership.

    Returns:
        The names and a bool matrix: row i, column j is True when item i has genre j.
    """
    lists = [split_genres(v) for v in values]
    names = sorted({g for row in lists for g in row})
    index = {g: j for j, g in enumerate(names)}
    member = np.zeros((len(lists), len(names)), dtype=bool)
    for row, genres in enumerate(lists):
        member[row, [index[g] for g in genres]] = True
    return names, member


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a parquet or CSV/TSV file into a DataFrame, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise RecsysError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            with open(path, "rb") as f:  # a file object: any file name the OS takes
                return pq.read_table(f).to_pandas()
        if suffix in {".csv", ".tsv", ".txt"}:
            # Everything as text: validation decides what parses, row by row.
            sep = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pa.ArrowInvalid, OSError, ValueError, pd.errors.ParserError) as exc:
        raise RecsysError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from exc
    raise RecsysError(f"{path}: unsupported file type {suffix!r} (expected .parquet or .csv)")


def require_columns(df: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    """Fail with the missing column names and the columns that are present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RecsysError(
            f"{source}: missing required column(s) {missing}; found {list(df.columns)}"
        )


def interactions_checksum(df: pd.DataFrame) -> str:
    """SHA-256 of the normalised ratings, in stored order.

    Each row is written as ``user_id,item_id,rating,epoch_seconds\\n`` with the rating printed
    by ``%g``: two sources of the same data agree whatever their file format. Feeding a table
    chunk by chunk to :func:`update_checksum` gives the same digest.
    """
    h = hashlib.sha256()
    update_checksum(h, df)
    return h.hexdigest()


def update_checksum(h: hashlib._Hash, df: pd.DataFrame) -> None:
    """Add the rows of ``df`` to a running :func:`interactions_checksum`."""
    for start in range(0, len(df), 1_000_000):
        part = df.iloc[start : start + 1_000_000]
        # epoch seconds whatever the unit the timestamps arrive in (ns, µs from Feast, ...)
        ts = pd.to_datetime(part[TS], utc=True).dt.as_unit("ns").astype("int64") // 10**9
        rating = _format_ratings(part[RATING].to_numpy(dtype="float64"))
        lines = (
            part[USER].astype(str)
            + ","
            + part[ITEM].astype(str)
            + ","
            + rating
            + ","
            + ts.astype(str)
        )
        h.update(("\n".join(lines) + "\n").encode())


def _format_ratings(r: np.ndarray) -> np.ndarray:
    """Integral ratings as ``3``, others as numpy prints them (``3.5``), NaN as empty."""
    whole = np.isfinite(r) & (r == np.round(r))
    out = np.where(whole, np.nan_to_num(r).astype(np.int64).astype(str), r.astype(str))
    return np.where(np.isnan(r), "", out).astype(object)


class DatasetInfo(BaseModel):
    """``dataset.json``: what a dataset directory holds and where it came from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    n_interactions: int
    n_users: int
    n_items: int
    checksum: str
    source: str
    created: str
    extra: dict[str, object] = {}


def dataset_paths(directory: str | os.PathLike) -> dict[str, Path]:
    """The files of a dataset directory."""
    d = Path(directory)
    return {
        "interactions": d / "interactions.parquet",
        "users": d / "users.parquet",
        "items": d / "items.parquet",
        "info": d / "dataset.json",
        "quarantine": d / "quarantine.parquet",
    }


def read_dataset_info(directory: str | os.PathLike) -> DatasetInfo:
    """Read and check ``dataset.json``."""
    return read_json_model(dataset_paths(directory)["info"], DatasetInfo, "dataset")


def resolve_interactions(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """Find the interactions file behind ``path`` and the directory of its side tables.

    ``path`` may be an interactions file (parquet or CSV), a split directory (``train.parquet``)
    or a dataset directory (``interactions.parquet``).
    """
    path = Path(path)
    if path.is_file():
        return path, None
    if path.is_dir():
        for name in ("train.parquet", "interactions.parquet"):
            if (path / name).exists():
                return path / name, path
        raise RecsysError(f"{path}: holds neither train.parquet nor interactions.parquet")
    raise RecsysError(f"{path}: no such file or directory")


def read_side_tables(directory: Path | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``users.parquet`` and ``items.parquet`` beside the interactions, when present."""
    if directory is None:
        return None, None
    paths = dataset_paths(directory)
    users = read_table(paths["users"]) if paths["users"].exists() else None
    items = read_table(paths["items"]) if paths["items"].exists() else None
    return users, items


def read_titles(catalog: str | os.PathLike | None) -> dict[str, str]:
    """``item_id -> title`` from an items table with a ``title`` column ({} without one)."""
    if not catalog or not Path(catalog).exists():
        return {}
    items = pd.read_parquet(catalog)
    if "title" not in items:
        return {}
    return dict(zip(items[ITEM].astype(str), items["title"].astype(str), strict=True))
