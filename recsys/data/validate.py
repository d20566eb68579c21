"""Schema and value checks for interactions; bad rows go to quarantine, never away.

Every ingestion path (fetch, synth, validate, train on a user's file) calls
:func:`validate_interactions`. It returns the clean rows in the contract's types
(``user_id``/``item_id`` strings, ``rating`` float, ``timestamp`` UTC) and the rejected rows
with their original values, their row number in the source and the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.data.coerce import ids_to_str, parse_timestamps, to_text
from recsys.data.io import ITEM, RATING, TS, USER, read_table, require_columns, resolve_interactions
from recsys.files import write_parquet

REASONS = (
    "missing_user_id",
    "missing_item_id",
    "non_numeric_rating",
    "rating_out_of_range",
    "unparseable_timestamp",
    "future_timestamp",
    "duplicate_row",
)
# Clocks disagree a little; a timestamp this far past "now" is still accepted.
FUTURE_SKEW = pd.Timedelta(minutes=5)
DEFAULT_MAX_BAD_SHARE = 0.05  # what the commands that read interactions tolerate by default
QUARANTINE_COLUMNS = ("row", "reason")  # added before and after the rejected rows' values


@dataclass
class ValidationResult:
    """The outcome of validating one interactions table."""

    clean: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    n_input: int = 0

    @property
    def bad_share(self) -> float:
        return len(self.quarantine) / self.n_input if self.n_input else 0.0

    def summary(self) -> str:
        lines = [
            f"{self.n_input} rows: {len(self.clean)} clean, {len(self.quarantine)} quarantined"
        ]
        lines += [f"  {reason}: {n}" for reason, n in self.counts.items() if n]
        return "\n".join(lines)


def validate_interactions(
    df: pd.DataFrame,
    *,
    source: str = "interactions",
    rating_range: tuple[float, float] | None = (0.0, 5.0),
    now: pd.Timestamp | None = None,
) -> ValidationResult:
    """Check ids, ratings and timestamps; split the rows into clean and quarantined.

    Args:
        df: a table with ``user_id``, ``item_id``, ``timestamp`` and optionally ``rating``.
        source: the file or dataset name, used in error messages.
        rating_range: inclusive bounds for ratings; None accepts any finite number.
        now: the reference time for "future" timestamps (default: the current time).

    Returns:
        A :class:`ValidationResult`; exact duplicate rows after the first are quarantined.

    Raises:
        RecsysError: when a required column is missing.
    """
    require_columns(df, (USER, ITEM, TS), source)
    twice = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
    if twice:
        raise RecsysError(f"{source}: column(s) {twice} appear more than once")
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    df = df.reset_index(drop=True)
    user, item = ids_to_str(df[USER]), ids_to_str(df[ITEM])
    ts = parse_timestamps(df[TS])
    raw_rating = df[RATING] if RATING in df.columns else pd.Series(np.nan, index=df.index)
    if raw_rating.dtype == object:  # bytes, decimals, mixed values: judged by their text
        raw_rating = to_text(raw_rating)
    rating = pd.to_numeric(raw_rating, errors="coerce").astype("float64")

    checks = {
        "missing_user_id": user.isna(),
        "missing_item_id": item.isna(),
        "non_numeric_rating": rating.isna() & raw_rating.notna(),
        "rating_out_of_range": _out_of_range(rating, rating_range),
        "unparseable_timestamp": ts.isna(),
        "future_timestamp": ts > now + FUTURE_SKEW,
    }
    clean = pd.DataFrame({USER: user, ITEM: item, RATING: rating, TS: ts})
    bad_so_far = np.logical_or.reduce([m.to_numpy() for m in checks.values()])
    # Exact duplicates among otherwise good rows: keep the first occurrence.
    checks["duplicate_row"] = pd.Series(
        clean.duplicated(keep="first").to_numpy() & ~bad_so_far, index=df.index
    )

    bad = np.logical_or.reduce([m.to_numpy() for m in checks.values()])
    reasons = pd.Series("", index=df.index, dtype=object)
    for name, mask in checks.items():
        hit = mask.to_numpy()
        reasons[hit] = reasons[hit] + np.where(reasons[hit] == "", "", "; ") + name

    quarantine = _quarantine_frame(df.loc[bad])
    quarantine.insert(0, "row", df.index[bad].to_numpy())
    quarantine["reason"] = reasons[bad].to_numpy()
    counts = {name: int(mask.sum()) for name, mask in checks.items()}
    return ValidationResult(
        clean=clean.loc[~bad].reset_index(drop=True),
        quarantine=quarantine.reset_index(drop=True),
        counts=counts,
        n_input=len(df),
    )


def _quarantine_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The rejected rows' original values as text; an input column named like one the
    quarantine adds (``row``, ``reason``) keeps its values as ``input:row``, ``input:reason``."""
    names = [f"input:{c}" if str(c) in QUARANTINE_COLUMNS else str(c) for c in rows.columns]
    return pd.DataFrame(
        {
            n: to_text(rows[c]).astype(object).to_numpy()
            for n, c in zip(names, rows.columns, strict=True)
        }
    )


def _out_of_range(rating: pd.Series, bounds: tuple[float, float] | None) -> pd.Series:
    finite = rating.notna()
    bad = finite & ~np.isfinite(rating.fillna(0.0))
    if bounds is not None:
        low, high = bounds
        bad |= finite & ((rating < low) | (rating > high))
    return bad


def check_bad_share(result: ValidationResult, max_bad_share: float, source: str) -> None:
    """Raise (exit code 3) when the quarantined share passes the threshold."""
    if result.bad_share > max_bad_share:
        raise RecsysError(
            f"{source}: {result.bad_share:.2%} of {result.n_input} rows failed validation, "
            f"above the allowed {max_bad_share:.2%}\n{result.summary()}",
            exit_code=3,
        )


def load_interactions(
    path: str | Path,
    *,
    quarantine_to: str | Path | None = None,
    max_bad_share: float = 0.0,
    rating_range: tuple[float, float] | None = (0.0, 5.0),
) -> tuple[pd.DataFrame, ValidationResult]:
    """Read any interactions file or directory, validate it, quarantine the bad rows.

    Args:
        path: a parquet/CSV file, a split directory or a dataset directory.
        quarantine_to: where the rejected rows go (default: ``<file>.quarantine.parquet``).
        max_bad_share: fail (exit code 3) above this share of bad rows.
        rating_range: inclusive rating bounds, None for any finite rating.

    Returns:
        The clean interactions and the validation result.
    """
    file, _ = resolve_interactions(path)
    result = validate_interactions(read_table(file), source=str(file), rating_range=rating_range)
    if len(result.quarantine):
        target = Path(quarantine_to) if quarantine_to else file.with_suffix(".quarantine.parquet")
        write_parquet(result.quarantine, target)
    check_bad_share(result, max_bad_share, str(file))
    return result.clean, result
