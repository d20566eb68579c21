"""The retraining policy: from a monitoring summary to ``no_action``, ``retrain`` or
``insufficient_data``, with the reasons recorded.

The policy is a YAML file of :class:`MonitorPolicy` fields (the defaults apply to the keys it
leaves out); a typo in a key fails loudly. The decision looks at three signals, in this order
of trust:

- quality on feedback against the version's reference quality (the loss a user feels);
- drift of the prediction scores (the model's own inputs moved);
- the share of drifted user and item features.

Too few requests or too few users with feedback give ``insufficient_data``: no decision is
better than one made on noise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys.config import RecsysError

Action = Literal["no_action", "retrain", "insufficient_data"]


class MonitorPolicy(BaseModel):
    """When a model needs retraining (``recsys monitor check --policy FILE``)."""

    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(0.5, gt=0.0, le=1.0)  # of the monitored features
    drift_threshold: float = Field(0.1, gt=0.0)  # Wasserstein (numbers) / Jensen-Shannon
    score_drift_threshold: float = Field(0.1, gt=0.0)  # Wasserstein distance of the scores
    quality_drop: float = Field(0.3, gt=0.0, le=1.0)  # relative loss of the quality metric
    # of the served lists: live feedback says nothing of the items a list left out
    quality_metric: Literal["hit_rate", "precision", "mrr"] = "hit_rate"
    min_requests: int = Field(200, ge=1)
    min_feedback_users: int = Field(30, ge=0)
    cooldown_minutes: float = Field(360.0, ge=0.0)  # between two retraining runs
    k: int = Field(10, ge=1)

    @property
    def cooldown(self) -> timedelta:
        return timedelta(minutes=self.cooldown_minutes)


def load_policy(path: str | Path | None) -> MonitorPolicy:
    """The policy in ``path`` (YAML), or the defaults when ``path`` is None."""
    if path is None:
        return MonitorPolicy()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return MonitorPolicy.model_validate(data)
    except OSError as exc:
        raise RecsysError(f"{path}: cannot read the monitoring policy ({exc})") from exc
    except yaml.YAMLError as exc:
        raise RecsysError(f"{path}: not YAML ({exc})") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise RecsysError(f"{path}: bad monitoring policy: {problems}") from exc


class Decision(BaseModel):
    """One monitoring run's verdict, appended to the decisions log."""

    model_config = ConfigDict(extra="forbid")

    at: datetime
    action: Action
    reasons: list[str]
    model_version: str | None
    signals: dict[str, Any] = {}


def decide(
    summary: dict[str, Any], policy: MonitorPolicy, *, at: datetime, version: str | None
) -> Decision:
    """Apply ``policy`` to a monitoring summary (``recsys.monitoring.traffic``'s).

    Args:
        summary: ``samples`` (requests, feedback users), ``drift`` (per-feature distances and
            the score's), ``quality`` (``current`` and ``reference`` metrics), maybe ``missing``.
        policy: the thresholds.
        at: when the check ran.
        version: the model version that served the traffic.

    Returns:
        The decision and every reason that led to it.
    """
    samples = summary.get("samples", {})
    signals = {"samples": samples}
    short = []
    if samples.get("requests", 0) < policy.min_requests:
        short.append(f"{samples.get('requests', 0)} requests < minimum {policy.min_requests}")
    if samples.get("users_with_feedback", 0) < policy.min_feedback_users:
        short.append(
            f"{samples.get('users_with_feedback', 0)} users with feedback < minimum "
            f"{policy.min_feedback_users}"
        )
    if short:
        return Decision(
            at=at,
            action="insufficient_data",
            reasons=short,
            model_version=version,
            signals=signals,
        )
    reasons: list[str] = []
    drift = summary.get("drift") or {}
    if features := drift.get("features"):
        drifted = sorted(c for c, d in features.items() if d >= policy.drift_threshold)
        share = len(drifted) / len(features)
        signals["drift_share"] = round(share, 4)
        if share >= policy.drift_share:
            reasons.append(
                f"{len(drifted)} of {len(features)} features drifted ({share:.0%} ≥ "
                f"{policy.drift_share:.0%}): {', '.join(drifted)}"
            )
    if (score := drift.get("score")) is not None:
        signals["score_drift"] = round(score, 4)
        if score >= policy.score_drift_threshold:
            reasons.append(f"score drift {score:.3f} ≥ {policy.score_drift_threshold}")
    quality = summary.get("quality") or {}
    metric = policy.quality_metric
    cur = (quality.get("current") or {}).get(metric)
    ref = (quality.get("reference") or {}).get(metric)
    if cur is not None and ref:
        drop = (ref - cur) / ref
        signals["quality_drop"] = round(drop, 4)
        if drop >= policy.quality_drop:
            reasons.append(
                f"{metric}@{policy.k} on feedback {cur:.4f} is {drop:.0%} below the "
                f"reference {ref:.4f} (limit {policy.quality_drop:.0%})"
            )
    action: Action = "retrain" if reasons else "no_action"
    if not reasons:
        reasons = ["no drift or quality loss beyond the policy"]
    reasons += [f"not checked: {m}" for m in summary.get("missing", [])]
    return Decision(at=at, action=action, reasons=reasons, model_version=version, signals=signals)
