"""``manifest.json`` of a model version: a light module (no torch) that the registry, the
monitor and the readiness check read without loading a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recsys.files import read_json_model

MANIFEST = "manifest.json"


class StateSpec(BaseModel):
    """What a version reads of the feature store: the complete seen set, the ``recent_n``
    latest items (the same window offline and online; the online store must hold at least
    this), and the ``context`` features (``view:feature``) of the user and of the items."""

    model_config = ConfigDict(extra="forbid")

    seen: Literal["complete"] = "complete"
    recent_n: int = Field(ge=0)
    context: list[str] = []


class Manifest(BaseModel):
    """``manifest.json`` of a model version."""

    model_config = ConfigDict(extra="forbid")

    version: str
    kind: str
    created: str
    data_checksum: str | None = None
    # The checksums of the data this version's training rows are (or extend): the online
    # store serving it must have been built from one of them (recsys.recommend.check_store).
    data_lineage: list[str] = []
    feature_service: str | None = None
    state: StateSpec | None = None  # None in manifests written before the state contract
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    code_version: str
    n_items: int
    n_train_users: int
    parts: list[str] = []

    def lineage(self) -> list[str]:
        """``data_lineage``, or the data checksum alone for a manifest written before."""
        if self.data_lineage:
            return list(self.data_lineage)
        return [self.data_checksum] if self.data_checksum else []


def read_manifest(directory: str | Path) -> Manifest:
    """Read and check a model directory's manifest."""
    return read_json_model(Path(directory) / MANIFEST, Manifest, "model")
