"""The Feast repository as a folder: where it is, its definitions copied into a new one, which
configuration file picks the online store, and ``feast apply`` run on it (skipped when what it
reads has not changed since the last apply).

The online store is chosen by configuration only: ``feature_store.yaml`` (SQLite, the embedded
default) or ``feature_store.redis.yaml`` (Redis at ``$REDIS_CONNECTION_STRING``), picked with
``online="redis"`` or ``RECSYS_FEAST_ONLINE=redis``.

Feast's typeguard checks (see :mod:`recsys.features`) look at the definitions alone: an apply
runs them the first time a set of definitions is applied on this machine, and later applies of
the same definitions (another copy of the repository, another online store) skip them, which
halves an apply's time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Literal

from recsys.config import RecsysError, recsys_home
from recsys.features.build import TABLES
from recsys.files import atomic_path

Online = Literal["sqlite", "redis"]
YAML = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
STAMP = ".applied.{kind}"  # in data/: apply_digest as of the last apply
# What the embedded store's ``feast apply`` creates: without them an apply is due whatever
# the stamp says.
APPLIED_FILES = {"sqlite": ("registry.db", "online_store.db"), "redis": ("registry.redis.db",)}
# Feast's own CLI with its checks, and the same CLI without them (recsys.features.feast_cli).
CHECKED_CLI, UNCHECKED_CLI = "feast.cli.cli", "recsys.features.feast_cli"


def default_repo() -> Path:
    """``$RECSYS_FEATURE_REPO``, else ``./feature_repo``."""
    return Path(os.environ.get("RECSYS_FEATURE_REPO", "feature_repo"))


def copy_definitions(
    source: str | Path, dest: str | Path, overrides: dict[str, Path] | None = None
) -> Path:
    """A repository at ``dest`` with the definitions of ``source`` (its ``.py`` and ``.yaml``
    files) and ``overrides`` (``{name: file}``, added or replacing); ``data/`` is left as it
    is. Each file is written to a temporary name and renamed, so concurrent copies (one per
    pod) never expose a half-written definition to a reader."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files = {p.name: p for p in Path(source).iterdir() if p.suffix in (".py", ".yaml")}
    for name, path in {**files, **(overrides or {})}.items():
        with atomic_path(dest / name) as tmp:
            shutil.copyfile(path, tmp)
    return dest


def init_repo(source: str | Path, dest: str | Path, store_yaml: str | Path | None = None) -> Path:
    """Make ``dest`` a repository with the definitions of ``source``, and with ``store_yaml``
    (when given) as its Redis configuration; ``data/`` is created or kept."""
    source = Path(source)
    if not any(source.glob("*.py")):
        raise RecsysError(f"{source}: no Feast definitions (*.py) to copy")
    overrides = None
    if store_yaml is not None:
        if not Path(store_yaml).is_file():
            raise RecsysError(f"{store_yaml}: no such store configuration")
        overrides = {YAML["redis"]: Path(store_yaml)}
    dest = copy_definitions(source, dest, overrides)
    (dest / "data").mkdir(exist_ok=True)
    return dest


def online_kind(online: str | None = None) -> Online:
    """``online``, else ``$RECSYS_FEAST_ONLINE``, else ``sqlite``; checked."""
    kind = online or os.environ.get("RECSYS_FEAST_ONLINE", "sqlite")
    if kind not in YAML:
        raise RecsysError(f"online store {kind!r}: expected one of {sorted(YAML)}")
    return kind  # type: ignore[return-value]


def store_yaml(repo: str | Path, online: str | None = None) -> Path:
    """The ``feature_store*.yaml`` of ``repo`` for the chosen online store."""
    repo = Path(repo)
    path = repo / YAML[online_kind(online)]
    if not path.exists():
        raise RecsysError(f"{repo}: not a Feast repository (no {path.name})")
    if online_kind(online) == "redis" and not os.environ.get("REDIS_CONNECTION_STRING"):
        raise RecsysError("the Redis online store needs REDIS_CONNECTION_STRING (host:port)")
    return path


def apply_digest(repo: str | Path, online: str | None = None) -> str:
    """What ``feast apply`` reads, as one checksum: the definitions (``*.py``), the chosen
    configuration file, the Redis address it expands, the Feast and recsys versions, and the
    folder itself (the registry records its online tables by absolute path: a copied or moved
    repository is applied anew)."""
    repo, kind = Path(repo).resolve(), online_kind(online)
    digest = hashlib.sha256(str(repo).encode() + b"\0")
    digest.update(store_yaml(repo, kind).read_bytes() + b"\0")
    for part in (
        definitions_digest(repo),
        kind,
        os.environ.get("REDIS_CONNECTION_STRING", "") if kind == "redis" else "",
        metadata.version("recsys-platform"),
    ):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def definitions_digest(repo: str | Path) -> str:
    """What Feast's type checks at apply time see, as one checksum: the definitions
    (``*.py``) and the Feast version; not the folder, the configuration or the data."""
    digest = hashlib.sha256(metadata.version("feast").encode() + b"\0")
    for path in sorted(Path(repo).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def checked_mark(repo: str | Path) -> Path:
    """The file whose presence says that ``repo``'s definitions passed a checked apply on
    this machine: ``$RECSYS_HOME/feast-checked/<definitions_digest>``."""
    return recsys_home() / "feast-checked" / definitions_digest(repo)


def apply_command(repo: str | Path, config: Path) -> list[str]:
    """The ``feast apply`` to run: Feast's own CLI, with typeguard's checks of the definitions
    unless they passed them before (:func:`checked_mark`)."""
    cli = UNCHECKED_CLI if checked_mark(repo).exists() else CHECKED_CLI
    return [sys.executable, "-m", cli, "-f", str(config), "apply"]


def apply_due(repo: str | Path, online: str | None = None) -> bool:
    """Whether ``feast apply`` must run: no stamp of the last apply in ``data/``, a stamp
    that is not :func:`apply_digest`, or the registry (or the SQLite online store) gone."""
    kind = online_kind(online)
    return not _stamped(Path(repo) / "data", kind, apply_digest(repo, kind))


def _stamped(data: Path, kind: str, digest: str) -> bool:
    """Whether ``data/`` holds what an apply of ``digest`` made, and its stamp."""
    stamp = data / STAMP.format(kind=kind)
    made = all((data / name).exists() for name in APPLIED_FILES[kind])
    return made and stamp.exists() and stamp.read_text() == digest


def feast_apply(repo: str | Path, online: str | None = None, *, if_changed: bool = False) -> str:
    """``feast apply`` on ``repo`` (the real CLI, in a child process: Feast imports the
    repository's modules, and a fresh process keeps one repository's modules from another's).

    Args:
        repo: the repository; its feature tables must be built (``data/``).
        online: the online store (:func:`online_kind`).
        if_changed: only when :func:`apply_due`.

    Returns:
        The CLI's output (empty when skipped).
    """
    repo, kind = Path(repo).resolve(), online_kind(online)
    data = repo / "data"
    missing = [t for t in TABLES if not (data / f"{t}.parquet").exists()]
    if missing:
        raise RecsysError(
            f"{data}: no {', '.join(missing)} table(s); run `recsys features build` first"
        )
    config, digest = store_yaml(repo, kind), apply_digest(repo, kind)
    if if_changed and _stamped(data, kind, digest):
        return ""
    stamp = data / STAMP.format(kind=kind)
    stamp.unlink(missing_ok=True)
    env = {**os.environ, "FEAST_USAGE": "False"}
    cmd = apply_command(repo, config)
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RecsysError(f"feast apply in {repo} failed:\n{proc.stderr[-3000:]}")
    if CHECKED_CLI in cmd:
        mark_checked(repo)
    with atomic_path(stamp) as tmp:
        tmp.write_text(digest)
    return proc.stdout


def mark_checked(repo: Path) -> None:
    """Record that ``repo``'s definitions passed a checked apply (where the home is not
    writable, the next apply checks them again)."""
    mark = checked_mark(repo)
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError:
        pass
