"""Values from a user's file into the contract's types: text, ids, UTC timestamps.

Every function takes any column a CSV or parquet file can hold (text, numbers, booleans,
bytes, datetimes of any unit, nullable dtypes) and never raises on a value: what cannot be
converted becomes missing, and validation quarantines the row with its reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# |seconds| below this fit nanoseconds in int64 (pandas' range, 1677-09-21 to 2262-04-11).
MAX_EPOCH_SECONDS = 9.2e9
UTC_NS = "datetime64[ns, UTC]"
NAT = np.iinfo(np.int64).min  # NaT as an int64 of nanoseconds
# A time of day followed by a UTC offset or Z: "...T04:05:06+01:00", "... 04:05Z".
ISO_OFFSET = r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)\s*$"


def to_text(values: pd.Series) -> pd.Series:
    """Each value as text (``string`` dtype): bytes decoded as UTF-8 with bad bytes escaped."""
    kind = pd.api.types.infer_dtype(values, skipna=True) if values.dtype == object else ""
    if kind in ("bytes", "mixed"):  # pandas would decode bytes strictly, and fail
        raw = values.to_numpy(dtype=object)
        missing = values.isna().to_numpy(dtype=bool)
        values = pd.Series(
            [None if m else _str(v) for v, m in zip(raw, missing, strict=True)],
            index=values.index,
            dtype=object,
        )
    return values.astype("string")


def _str(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def ids_to_str(values: pd.Series) -> pd.Series:
    """Ids as strings; integral floats (``196.0`` from a nullable column) print as ``196``."""
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna()
        # exact integers only (|x| < 2**53): 1e300 is integral too, and no Int64
        if (np.abs(finite) < 2**53).all() and (finite == np.floor(finite)).all():
            values = values.astype("Int64")
    out = to_text(values).str.strip()
    return out.where(out.notna() & (out != ""), None).astype(object)


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Epoch seconds (int, float or numeric text), ISO-8601 text or datetimes → UTC; NaT if bad.

    Booleans and durations are not times (NaT). Times outside pandas' nanosecond range are NaT.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _datetimes_to_utc(values)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return pd.Series(pd.NaT, index=values.index, dtype=UTC_NS)
    if pd.api.types.is_numeric_dtype(dtype):
        return epoch_seconds_to_utc(values)
    text = to_text(values)
    ns = _epoch_ns(pd.to_numeric(text, errors="coerce"))
    raw = values.to_numpy(dtype=object, na_value=None)
    # A boolean is never a time, though pandas reads True as the number 1.
    is_bool = np.array([isinstance(v, bool | np.bool_) for v in raw], dtype=bool)
    rest = (ns == NAT) & text.notna().to_numpy() & ~is_bool
    if rest.any():
        ns[rest] = _iso_ns(pd.Series(text.to_numpy()[rest], dtype=object))
    ns[is_bool] = NAT
    return _utc_series(ns, values.index)


def _iso_ns(text: pd.Series) -> np.ndarray:
    """ISO-8601 text → int64 nanoseconds UTC (NaT's integer where not ISO or out of range).

    Text with an offset and text without are parsed apart: in one call pandas 2 gives a naive
    time the offset of an earlier aware one, so a row's time would depend on the rows above it.
    """
    aware = text.str.contains(ISO_OFFSET, regex=True, na=False).to_numpy(dtype=bool)
    out = np.full(len(text), NAT, dtype=np.int64)
    for part in (aware, ~aware):
        if part.any():
            parsed = pd.to_datetime(text[part], utc=True, errors="coerce", format="ISO8601")
            out[part] = _as_ns(_datetimes_to_utc(parsed))
    return out


def epoch_seconds_to_utc(seconds: pd.Series) -> pd.Series:
    """Epoch seconds of any numeric dtype → UTC; NaN, ±inf and out-of-range values → NaT.

    The conversion to nanoseconds is done here, on finite values inside pandas' range only:
    ``pd.to_datetime(..., unit="s")`` on a float array holding NaN reads an uninitialised buffer
    under pandas 2 (pandas-dev/pandas#58419, fixed only in pandas 3) and can raise
    ``FloatingPointError`` at random, so no value ever reaches a unit conversion.
    """
    return _utc_series(_epoch_ns(pd.to_numeric(seconds, errors="coerce")), seconds.index)


def _epoch_ns(x: pd.Series) -> np.ndarray:
    """Numeric epoch seconds → int64 nanoseconds, NaT's integer where not finite or in range."""
    out = np.full(len(x), NAT, dtype=np.int64)
    floats = x.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(floats) & (np.abs(floats) < MAX_EPOCH_SECONDS)
    if not ok.any():
        return out
    if pd.api.types.is_integer_dtype(x.dtype):  # exact, whatever the size of the integer
        out[ok] = x[ok].to_numpy(dtype=np.int64) * 10**9
    else:
        f = floats[ok]
        floor = np.floor(f)
        out[ok] = floor.astype(np.int64) * 10**9 + np.round((f - floor) * 1e9).astype(np.int64)
    return out


def _utc_series(ns: np.ndarray, index: pd.Index) -> pd.Series:
    stamps = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
    return pd.Series(stamps, index=index)


def _as_ns(utc: pd.Series) -> np.ndarray:
    return utc.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view(np.int64)


def _datetimes_to_utc(values: pd.Series) -> pd.Series:
    """Datetimes of any unit and zone → UTC nanoseconds; those past pandas' range → NaT."""
    ts = values.dt.tz_convert("UTC") if values.dt.tz is not None else values.dt.tz_localize("UTC")
    inside = ts.isna() | ((ts >= pd.Timestamp.min.tz_localize("UTC")) & (ts <= _MAX_UTC))
    return ts.where(inside).dt.as_unit("ns")


_MAX_UTC = pd.Timestamp.max.tz_localize("UTC")
