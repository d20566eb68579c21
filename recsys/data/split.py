"""Train/test splits: stratified (Microsoft Recommenders' protocol), temporal (each user's
latest interactions), global-time (one cut in time for everyone), leave-last-out, cold-items
(ColdRec's: a seeded share of the items has no training interaction at all)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import ITEM, TS, USER, dataset_paths, read_side_tables, read_table
from recsys.files import write_json, write_parquet

Protocol = Literal["stratified", "temporal", "global-time", "leave-last-out", "cold-items"]
PROTOCOLS: tuple[str, ...] = (
    "stratified",
    "temporal",
    "global-time",
    "leave-last-out",
    "cold-items",
)
COLD_SHARE = 0.2  # the cold-items protocol's share of the items (ColdRec's)


def stratified_split(
    df: pd.DataFrame, ratio: float = 0.75, *, filter_by: str = "item", seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per group (item by default) a random ``ratio`` / ``1 - ratio`` split.

    Follows ``recommenders.datasets.python_splitters.python_stratified_split``: a uniform
    random key per row, rows ordered by (group, key), the first ``round(ratio * size)`` rows of
    each group go to train (numpy's round, half to even), the rest to test.
    """
    _check_ratio(ratio)
    col = {"item": ITEM, "user": USER}[filter_by]
    rng = np.random.RandomState(seed)  # noqa: NPY002 - the reference protocol's generator
    keyed = df.assign(_key=rng.rand(len(df)))
    keyed = keyed.sort_values([col, "_key"], kind="mergesort")
    groups = keyed.groupby(col, sort=False)
    size = groups[col].transform("count").to_numpy()
    rank = groups.cumcount().to_numpy() + 1
    in_train = rank <= np.round(ratio * size)
    keyed = keyed.drop(columns="_key")
    return keyed[in_train].reset_index(drop=True), keyed[~in_train].reset_index(drop=True)


def temporal_split(df: pd.DataFrame, ratio: float = 0.75) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per user, the earliest ``round(ratio * size)`` interactions train and the rest (the
    user's latest) test: Microsoft Recommenders' ``python_chrono_split`` by user. Ties in time
    are broken by item id, so the split is deterministic."""
    _check_ratio(ratio)
    ordered, position, size = _user_timelines(df)
    in_train = position + 1 <= np.round(ratio * size)
    return ordered[in_train].reset_index(drop=True), ordered[~in_train].reset_index(drop=True)


def global_time_split(df: pd.DataFrame, ratio: float = 0.75) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything at or before the global ``ratio`` timestamp quantile trains; the rest tests
    (only the users active after the cut are evaluated)."""
    _check_ratio(ratio)
    cutoff = df[TS].quantile(ratio)
    train = df[df[TS] <= cutoff]
    return train.reset_index(drop=True), df[df[TS] > cutoff].reset_index(drop=True)


def leave_last_out(df: pd.DataFrame, n_last: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest ``n_last`` interactions are held out; users with no more keep all."""
    if n_last < 1:
        raise RecsysError(f"n_last must be at least 1, got {n_last}")
    ordered, position, size = _user_timelines(df)
    held = (size - 1 - position < n_last) & (size > n_last)
    return ordered[~held].reset_index(drop=True), ordered[held].reset_index(drop=True)


def cold_items_split(
    df: pd.DataFrame, share: float = COLD_SHARE, *, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded ``share`` of the items (of those with interactions) is cold: every
    interaction with one of them is held out, and the warm items' interactions train. The
    test set's items are the cold items; a user whose items were all cold trains on nothing
    (a cold user as well)."""
    if not 0.0 < share < 1.0:
        raise RecsysError(f"cold-items share must be between 0 and 1 (exclusive), got {share}")
    items = np.sort(df[ITEM].astype(str).unique())
    n = max(1, round(share * len(items)))
    cold = np.random.default_rng(seed).choice(items, n, replace=False)
    held = df[ITEM].astype(str).isin(cold).to_numpy()
    return df[~held].reset_index(drop=True), df[held].reset_index(drop=True)


def _user_timelines(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The rows ordered by user, then time (ties by item id), each row's position in its
    user's timeline (0: the earliest) and the user's number of rows."""
    ordered = df.sort_values([USER, TS, ITEM], kind="mergesort")
    groups = ordered.groupby(USER, sort=False)
    return ordered, groups.cumcount().to_numpy(), groups[USER].transform("count").to_numpy()


def split(
    df: pd.DataFrame,
    protocol: Protocol,
    *,
    ratio: float = 0.75,
    seed: int = 42,
    n_last: int = 1,
    cold_share: float = COLD_SHARE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dispatch to one protocol; see the functions above."""
    if protocol == "stratified":
        return stratified_split(df, ratio, seed=seed)
    if protocol == "temporal":
        return temporal_split(df, ratio)
    if protocol == "global-time":
        return global_time_split(df, ratio)
    if protocol == "leave-last-out":
        return leave_last_out(df, n_last)
    if protocol == "cold-items":
        return cold_items_split(df, cold_share, seed=seed)
    raise RecsysError(f"unknown split protocol {protocol!r}; expected one of {PROTOCOLS}")


def write_split(
    train: pd.DataFrame,
    test: pd.DataFrame,
    out: str | Path,
    *,
    params: dict,
    side_from: str | Path | None = None,
) -> Path:
    """Write ``train.parquet``, ``test.parquet``, ``split.json`` and copies of the side tables."""
    out = Path(out)
    write_parquet(train, out / "train.parquet")
    write_parquet(test, out / "test.parquet")
    if side_from is not None:
        for key in ("users", "items"):
            src = dataset_paths(side_from)[key]
            if src.exists():
                shutil.copy2(src, out / src.name)
    info = {
        **params,
        "n_train": len(train),
        "n_test": len(test),
        "n_test_users": int(test[USER].nunique()) if len(test) else 0,
    }
    write_json(info, out / "split.json")
    return out


def split_lineage(split_dir: str | Path) -> list[str] | None:
    """The data checksums a split's training rows stand for (``split.json``'s ``lineage``:
    the rows' own, and for base data + feedback the base part's), if recorded."""
    return split_info(split_dir).get("lineage")


def split_protocol(split_dir: str | Path) -> str | None:
    """The protocol a split directory was cut by (``split.json``'s ``protocol``), if recorded."""
    return split_info(split_dir).get("protocol")


def split_info(split_dir: str | Path) -> dict:
    """A split directory's ``split.json`` ({} without one)."""
    path = Path(split_dir) / "split.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RecsysError(f"{path}: unreadable split metadata ({exc})") from exc


def read_split(split_dir: str | Path):
    """``train.parquet`` and the side tables of a split (or training-set) directory."""
    split_dir = Path(split_dir)
    if not (split_dir / "train.parquet").exists():
        raise RecsysError(f"{split_dir}: no train.parquet (not a split directory)")
    users, items = read_side_tables(split_dir)
    return read_table(split_dir / "train.parquet"), users, items


def _check_ratio(ratio: float) -> None:
    if not 0.0 < ratio < 1.0:
        raise RecsysError(f"split ratio must be between 0 and 1 (exclusive), got {ratio}")
