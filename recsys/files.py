"""Files on disk, for every layer: atomic writes (temp file or directory, then rename),
durable appends, strict JSON.

Every writer goes through :func:`atomic_path` (a file) or :func:`atomic_dir` (a directory): the
data lands in a temporary name beside the target and is renamed over it only once complete, so
a crash never leaves half a file or a directory missing its parts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel

from recsys.config import RecsysError

if TYPE_CHECKING:
    import pandas as pd

M = TypeVar("M", bound=BaseModel)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    Raises:
        RecsysError: when ``target`` cannot be written there (a directory, a file where a
            folder should be, no permission), naming the path and the reason.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise RecsysError(f"{target}: cannot be written: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give files the usual mode
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, target)
        except OSError as exc:
            raise RecsysError(f"{target}: cannot be written: {exc.strerror or exc}") from exc
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new empty directory beside ``target``; rename it to ``target`` on success.

    Readers see the old directory or the complete new one, never a part; on an exception in
    the block the temporary directory is removed and ``target`` is left as it was.

    Args:
        target: the directory to publish.
        replace: an existing ``target`` is moved aside, the new one renamed in, the old one
            removed; when False, an existing (non-empty) ``target`` is kept.

    Raises:
        FileExistsError: ``replace`` is False and ``target`` exists (someone published first).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give directories the usual mode
    try:
        yield tmp
        if replace and target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:6]}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            tmp.rename(target)  # fails on an existing non-empty directory: never merges
        except OSError as exc:
            if target.exists():
                raise FileExistsError(errno.EEXIST, "already published", str(target)) from exc
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line durably: a single ``write`` on an ``O_APPEND`` descriptor, then
    ``fsync``, so lines from concurrent writers never interleave and an acknowledged line
    survives a crash.

    Raises:
        OSError: the line was not kept whole (a full disk, an unwritable directory); a part
            written before the disk filled is cut off again, so no half line stays behind.
    """
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    written = 0
    try:
        start = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes", str(path))
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            if written and os.fstat(fd).st_size == start + written:  # nobody appended since
                os.ftruncate(fd, start)
        raise
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame to parquet atomically (no index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    # through a file object: pyarrow encodes a str path strictly as UTF-8 and fails on a name
    # with undecodable bytes (surrogate escapes), which the OS takes as it is
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f)
    return Path(path)


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """Write JSON atomically, pretty-printed, keys in insertion order."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)


def read_json_model(path: Path, model: type[M], what: str) -> M:
    """Read a JSON file into a strict pydantic model; errors name the file and the directory.

    Args:
        path: the JSON file.
        model: the pydantic model to validate against.
        what: what the directory holding ``path`` should be ("dataset", "model").
    """
    if not path.exists():
        raise RecsysError(f"{path.parent}: not a {what} directory (no {path.name})")
    try:
        return model.model_validate_json(path.read_text())
    except ValueError as exc:
        raise RecsysError(f"{path}: invalid {path.name}: {exc}") from exc
