"""``recsys recommend``: top-k for users from a model directory and an interactions table, by
the one recommendation path (each user's state from the interactions)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.config import RecsysError
from recsys.data.io import ITEM, USER, read_table, read_titles, resolve_interactions
from recsys.data.new_items import ItemLog
from recsys.data.validate import DEFAULT_MAX_BAD_SHARE, load_interactions
from recsys.files import write_parquet
from recsys.models.kinds import load_model
from recsys.models.manifest import read_manifest
from recsys.recommend.added import with_added
from recsys.recommend.frame import recommend_frame
from recsys.recommend.stages import MAX_CANDIDATES, Request, candidate_codes, prepare


class RecommendArgs(BaseModel):
    """What ``recsys recommend`` takes."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    data: Path
    users: str = "all"  # "all" or a file of user ids
    candidates: Path | None = None  # a file of item ids the lists are restricted to
    k: int = Field(10, ge=1, le=10_000)
    exclude_seen: bool = True
    out: Path | None = None
    max_bad_share: float = Field(DEFAULT_MAX_BAD_SHARE, ge=0.0, le=1.0)
    catalog: Path | None = None  # items with titles, for the reasons; default beside --data
    new_items: Path | None = None  # an items_dir: the items added since training, as served


def read_user_ids(spec: str, history: pd.DataFrame) -> list[str]:
    """``all`` (every user in ``history``), or a file of ids (:func:`read_ids`)."""
    if spec == "all":
        return sorted(history[USER].unique())
    if not Path(spec).exists():
        raise RecsysError(f"--users: {spec!r} is neither 'all' nor an existing file")
    return read_ids(Path(spec), USER)


def read_ids(path: Path, column: str) -> list[str]:
    """The ids a file lists, in order, each once: a parquet/CSV file's ``column``, or plain
    text with one id per line."""
    if path.suffix.lower() in {".parquet", ".csv", ".tsv"}:
        table = read_table(path)
        if column not in table.columns:
            raise RecsysError(f"{path}: no '{column}' column; found {list(table.columns)}")
        ids = table[column]
    elif path.exists():
        ids = pd.Series(path.read_text().split())
    else:
        raise RecsysError(f"{path}: no such file")
    ids = ids.dropna().astype(str).str.strip()
    ids = ids[ids != ""]
    if ids.empty:
        raise RecsysError(f"{path}: lists no {column.removesuffix('_id')} ids")
    return list(dict.fromkeys(ids))


def recommend_files(args: RecommendArgs) -> pd.DataFrame:
    """Top-k recommendations for the requested users, written to ``args.out`` when given."""
    model = load_model(args.model)
    manifest = read_manifest(args.model)
    history, _ = load_interactions(args.data, max_bad_share=args.max_bad_share, rating_range=None)
    _, side = resolve_interactions(args.data)
    catalog = args.catalog or (side / "items.parquet" if side else None)
    prepared = prepare(model, manifest.version, read_titles(catalog), manifest.lineage())
    if args.new_items is not None:
        log = ItemLog(args.new_items)
        if not log.path.exists():
            raise RecsysError(f"--new-items {args.new_items}: no {log.path.name} there")
        prepared = with_added(prepared, log.read()[0])
    listed = read_ids(args.candidates, ITEM) if args.candidates else None
    if listed is not None and len(listed) > MAX_CANDIDATES:
        raise RecsysError(
            f"--candidates {args.candidates}: {len(listed)} item ids, at most {MAX_CANDIDATES}"
        )
    request = Request(k=args.k, exclude_seen=args.exclude_seen, candidates=listed)
    known = len(candidate_codes(prepared, listed)) if listed else None
    if known == 0:
        shown = ", ".join(repr(i) for i in listed[:3]) + (", ..." if len(listed) > 3 else "")
        raise RecsysError(
            f"--candidates {args.candidates}: none of the {len(listed)} item ids ({shown}) is "
            f"in the catalog of model {manifest.version}"
        )
    recs = recommend_frame(prepared, read_user_ids(args.users, history), request, history=history)
    if args.out is not None:
        write_parquet(recs, args.out)
    recs.attrs["unknown_candidates"] = len(listed) - known if listed else 0
    return recs
