"""What ``recsys train`` takes, importable without what trains (the command starts Ray first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recsys.data.validate import DEFAULT_MAX_BAD_SHARE
from recsys.features.store import DEFAULT_SERVICE
from recsys.training.runs import CHECKPOINT_EVERY_S


class TrainArgs(BaseModel):
    """What ``recsys train`` takes."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    model: str
    out: Path
    params: dict[str, Any] = {}
    max_bad_share: float = Field(DEFAULT_MAX_BAD_SHARE, ge=0.0, le=1.0)
    gpu: bool = False
    num_workers: int = Field(1, ge=1)
    resume: bool = False
    storage_path: str | None = None  # checkpoints; default $RECSYS_HOME/checkpoints
    run_name: str | None = None  # default: the model directory's name
    checkpoint_every_s: float = Field(CHECKPOINT_EVERY_S, ge=0)  # and after the last epoch
    features: Path | None = None  # a Feast repository: train on its point-in-time training set
    feature_service: str = DEFAULT_SERVICE
