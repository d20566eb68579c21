"""The model registry: immutable model versions, a champion pointer and an event history.

Layout at the registry root (a directory, or any fsspec URI such as ``s3://bucket/registry``)::

    versions/<version>/manifest.json + parts   # the model directory as saved
    champion.json                              # the pointer, with the stack of earlier champions
    history/<UTC time>-<uuid8>.json            # one file per event; nothing is ever appended

On a local root, ``versions/`` is a serving ``model_root``. The pointer is replaced in one step
(temp file, fsync, rename; one PUT on object stores), so a reader never sees it torn; promote
and rollback hold a lock across processes on local roots so the pointer's ``previous`` stack and
the history agree even under races. Object stores have no such lock: there concurrent
promotions are last-writer-wins, and never dangling because the version's manifest is checked
before the pointer names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.config import RecsysError, recsys_home
from recsys.models.manifest import Manifest, read_manifest
from recsys.registry.backends import MANIFEST, LocalBackend, open_backend

CHAMPION = "champion.json"
MAX_PREVIOUS = 50  # how many earlier champions the pointer remembers for rollback
VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # one safe path component


class ModelVersion(Manifest):
    """A registered model version: its manifest and where it lives."""

    uri: str


class Champion(BaseModel):
    """``champion.json``: the version to serve and the earlier champions, newest first."""

    model_config = ConfigDict(extra="forbid")

    version: str
    promoted_at: datetime
    reason: str = ""
    previous: list[str] = []


class Event(BaseModel):
    """One ``history/*.json`` file."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    action: Literal["register", "promote", "rollback"]
    version: str
    previous: str | None = None  # the champion before a promote or rollback
    reason: str = ""
    metrics: dict[str, Any] = {}
    host: str = Field(default_factory=socket.gethostname)  # who wrote it
    pid: int = Field(default_factory=os.getpid)


def default_uri() -> str:
    """``$RECSYS_REGISTRY``, else ``$RECSYS_HOME/registry``."""
    return os.environ.get("RECSYS_REGISTRY") or str(recsys_home() / "registry")


class Registry:
    """Model versions and the champion pointer at a URI (see the module docstring)."""

    def __init__(self, uri: str | Path | None = None) -> None:
        self._backend = open_backend(uri if uri is not None else default_uri())
        self.uri: str = self._backend.uri

    # -- versions ----------------------------------------------------------------------
    def register(self, model_dir: str | Path, *, note: str = "") -> ModelVersion:
        """Copy a model directory into ``versions/<manifest.version>``.

        Args:
            model_dir: a directory written by ``Recommender.save``.
            note: kept as the reason of the "register" event.

        Returns:
            The registered version; registering an identical version again changes nothing.

        Raises:
            RecsysError: the directory is not a model, or its version id is registered with a
                different manifest.
        """
        manifest = read_manifest(model_dir)
        _check_id(manifest.version)
        if not self._backend.publish_dir(Path(model_dir), f"versions/{manifest.version}"):
            if Manifest.model_validate(self.manifest(manifest.version)) != manifest:
                raise RecsysError(
                    f"{model_dir}: version {manifest.version} is already registered in "
                    f"{self.uri} with a different manifest; save the model under a new version"
                )
            return self.get(manifest.version)
        registered = dict(version=manifest.version, reason=note, metrics=manifest.metrics)
        self._record(Event(at=_now(), action="register", **registered))
        return self.get(manifest.version)

    def versions(self) -> list[ModelVersion]:
        """Complete versions (manifest present), oldest first."""
        found = []
        for name in self._backend.list_names("versions"):
            raw = self._read_json(f"versions/{name}/{MANIFEST}")
            if raw is not None:
                found.append(self._version(raw, name))
        return sorted(found, key=lambda v: (v.created, v.version))

    def get(self, version: str) -> ModelVersion:
        """A registered version; the error names the registry and some versions it has."""
        return self._version(self.manifest(version), version)

    def manifest(self, version: str) -> dict[str, Any]:
        """The version's ``manifest.json`` as stored."""
        raw = self._read_json(f"versions/{version}/{MANIFEST}") if _valid(version) else None
        if raw is None:
            names = [v.version for v in self.versions()]
            have = f"it has {', '.join(names[-5:])}" + (
                f" and {len(names) - 5} more" if len(names) > 5 else ""
            )
            raise RecsysError(
                f"model version {version!r} is not in the registry {self.uri} "
                f"({have if names else 'it is empty'})"
            )
        return raw

    def local_path(self, version: str) -> Path:
        """A local directory holding the version, downloaded once for a remote registry."""
        self.get(version)
        if isinstance(self._backend, LocalBackend):
            return self._backend.local_dir(f"versions/{version}")
        key = hashlib.sha1(self.uri.encode()).hexdigest()[:12]
        path = recsys_home() / "registry-cache" / key / version
        if not (path / MANIFEST).exists():  # versions never change, so a copy stays good
            self._backend.download_dir(f"versions/{version}", path)
        return path

    def versions_dir(self) -> Path | None:
        """``<root>/versions`` of a local registry (a serving ``model_root``); else None."""
        if isinstance(self._backend, LocalBackend):
            return self._backend.local_dir("versions")
        return None

    # -- the champion ------------------------------------------------------------------
    def champion(self) -> Champion | None:
        """The current champion, or None before the first promotion."""
        return self._read_json(CHAMPION, Champion, "pointer")

    def promote(self, version: str, *, reason: str = "", metrics: dict | None = None) -> Champion:
        """Make ``version`` the champion; promoting the current champion changes nothing.

        Args:
            version: a registered version (the pointer never names a missing one).
            reason: why, kept in the pointer and the history.
            metrics: the evidence (say, the gate's comparison), kept in the history.
        """
        self.get(version)  # versions are never removed: checked once, it cannot dangle later
        with self._backend.lock():
            current = self.champion()
            if current is not None and current.version == version:
                return current
            stack = [current.version, *current.previous] if current else []
            return self._point(
                stack,
                current,
                action="promote",
                version=version,
                reason=reason,
                metrics=metrics or {},
            )

    def rollback(self, *, reason: str = "") -> Champion:
        """Make the previous champion the champion again (each rollback goes one step back)."""
        with self._backend.lock():
            current = self.champion()
            if current is None or not current.previous:
                what = "no champion" if current is None else f"only {current.version}"
                raise RecsysError(f"cannot roll back: {self.uri} has {what}, no previous champion")
            target, *stack = current.previous
            self.get(target)
            return self._point(stack, current, action="rollback", version=target, reason=reason)

    def history(self) -> list[Event]:
        """Every event, oldest first."""
        events = []
        for name in self._backend.list_names("history"):
            event = self._read_json(f"history/{name}", Event, "event")
            if event is not None:
                events.append(event)
        return events

    # -- experiments (``recsys.experiments`` owns their schema) -------------------------
    def experiment_record(self, name: str) -> dict[str, Any] | None:
        """``experiments/<name>.json``, or None when no experiment of that name was started."""
        return self._read_json(f"experiments/{name}.json")

    def write_experiment_record(self, name: str, record: dict[str, Any]) -> None:
        self._backend.write_atomic(f"experiments/{name}.json", json.dumps(record, indent=2) + "\n")

    def experiment_names(self) -> list[str]:
        return sorted(n.removesuffix(".json") for n in self._backend.list_names("experiments"))

    # -- helpers -----------------------------------------------------------------------
    def _point(self, stack: list[str], current: Champion | None, **event: Any) -> Champion:
        """Point the champion at ``event["version"]`` (``stack``: the previous champions,
        latest first) and record the event (action, version, reason, metrics)."""
        now = _now()
        if current is not None and now <= current.promoted_at:
            # Event names sort by time; keep them in pointer order even if the clock steps back.
            now = current.promoted_at + timedelta(microseconds=1)
        version, reason = event["version"], event["reason"]
        champion = Champion(
            version=version, promoted_at=now, reason=reason, previous=stack[:MAX_PREVIOUS]
        )
        self._backend.write_atomic(CHAMPION, champion.model_dump_json(indent=2) + "\n")
        self._record(Event(at=now, previous=current.version if current else None, **event))
        return champion

    def _record(self, event: Event) -> None:
        name = f"{event.at:%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:8]}.json"
        self._backend.write_atomic(f"history/{name}", event.model_dump_json(indent=2) + "\n")

    def _read_json(self, rel: str, model: type[BaseModel] | None = None, what: str = "") -> Any:
        """The JSON file at ``rel`` (as ``model`` when given; ``what`` names it in an error),
        or None when it does not exist."""
        text = self._backend.read_text(rel)
        if text is None:
            return None
        try:
            raw = json.loads(text)
            return raw if model is None else model.model_validate(raw)
        except ValidationError as exc:
            raise RecsysError(f"{self._backend.url(rel)}: invalid {what}: {exc}") from exc
        except ValueError as exc:
            raise RecsysError(f"{self._backend.url(rel)}: not valid JSON: {exc}") from exc

    def _version(self, manifest: dict[str, Any], name: str) -> ModelVersion:
        url = self._backend.url(f"versions/{name}")
        try:
            return ModelVersion(**manifest, uri=url)
        except ValidationError as exc:
            raise RecsysError(f"{url}/{MANIFEST}: invalid manifest: {exc}") from exc


ROLLOUTS = ("switch", "experiment")


def check_rollout(rollout: str) -> str:
    """``rollout`` when it is one of :data:`ROLLOUTS`, else the error that names it."""
    if rollout not in ROLLOUTS:
        raise RecsysError(f"rollout {rollout!r}: expected one of {', '.join(ROLLOUTS)}")
    return rollout


def register_champion(
    model_dir: str | Path,
    registry_uri: str | None,
    *,
    reason: str = "",
    attachments: dict[str, str | Path] | None = None,
    rollout: str = "switch",
) -> str:
    """Add the model version to the registry and make it the champion; with
    ``rollout="experiment"`` it is only added while the registry has a champion (an experiment
    against the champion decides: :func:`recsys.workflows.deploy.deploy` starts it).

    Args:
        attachments: files stored in the version's directory beside the model's parts, by
            name (the monitoring reference).
        rollout: ``switch`` (the champion at once) or ``experiment``.

    Returns:
        The version id.
    """
    check_rollout(rollout)
    registry = Registry(registry_uri)
    with tempfile.TemporaryDirectory(prefix="recsys-register-") as tmp:
        if attachments:  # the artifact is an input: add the files to a copy
            copy = Path(tmp) / "model"
            shutil.copytree(model_dir, copy)
            for name, path in attachments.items():
                shutil.copyfile(path, copy / name)
            model_dir = copy
        version = registry.register(model_dir, note=reason).version
    if rollout == "switch" or registry.champion() is None:
        registry.promote(version, reason=reason)
    return version


def champion_model(registry_uri: str | None) -> tuple[str, Path] | None:
    """The registry's champion as ``(version, local model directory)``, or None without one."""
    registry = Registry(registry_uri)
    if (champion := registry.champion()) is None:
        return None
    return champion.version, registry.local_path(champion.version)


def _now() -> datetime:
    return datetime.now(UTC)


def _valid(version: str) -> bool:
    return bool(VERSION_ID.fullmatch(version)) and version != "champion"


def _check_id(version: str) -> None:
    if not _valid(version):
        raise RecsysError(
            f"model version {version!r} cannot name a registry directory: expected letters, "
            "digits, '.', '_' or '-' (not starting with '.'), and not the word 'champion'"
        )
