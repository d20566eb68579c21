"""JSON lines written by running services, read back whatever their state.

Damage is expected: a crash leaves a half-written last line, someone drops a gzip file beside
the logs. Nothing here raises on a bad line or file: it is skipped and reported in a warning
naming the file, because a monitoring job that dies on one torn line reports nothing at all.
:func:`read_records` reads a log through its record schema (:mod:`recsys.data.records`): a
line that is JSON but not a valid record is skipped too, counted by reason.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from recsys.data.records import Record, reasons

R = TypeVar("R", bound=Record)
logger = logging.getLogger(__name__)


def read_jsonl(paths: Iterable[Path]) -> tuple[list[dict], list[str]]:
    """Every JSON object in the given JSON-lines files, skipping whatever cannot be read.

    Args:
        paths: the files, read in the order given.

    Returns:
        The records, and one warning per damaged or unreadable file naming the file, how
        many lines were skipped and the first reason. Each warning is also logged.
    """
    records, warnings = [], []
    for path in paths:
        problem = _read_file(Path(path), lambda raw: _parse_line(raw, records))
        if problem:
            warnings.append(warn(problem))
    return records, warnings


def read_records(path: Path, kind: type[R]) -> tuple[list[R], list[str]]:
    """The valid ``kind`` records of one JSON-lines file.

    Each line is parsed and checked in one pass (``model_validate_json``: faster than
    ``json.loads`` alone on a long prediction record); a line that pass refuses as a whole
    is read again by :func:`read_jsonl`'s rules, which say what is wrong with it.

    Returns:
        The records, and the warnings: the damaged lines as :func:`read_jsonl` reports them,
        then the JSON objects that are not valid records, counted by reason.
    """
    kept, bad, objects = [], Counter(), 0

    def take(raw: bytes) -> str:
        nonlocal objects
        try:
            kept.append(kind.model_validate_json(raw))
            objects += 1
            return ""
        except ValidationError as exc:
            if all(error["loc"] for error in exc.errors()):  # an object, with bad fields
                objects += 1
                bad.update(reasons(exc))
                return ""
        values: list[dict] = []  # not JSON, not an object, or a whole-record error
        problem = _parse_line(raw, values)
        if not problem:
            objects += 1
            try:
                kept.append(kind.model_validate(values[0]))
            except ValidationError as exc:
                bad.update(reasons(exc))
        return problem

    problem = _read_file(Path(path), take)
    warnings = [warn(problem)] if problem else []
    if bad:
        warnings.append(tally(path, objects - len(kept), objects, bad))
    return kept, warnings


def _read_file(path: Path, take: Callable[[bytes], str]) -> str:
    """Gives ``take`` each non-blank line (it returns why the line is unusable, or "");
    returns what went wrong with the file, if anything."""
    skipped, first, n = 0, "", 0
    try:
        with path.open("rb") as lines:  # bytes: a non-UTF-8 line is one bad line, not a crash
            for n, raw in enumerate(lines, start=1):
                why = take(raw) if raw.strip() else ""
                if why:
                    skipped += 1
                    first = first or f"line {n}: {why}"
    except OSError as exc:  # permission denied, a directory, an I/O error part-way
        return f"{path}: unreadable after {n} lines ({type(exc).__name__}: {exc.strerror or exc})"
    where = first if skipped == 1 else f"first at {first}"
    return f"{path}: skipped {skipped} of {n} lines ({where})" if skipped else ""


def _parse_line(raw: bytes, records: list[dict]) -> str:
    """Appends the line's record to ``records``, or returns why it cannot be one."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        # Every writer ends a record with its newline in the same write: no newline means
        # the process died mid-write, expected once per crash rather than corruption.
        torn = " (half-written last line)" if not raw.endswith(b"\n") else ""
        return f"not JSON{torn}: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "not JSON: nested too deeply"
    if not isinstance(value, dict):
        return f"not a JSON object but {type(value).__name__}"
    records.append(value)
    return ""


def log_files(directory: Path, prefix: str) -> tuple[list[Path], list[str]]:
    """The ``<prefix>-*.jsonl`` files of ``directory`` in name order, and a warning when there
    are none (or no directory)."""
    if not directory.is_dir():
        return [], [warn(f"{directory}: no such directory (no {prefix} read)")]
    paths = sorted(directory.glob(f"{prefix}-*.jsonl"))
    return paths, [] if paths else [warn(f"{directory}: no {prefix}-*.jsonl files")]


def tally(path: Path, skipped: int, total: int, reasons: Counter) -> str:
    """A warning that ``skipped`` of ``total`` records of ``path`` were skipped, by reason."""
    detail = ", ".join(f"{why}: {count}" for why, count in reasons.most_common())
    return warn(f"{path}: skipped {skipped} of {total} records ({detail})")


def warn(message: str) -> str:
    """``message``, logged as a warning."""
    logger.warning(message)
    return message
