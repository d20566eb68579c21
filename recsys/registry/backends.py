"""Where a registry's files live: a local directory, or any fsspec URI (``s3://``, ``gs://``).

Both backends speak in paths relative to the registry root (``"versions/v1/manifest.json"``)
and offer the few operations the registry needs, each as atomic as the storage allows:

- local: whole-file writes go to a temp file in the same directory, are fsynced, then
  ``os.replace``-d; a version directory is copied to a temp name, then renamed
  (:func:`recsys.files.atomic_dir`); read-modify-write operations hold an exclusive ``flock``
  on ``<root>/.lock`` across processes.
- remote: a whole-file write is one object PUT, which object stores never expose half-written;
  a version's files are uploaded with ``manifest.json`` last so it is visible only when complete;
  there is no cross-process lock (see :class:`RemoteBackend`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from recsys.config import RecsysError
from recsys.files import atomic_dir

MANIFEST = "manifest.json"


def temp_name(name: str) -> str:
    """A hidden sibling name for ``name``; listings skip names that start with a dot."""
    return f".{name}.tmp-{uuid.uuid4().hex[:8]}"


class LocalBackend:
    """A registry in a local directory (also ``file://`` URIs)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def url(self, rel: str) -> str:
        """Where ``rel`` lives, for messages and :class:`ModelVersion` ``uri``."""
        return str(self.root / rel)

    def read_text(self, rel: str) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(rel).read_text()
        except FileNotFoundError:
            return None

    def write_atomic(self, rel: str, text: str) -> None:
        """Replace the file in one step: readers see the old or the new text, never a part."""
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(temp_name(path.name))
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name points at it
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync(path.parent)  # and the rename itself survives a crash

    def list_names(self, rel: str) -> list[str]:
        """Names in a directory, temp and hidden names left out; [] when it does not exist."""
        try:
            return sorted(n for n in os.listdir(self.path(rel)) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def publish_dir(self, source: Path, rel: str) -> bool:
        """Copy ``source`` to ``rel`` under a temp name, then rename it into place.

        Returns:
            False (and leaves ``rel`` alone) when ``rel`` already exists.
        """
        dest = self.path(rel)
        try:
            with atomic_dir(dest, replace=False) as tmp:  # never merges into an existing one
                shutil.copytree(source, tmp, dirs_exist_ok=True)
                for part in tmp.rglob("*"):  # on disk before the rename makes it visible
                    _fsync(part)
        except FileExistsError:
            return False
        _fsync(dest.parent)
        return True

    def local_dir(self, rel: str) -> Path:
        return self.path(rel)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on ``<root>/.lock`` (blocks until other processes let go).

        Raises:
            RecsysError: there is no registry at the root (a mistyped path is not created).
        """
        if not self.root.is_dir():
            raise RecsysError(f"no registry at {self.root} (register a model version first)")
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


class RemoteBackend:
    """A registry on an object store or any other fsspec filesystem.

    There is no lock across processes here: concurrent promotions are last-writer-wins (each
    pointer write is a single PUT, so never torn), and never dangling because the version's
    manifest is checked before the pointer names it. The ``previous`` stack and the history may
    disagree after such a race; run promotions from one place (the pipeline) on object stores.
    """

    def __init__(self, uri: str) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(uri)
        self.root = self.root.rstrip("/")
        self.uri = uri

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def url(self, rel: str) -> str:
        return f"{self.uri}/{rel}"

    def read_text(self, rel: str) -> str | None:
        try:
            return self.fs.cat_file(self.path(rel)).decode()
        except FileNotFoundError:
            return None

    def write_atomic(self, rel: str, text: str) -> None:
        self.fs.pipe_file(self.path(rel), text.encode())  # one PUT: all or nothing

    def list_names(self, rel: str) -> list[str]:
        try:
            entries = self.fs.ls(self.path(rel), detail=False)
        except FileNotFoundError:
            return []
        names = (str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
        return sorted(n for n in names if n and not n.startswith("."))

    def publish_dir(self, source: Path, rel: str) -> bool:
        """Upload every part, then ``manifest.json`` last: the version appears only complete."""
        if self.fs.exists(self.path(f"{rel}/{MANIFEST}")):
            return False
        files = sorted(p for p in source.rglob("*") if p.is_file())
        top_manifest = source / MANIFEST
        for file in [*(f for f in files if f != top_manifest), top_manifest]:
            self.fs.put_file(str(file), self.path(f"{rel}/{file.relative_to(source).as_posix()}"))
        return True

    def download_dir(self, rel: str, dest: Path) -> None:
        """Download a directory to ``dest`` through a temp directory and a rename."""
        prefix = self.path(rel)
        # another process that downloaded it first: keep theirs
        with contextlib.suppress(FileExistsError), atomic_dir(dest, replace=False) as tmp:
            for remote in self.fs.find(prefix):
                local = tmp / str(remote)[len(prefix) :].lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote, str(local))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield  # object stores have no lock; see the class docstring


def open_backend(uri: str | Path) -> LocalBackend | RemoteBackend:
    """The backend for a path, a ``file://`` URI or another fsspec URI."""
    text = str(uri)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        return RemoteBackend(text.rstrip("/"))
    return LocalBackend(Path(text).expanduser().resolve())


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
