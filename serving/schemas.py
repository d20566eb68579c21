"""What crosses the serving boundary: the app's arguments, the deployments' user_config, and
the HTTP request and response bodies. Every one forbids unknown fields; numbers are strict
(no booleans or numeric strings) and finite (NaN and infinities are refused with 422)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recsys.config import Strict
from recsys.experiments.spec import Experiment
from recsys.recommend.stages import Answer, Count, Filters, Recommendation, Request

__all__ = [
    "AppArgs",
    "ExperimentArm",
    "Filters",
    "ModelSelection",
    "Recommendation",
    "RecommendRequest",
    "RecommendResponse",
]


class AppArgs(Strict):
    """``build_app`` arguments (the ``args:`` of ``serving/config.yaml``)."""

    model_root: str | None = None  # model versions live here; default $RECSYS_HOME/models
    feature_repo: str | None = None  # Feast repository; default $RECSYS_FEATURE_REPO/feature_repo
    online_store: Literal["sqlite", "redis"] | None = None  # default $RECSYS_FEAST_ONLINE
    events_dir: str | None = None  # default $RECSYS_HOME/events
    items_dir: str | None = None  # new items' log (POST /items); default $RECSYS_HOME/items
    prediction_log_dir: str | None = None  # default $RECSYS_HOME/predictions
    catalog: str | None = None  # items parquet with a title column, for readable reasons
    topology: Literal["composed", "fused"] = "composed"
    # The most requests a batch holds (every @serve.batch of the app); a full batch goes at once.
    # 8: where the one path's cost per request in-process stops falling, so a larger batch adds
    # only waiting (docs/serving.md: the measurements).
    max_batch_size: int = Field(8, ge=1, le=256)
    # How long a batch waits to fill (docs/serving.md: the measured trade-off).
    batch_wait_timeout_s: float = Field(0.005, ge=0.0, le=1.0)
    # A request body larger than this is answered 413 before anything parses it.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 2**20)


class ModelSelection(Strict):
    """Every deployment's ``user_config``: the model version to serve (a directory name under
    ``model_root``, or a path), and the experiment that runs against it, if any (its control
    is that version). Changing either reloads in place (``reconfigure``)."""

    model_version: str | None = None
    experiment: Experiment | None = None

    @model_validator(mode="after")
    def _the_control_is_served(self) -> ModelSelection:
        if self.experiment is not None and self.experiment.control != self.model_version:
            raise ValueError(
                f"experiment {self.experiment.name!r}: its control "
                f"{self.experiment.control!r} is not the served model_version "
                f"{self.model_version!r}"
            )
        return self

    def versions(self) -> list[str]:
        """What the serving replicas hold: the served version and a challenger that answers
        users (a shadow's challenger is the Shadow deployment's: :meth:`shadow`)."""
        held = [self.model_version] if self.model_version else []
        e = self.experiment
        return held + ([e.challenger] if e is not None and e.serves_challenger() else [])

    def shadow(self) -> str | None:
        """The version a shadow experiment's challenger runs (None without one)."""
        e = self.experiment
        return e.challenger if e is not None and not e.serves_challenger() else None


class ExperimentArm(Strict):
    """An experiment's part of an answer: its name and the user's arm; ``interleaved`` lists
    each item's team (the arm whose list placed it)."""

    name: str
    arm: Literal["control", "challenger", "interleaved"]
    teams: list[Literal["control", "challenger"]] | None = None


class RecommendRequest(Request):
    """``POST /recommend``: the user and the request of the one recommendation path."""

    user_id: str = Field(min_length=1, max_length=256, strict=True)
    k: Count = Field(10, ge=1, le=100, strict=True)

    def request(self) -> Request:
        return Request.model_validate(self.model_dump(exclude={"user_id"}))


class RecommendResponse(Strict):
    user_id: str
    model_version: str
    items: list[Recommendation]
    cold_start: bool
    took_ms: float
    experiment: ExperimentArm | None = None
    # of a request's candidate list: the ids the served version does not know (left out)
    unknown_candidates: int = 0

    @classmethod
    def of(
        cls, answer: Answer, version: str, took_ms: float, experiment: ExperimentArm | None = None
    ) -> RecommendResponse:
        """The response carrying ``answer`` of ``version`` (the user's, or a shadow's)."""
        return cls(
            user_id=answer.user_id,
            model_version=version,
            items=answer.items,
            cold_start=answer.cold_start,
            took_ms=round(took_ms, 3),
            experiment=experiment,
            unknown_candidates=answer.unknown_candidates,
        )


class Problem(Strict):
    """An error answer: what was wrong (FastAPI's validation errors list each field)."""

    detail: str | list[dict]
    error_id: str | None = None
