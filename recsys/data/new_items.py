"""New items at run time: the schema a client sends, its validation (bad rows quarantined
with their reasons), and the durable log every replica and the next training read.

An item is acknowledged only once its line is in ``items.jsonl`` and fsync'd (one write for
a batch: concurrent writers never interleave). The log is append-only and read in order, so
every process that folds it (:func:`ItemLog.read` from the offset it reached) gives the same
item the same position in a version's vocabulary. A refused row goes to
``rejected-items.jsonl`` with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from recsys.config import RecsysError, recsys_home, shorten
from recsys.data.io import GENRE_SEP, ITEM, read_table
from recsys.data.records import Received, Record, reasons
from recsys.files import append_line

LOG_FILE, REJECTED_FILE = "items.jsonl", "rejected-items.jsonl"
# Items in one request (its body also fits the app's 64 KiB default with room to spare) and
# in one file (one durable write each).
MAX_ITEMS, MAX_FILE_ITEMS = 256, 100_000
ITEM_COLUMNS = (ITEM, "title", "genres", "release_year", "description")
UNREADABLE = "__unreadable__"  # a file's line that is not JSON: refused with this reason


NOT_BLANK = {"pattern": r"\S"}  # the schema's word for the check below
# JSON Schema's (ECMA-262's) white space: what its \s matches, so "blank" means the same here
BLANK = re.compile("[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*")
MAX_GENRES, MAX_GENRE = 32, 31  # a list of names fits the 1,024 characters of one value
GENRES_SCHEMA = {
    "anyOf": [
        {"type": "string", "maxLength": 1024, "description": 'one value, "a|b"'},
        {
            "type": "array",
            "items": {"type": "string", "maxLength": MAX_GENRE},
            "maxItems": MAX_GENRES,
        },
    ]
}


class NewItem(Record):
    """One new item as clients send it (an HTTP body's ``items``, a file's row): its id and
    text. ``genres``: a list of names or one ``"a|b"`` value, kept as ``"a|b"``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    item_id: str = Field(min_length=1, max_length=256, json_schema_extra=NOT_BLANK)
    title: str = Field(min_length=1, max_length=512, json_schema_extra=NOT_BLANK)
    genres: Annotated[str, WithJsonSchema(GENRES_SCHEMA)] = Field("", max_length=1024)
    release_year: int | None = Field(None, ge=1800, le=2200)
    description: str = Field("", max_length=10_000)

    @field_validator("item_id", "title", "genres", "description")
    @classmethod
    def _text(cls, value: str, info: ValidationInfo) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("not UTF-8 text (a lone surrogate)") from None
        if info.field_name in ("item_id", "title") and BLANK.fullmatch(value):
            raise ValueError("blank")
        return value

    @field_validator("genres", mode="before")
    @classmethod
    def _genre_list(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(g, str) for g in value):
            if len(value) > MAX_GENRES or any(len(g) > MAX_GENRE for g in value):
                raise ValueError(f"at most {MAX_GENRES} names of {MAX_GENRE} characters")
            return GENRE_SEP.join(g.strip() for g in value if g.strip())
        return value

    @field_validator("release_year", mode="before")
    @classmethod
    def _whole_year(cls, value: Any) -> Any:
        """1998.0 is a whole number (JSON Schema's integer); 1998.5 and "1998" are not."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class ItemRecord(NewItem):
    """One accepted item as the log keeps it: the item and when it was received."""

    received: Received


@dataclass
class Rejected:
    """One refused row: its position in the request or file (0-based), its id when it had
    one, and why."""

    row: int
    item_id: str | None
    reason: str


@dataclass
class Checked:
    """The rows of one request or file: the items accepted, the rows refused, and the ids
    the catalog holds already (left as they are: a client's retry of a request that was
    kept is not an error)."""

    items: list[NewItem] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    known: list[str] = field(default_factory=list)


def check_items(rows: Iterable[Any], known: Container[str] = ()) -> Checked:
    """Validate each row; a valid row whose id is already ``known`` (the catalog's, the
    log's) or met earlier in ``rows`` is listed as known, not added (the first row wins)."""
    out, taken = Checked(), set()
    for n, row in enumerate(rows):
        item_id = row.get(ITEM) if isinstance(row, dict) else None
        item_id = item_id if isinstance(item_id, str) else None
        if isinstance(row, dict) and UNREADABLE in row:
            out.rejected.append(Rejected(n, None, row[UNREADABLE]))
            continue
        try:
            item = NewItem.model_validate(row)
        except ValidationError as exc:
            out.rejected.append(Rejected(n, _printable(item_id), _printable(reasons(exc))))
            continue
        if item.item_id in known or item.item_id in taken:
            out.known.append(item.item_id)
        else:
            out.items.append(item)
        taken.add(item.item_id)
    return out


def items_of_body(payload: bytes | str | dict | list) -> list[Any]:
    """The rows of an HTTP body: ``{"items": [...]}``, a list, or one item object.

    Raises:
        ValueError: not JSON, not one of those shapes, no rows, or more than :data:`MAX_ITEMS`.
    """
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"body: not JSON ({exc})") from None
    if isinstance(payload, dict) and set(payload) == {"items"}:
        payload = payload["items"]
    rows = [payload] if isinstance(payload, dict) else payload
    if not isinstance(rows, list):
        raise ValueError('body: expected {"items": [...]}, a list of items, or one item')
    return _bounded(rows, "body", MAX_ITEMS)


def items_of_file(path: str | Path) -> list[dict]:
    """The rows of a file of new items: JSON lines (``.jsonl``/``.json``: one object a line,
    or one JSON list), or a table (parquet, CSV, TSV) with an ``item_id`` column.

    Raises:
        RecsysError: unreadable, no ``item_id`` column, no rows, or too many; naming the file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            if not path.exists():
                raise RecsysError(f"{path}: no such file")
            return _bounded(_json_rows(path), str(path), MAX_FILE_ITEMS)
        table = read_table(path)
        if ITEM not in table:
            raise RecsysError(f"{path}: no {ITEM} column (columns: {list(table.columns)})")
        rows = [_plain_row(r) for r in table.to_dict("records")]
        return _bounded(rows, str(path), MAX_FILE_ITEMS)
    except ValueError as exc:
        raise RecsysError(str(exc)) from None


class ItemLog:
    """The durable log of accepted items (``items.jsonl``) and of refused rows, under one
    directory (the Serve app's ``items_dir``; default ``$RECSYS_HOME/items``)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else recsys_home() / "items"
        self.path = self.directory / LOG_FILE

    def append(self, items: list[NewItem], now: datetime | None = None) -> None:
        """Log ``items`` in one durable write (raises OSError when it cannot: nothing kept)."""
        if not items:
            return
        now = now or datetime.now(UTC)
        lines = [ItemRecord(**i.model_dump(), received=now).model_dump_json() for i in items]
        self.directory.mkdir(parents=True, exist_ok=True)
        append_line(self.path, "\n".join(lines))

    def reject(self, rejected: list[Rejected], rows: list[Any], now: datetime | None = None):
        """Quarantine the refused rows with their reasons (the row as sent, shortened)."""
        if not rejected:
            return
        when = (now or datetime.now(UTC)).isoformat()
        lines = [
            json.dumps(
                {"received": when, "row": r.row, "reason": r.reason, "input": _input(rows, r.row)}
            )
            for r in rejected
        ]
        self.directory.mkdir(parents=True, exist_ok=True)
        append_line(self.directory / REJECTED_FILE, "\n".join(lines))

    def size(self) -> int:
        """The log's length in bytes (0 before the first item): one ``stat``."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, offset: int = 0) -> tuple[pd.DataFrame, int]:
        """The items logged from byte ``offset`` on, as a table in log order
        (:data:`ITEM_COLUMNS`), and the offset after the last whole line read."""
        if self.size() <= offset:
            return _frame([]), offset
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line still being written waits
        records = []
        for line in filter(None, whole.splitlines()):
            try:
                records.append(ItemRecord.model_validate_json(line))
            except ValidationError:  # never written by ItemLog: a hand edit, a torn disk
                warnings.warn(
                    f"{self.path}: skipped an unreadable line {shorten(line)}", stacklevel=2
                )
        return _frame(records), offset + len(whole)

    def ids(self) -> set[str]:
        return set(self.read()[0][ITEM])


def merged_catalog(items: pd.DataFrame | None, added: pd.DataFrame) -> pd.DataFrame | None:
    """The catalog ``items`` with the ``added`` items it lacks appended (its columns kept;
    the added items' text in the columns both share)."""
    if not len(added):
        return items
    if items is None:
        return added
    items = items.assign(**{ITEM: items[ITEM].astype(str)})
    fresh = added[~added[ITEM].isin(items[ITEM])]
    fresh = fresh[[c for c in fresh.columns if c in items.columns or c == ITEM]]
    return pd.concat([items, fresh], ignore_index=True)


def _frame(records: list[ItemRecord]) -> pd.DataFrame:
    rows = [r.model_dump(include=set(ITEM_COLUMNS)) for r in records]
    frame = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    frame["release_year"] = pd.to_numeric(frame["release_year"]).astype("Int64")
    return frame.astype({ITEM: object, "title": object, "genres": object, "description": object})


def _bounded(rows: list, where: str, most: int) -> list:
    if not rows:
        raise ValueError(f"{where}: no items")
    if len(rows) > most:
        raise ValueError(f"{where}: {len(rows)} items, at most {most} at once")
    return rows


def _json_rows(path: Path) -> list:
    text = path.read_text(errors="replace").strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON list ({exc})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                rows.append({UNREADABLE: f"line {n}: not JSON ({exc.msg})"})
    return rows


def _plain_row(row: dict) -> dict:
    """A table row as JSON would carry it: missing values left out, ids as text, whole-number
    years as ints (a CSV's text too), a genres list kept (a CSV's ``"a|b"`` stays text)."""
    out = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if key == ITEM:
            value = str(value)
        elif key == "release_year":
            value = _whole(value)
        elif hasattr(value, "tolist"):
            value = value.tolist()
        out[str(key)] = value
    return out


def _printable(text: str | list[str] | None) -> str | None:
    """A reason (or id) that any UTF-8 writer takes: a field name or id a client sent with a
    lone surrogate is shown escaped."""
    if text is None:
        return None
    text = "; ".join(text) if isinstance(text, list) else text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _whole(value: Any) -> Any:
    """A table's year (a float, or a CSV's text) as an int when it is a whole number; else as
    it was (and refused by the check, naming it)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else value


def _input(rows: list[Any], n: int) -> Any:
    value = rows[n] if 0 <= n < len(rows) else None
    return value if len(json.dumps(value, default=str)) <= 512 else shorten(value)
