"""``recsys recommend``: top-k for users from a model directory and an interactions table, by
the one recommendation path (each user's state from the interactions)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.config import RecsysError
from recsys.data.io import USER, read_table, read_titles, resolve_interactions
from recsys.data.validate import DEFAULT_MAX_BAD_SHARE, load_interactions
from recsys.files import write_parquet
from recsys.models.kinds import load_model
from recsys.models.manifest import read_manifest
from recsys.recommend.stages import Request, prepare, recommend_frame


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
    catalog: Path | None = None  # items with titles, for the reasons; default beside --data


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


def recommend_files(args: RecommendArgs) -> pd.DataFrame:
    """Top-k recommendations for the requested users, written to ``args.out`` when given."""
    model = load_model(args.model)
    manifest = read_manifest(args.model)
    history, _ = load_interactions(args.data, max_bad_share=args.max_bad_share, rating_range=None)
    _, side = resolve_interactions(args.data)
    catalog = args.catalog or (side / "items.parquet" if side else None)
    prepared = prepare(model, manifest.version, read_titles(catalog), manifest.lineage())
    request = Request(k=args.k, exclude_seen=args.exclude_seen)
    recs = recommend_frame(prepared, read_user_ids(args.users, history), request, history=history)
    if args.out is not None:
        write_parquet(recs, args.out)
    return recs
