"""The recommending entry point (training's is ``recsys.training.api.train``).

The CLI, the benchmarks and (later) the pipeline components all call these; their arguments
cross a boundary, so they are pydantic models that refuse unknown fields.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.config import RecsysError
from recsys.data.io import (
    USER,
    read_table,
    write_parquet,
)
from recsys.data.validate import load_interactions
from recsys.models import load_model

DEFAULT_MAX_BAD_SHARE = 0.05


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
