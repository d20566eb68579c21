"""What crosses the serving boundary: the app's arguments, the deployments' user_config, and
the HTTP request and response bodies. Every one forbids unknown fields."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppArgs(Strict):
    """``build_app`` arguments (the ``args:`` of ``serving/config.yaml``)."""

    model_root: str | None = None  # model versions live here; default $RECSYS_HOME/models
    feature_repo: str | None = None  # Feast repository; default $RECSYS_FEATURE_REPO/feature_repo
    online_store: Literal["sqlite", "redis"] | None = None  # default $RECSYS_FEAST_ONLINE
    events_dir: str | None = None  # default $RECSYS_HOME/events
    prediction_log_dir: str | None = None  # default $RECSYS_HOME/predictions
    catalog: str | None = None  # items parquet with a title column, for readable reasons
    topology: Literal["composed", "fused"] = "composed"
    max_batch_size: int = Field(16, ge=1, le=256)  # the Ranker's @serve.batch
    batch_wait_timeout_s: float = Field(0.002, ge=0.0, le=1.0)


class ModelSelection(Strict):
    """Every deployment's ``user_config``: the model version to serve (a directory name under
    ``model_root``, or a path). Changing it reloads the model in place (``reconfigure``)."""

    model_version: str | None = None


class Filters(Strict):
    include_genres: list[str] = []  # keep items with at least one of these genres
    exclude_genres: list[str] = []  # drop items with any of these


class RecommendRequest(Strict):
    user_id: str = Field(min_length=1, max_length=256, strict=True)
    k: int = Field(10, ge=1, le=100, strict=True)
    exclude_seen: bool = Field(True, strict=True)
    filters: Filters = Filters()
    diversity: float = Field(0.0, ge=0.0, le=1.0)  # MMR: 0 = pure relevance


class RecommendedItem(Strict):
    item_id: str
    score: float
    rank: int
    reason: str


class RecommendResponse(Strict):
    user_id: str
    model_version: str
    items: list[RecommendedItem]
    cold_start: bool
    took_ms: float
