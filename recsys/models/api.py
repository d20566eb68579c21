"""Entry points for training and recommending: plain typed functions.

The CLI, the benchmarks and (later) the pipeline components all call these; their arguments
cross a boundary, so they are pydantic models that refuse unknown fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.config import RecsysError
from recsys.data.io import (
    USER,
    interactions_checksum,
    read_side_tables,
    read_table,
    resolve_interactions,
    write_parquet,
)
from recsys.data.validate import load_interactions
from recsys.models import create_model, load_model

DEFAULT_MAX_BAD_SHARE = 0.05


class TrainArgs(BaseModel):
    """What ``recsys train`` takes."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    model: str
    out: Path
    params: dict[str, Any] = {}
    max_bad_share: float = Field(DEFAULT_MAX_BAD_SHARE, ge=0.0, le=1.0)


class RecommendArgs(BaseModel):
    """What ``recsys recommend`` takes."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    data: Path
    users: str = "all"  # "all" or a file of user ids
    k: int = Field(10, ge=1, le=10_000)
    exclude_seen: bool = True
    out: Path | None = None
    max_bad_share: float = Field(DEFAULT_MAX_BAD_SHARE, ge=0.0, le=1.0)


def train(args: TrainArgs) -> Path:
    """Fit a model on validated interactions and save it as a model directory.

    Returns:
        The model directory (``args.out``).
    """
    file, side_dir = resolve_interactions(args.data)
    interactions, _ = load_interactions(
        file,
        quarantine_to=args.out.with_name(args.out.name + ".quarantine.parquet"),
        max_bad_share=args.max_bad_share,
        rating_range=None,
    )
    users, items = read_side_tables(side_dir)
    model = create_model(args.model, args.params).fit(interactions, users, items)
    return model.save(args.out, data_checksum=interactions_checksum(interactions))


def read_user_ids(spec: str, history: pd.DataFrame) -> list[str]:
    """``all`` (every user in ``history``), or a file of ids: parquet/CSV with ``user_id``, or
    plain text with one id per line."""
    if spec == "all":
        return sorted(history[USER].unique())
    path = Path(spec)
    if path.suffix.lower() in {".parquet", ".csv", ".tsv"}:
        table = read_table(path)
        if USER not in table.columns:
            raise RecsysError(f"{path}: no '{USER}' column; found {list(table.columns)}")
        ids = table[USER]
    elif path.exists():
        ids = pd.Series(path.read_text().split())
    else:
        raise RecsysError(f"--users: {spec!r} is neither 'all' nor an existing file")
    ids = ids.dropna().astype(str).str.strip()
    ids = ids[ids != ""]
    if ids.empty:
        raise RecsysError(f"{path}: lists no user ids")
    return list(dict.fromkeys(ids))


def recommend(args: RecommendArgs) -> pd.DataFrame:
    """Top-k recommendations for the requested users, written to ``args.out`` when given."""
    model = load_model(args.model)
    history, _ = load_interactions(args.data, max_bad_share=args.max_bad_share, rating_range=None)
    user_ids = read_user_ids(args.users, history)
    recs = model.recommend(user_ids, args.k, history=history, exclude_seen=args.exclude_seen)
    if args.out is not None:
        write_parquet(recs, args.out)
    return recs
