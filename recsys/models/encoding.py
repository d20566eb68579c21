"""Side features as integer codes for the neural models, and point-in-time history windows.

Index 0 is reserved everywhere: an unknown category, a padding slot, an id the vocabulary
lacks. A model that looks up index 0 gets a zero vector, so an unknown value is a cold-start
case, never a crash.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.io import AGE_EDGES, ITEM, USER, age_bucket, genre_names, split_genres
from recsys.models.keys import Keys
from recsys.models.vocabulary import shared_file

MAX_GENRES = 6
CHUNK_ROWS = 1 << 20  # rows per chunk of the history arrays
ENCODER_FILE = "feature_encoder.json"
USER_TABLE_FILE = "user_features.npz"


def _codes(values: pd.Series, vocab: dict[str, int]) -> np.ndarray:
    """Category codes from a vocabulary; missing or unseen values map to 0."""
    return values.astype("string").map(vocab).fillna(0).to_numpy(dtype=np.int64)


def _vocab(values: pd.Series) -> dict[str, int]:
    uniq = sorted(v for v in values.dropna().astype(str).unique() if v != "")
    return {v: i + 1 for i, v in enumerate(uniq)}


@dataclass
class FeatureEncoder:
    """Vocabularies of the categorical side features, and each known user's codes."""

    genders: dict[str, int] = field(default_factory=dict)
    occupations: dict[str, int] = field(default_factory=dict)
    genres: dict[str, int] = field(default_factory=dict)
    years: dict[str, int] = field(default_factory=dict)
    user_keys: Keys = field(default_factory=lambda: Keys.of([]))  # sorted
    user_codes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int32))

    # -- fitting -----------------------------------------------------------------------
    @classmethod
    def fit(cls, users: pd.DataFrame | None, items: pd.DataFrame | None) -> FeatureEncoder:
        enc = cls()
        if users is not None and len(users):
            users = users.drop_duplicates(USER, keep="first")  # as for items: first row wins
            enc.genders = _vocab(users.get("gender", pd.Series(dtype=str)))
            enc.occupations = _vocab(users.get("occupation", pd.Series(dtype=str)))
            enc.user_keys, order = Keys.sorting(users[USER].astype(str).to_numpy(dtype=object))
            enc.user_codes = enc._encode_users(users)[order]
        if items is not None and len(items):
            names = genre_names(items.get("genres", pd.Series(dtype=str)))
            enc.genres = {g: i + 1 for i, g in enumerate(names)}
            enc.years = _vocab(_year_bucket(items))
        return enc

    def _encode_users(self, users: pd.DataFrame) -> np.ndarray:
        # an age bucket from the feature store, or the raw age of a side table; 0 = unknown
        if "age_bucket" in users:
            bucket = pd.to_numeric(users["age_bucket"], errors="coerce").astype("Int64")
        elif "age" in users:
            bucket = age_bucket(users["age"])
        else:
            bucket = pd.Series(pd.NA, index=users.index, dtype="Int64")
        age_code = (bucket + 1).fillna(0).to_numpy(dtype=np.int64)
        gender = _codes(users.get("gender", pd.Series([None] * len(users))), self.genders)
        occ = _codes(users.get("occupation", pd.Series([None] * len(users))), self.occupations)
        return np.stack([age_code, gender, occ], axis=1).astype(np.int32)  # (users, 3)

    # -- lookups -----------------------------------------------------------------------
    @property
    def cardinalities(self) -> dict[str, int]:
        """Embedding table sizes (index 0 included)."""
        return {
            "age": len(AGE_EDGES) + 2,
            "gender": len(self.genders) + 1,
            "occupation": len(self.occupations) + 1,
            "genre": len(self.genres) + 1,
            "year": len(self.years) + 1,
        }

    def codes_of_users(self, user_ids: np.ndarray | Keys) -> np.ndarray:
        """``(n, 3)`` codes (age bucket, gender, occupation); unknown users get zeros."""
        idx = self.user_keys.positions(user_ids)
        out = np.zeros((len(idx), 3), dtype=np.int64)
        known = idx >= 0
        out[known] = self.user_codes[idx[known]]
        return out

    def item_table(self, item_ids: np.ndarray, items: pd.DataFrame | None) -> np.ndarray:
        """``(n_items + 1, MAX_GENRES + 1)``: genre codes then the year code; row 0 is padding."""
        table = np.zeros((len(item_ids) + 1, MAX_GENRES + 1), dtype=np.int64)
        if items is None or not len(items):
            return table
        side = items.assign(**{ITEM: items[ITEM].astype(str)}).set_index(ITEM)
        side = side[~side.index.duplicated()].reindex(np.asarray(item_ids, dtype=object))
        genres = side.get("genres", pd.Series(index=side.index, dtype=object)).fillna("")
        for row, value in enumerate(genres.to_numpy(), start=1):
            codes = [self.genres.get(g, 0) for g in split_genres(str(value))][:MAX_GENRES]
            table[row, : len(codes)] = codes
        table[1:, MAX_GENRES] = _codes(_year_bucket(side.reset_index()), self.years)
        return table

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> list[str]:
        vocabs = {k: getattr(self, k) for k in ("genders", "occupations", "genres", "years")}
        (directory / ENCODER_FILE).write_text(json.dumps(vocabs))
        keys = np.asarray(self.user_keys.tolist(), dtype=str)
        np.savez(directory / USER_TABLE_FILE, keys=keys, codes=self.user_codes)
        return [ENCODER_FILE, USER_TABLE_FILE]

    @classmethod
    def load(cls, directory: Path) -> FeatureEncoder:
        """The encoder saved in ``directory``. Its user table (a row per user, with its
        lookup) is read once per process for equal files: a multi-stage
        model and its two-tower source hold the same table, and share it."""
        enc = cls(**json.loads((directory / ENCODER_FILE).read_text()))
        enc.user_keys, enc.user_codes = shared_file(directory / USER_TABLE_FILE, _user_table)
        return enc


def _user_table(data: bytes) -> tuple[Keys, np.ndarray]:
    """``(keys, codes)`` of a saved user table, sorted by key (read-only: encoders share it;
    a table saved before the keys were sorted is sorted here)."""
    with np.load(io.BytesIO(data)) as npz:
        keys, order = Keys.sorting(npz["keys"])
        codes = npz["codes"][order].astype(np.int32)
    codes.setflags(write=False)
    return keys, codes


def _year_bucket(items: pd.DataFrame) -> pd.Series:
    """Release years in 5-year buckets ("1995"), as text; missing stays missing."""
    year = (
        pd.to_numeric(items.get("release_year"), errors="coerce")
        if "release_year" in items
        else pd.Series(np.nan, index=items.index)
    )
    return (year // 5 * 5).astype("Int64").astype("string")


def history_windows(users: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
    """For rows sorted by (user, time): each row's previous ``n`` items of the same user.

    Args:
        users: ``(rows,)`` user codes, grouped and time-ordered.
        items: ``(rows,)`` item codes (>= 1), same order.
        n: window length.

    Returns:
        ``(rows, n)`` int32 codes, most recent first, 0 where the user has no earlier item — so
        a training row never sees its own item or anything after it.
    """
    rows = len(users)
    out = np.zeros((rows, n), dtype=np.int32)
    idx = np.arange(rows)
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    first = np.repeat(start, np.diff(np.r_[start, rows]))  # (rows,) each row's user start
    for j in range(1, n + 1):
        ok = idx - j >= first
        out[ok, j - 1] = items[idx[ok] - j]
    return out


def profile_samples(
    users: np.ndarray, n: int, seed: int, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """For rows grouped by user: ``n`` random *other* rows of the same user (row positions).

    Training rows then see the user's profile without their own item — the situation of a
    held-out item at evaluation time. Returns ``(rows, n)`` int32 positions, -1 for a user
    with one row. Computed ``chunk_rows`` rows at a time from one random stream (the same
    positions for any chunk size): whole, the intermediates were several times the result.
    """
    rows = len(users)
    if rows >= 2**31:
        raise ValueError(f"{rows} rows: positions are 32-bit")
    start = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    size = np.diff(np.r_[start, rows])
    first = np.repeat(start, size)  # (rows,)
    group = np.repeat(size, size)  # (rows,)
    rng = np.random.default_rng(seed)
    out = np.empty((rows, n), dtype=np.int32)
    for a in range(0, rows, chunk_rows):
        b = min(a + chunk_rows, rows)
        g = group[a:b, None]
        step = 1 + (rng.random((b - a, n)) * np.maximum(g - 1, 1)).astype(np.int64)
        offset = np.arange(a, b)[:, None] - first[a:b, None]
        pos = first[a:b, None] + (offset + step) % g  # never the row itself
        pos[group[a:b] == 1] = -1
        out[a:b] = pos
    return out


def gather_history(positions: np.ndarray, items: np.ndarray, chunk_rows: int = CHUNK_ROWS):
    """``(rows, n)`` int32 item codes at ``positions`` (0 where a position is -1), a chunk of
    rows at a time."""
    out = np.zeros(positions.shape, dtype=np.int32)
    for a in range(0, len(positions), chunk_rows):
        pos = positions[a : a + chunk_rows]
        out[a : a + chunk_rows] = np.where(pos >= 0, items[np.maximum(pos, 0)], 0)
    return out
