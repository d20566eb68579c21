"""One monitoring check: the champion's reference vs the traffic it served, Evidently reports,
the policy's decision, and (when asked) the retraining trigger.

``check`` is what ``recsys monitor check``, the monitoring pipeline's component and the
``--drift`` demo call; it never raises on bad log lines (they are skipped with a warning).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recsys.config import RecsysError
from recsys.data.io import ITEM
from recsys.evaluation.reference import SOURCE, item_popularity, read_reference
from recsys.files import write_json
from recsys.monitoring import logs
from recsys.monitoring.policy import Decision, MonitorPolicy, decide, load_policy
from recsys.monitoring.traffic import run_reports
from recsys.monitoring.trigger import record, trigger
from recsys.registry import Registry


class MonitorArgs(BaseModel):
    """What ``recsys monitor check`` takes."""

    model_config = ConfigDict(extra="forbid")

    predictions: Path  # the Serve app's prediction_log_dir
    events: Path  # the Serve app's events_dir (feedback)
    out: Path  # runs/<time>/, decisions.jsonl, last_retrain.json, the Evidently workspace
    registry: str | None = None
    policy: Path | None = None
    since_minutes: float | None = Field(None, gt=0)  # traffic window; default: everything
    feedback_hours: float = Field(24.0, gt=0)  # how long after a recommendation feedback counts


def check(
    args: MonitorArgs, *, now: datetime | None = None, policy: MonitorPolicy | None = None
) -> tuple[Decision, dict[str, Any]]:
    """Compare the traffic the champion served with its reference and decide (by ``policy``,
    default the one ``args.policy`` names).

    Returns:
        The decision (also written to the run directory) and the reports' summary.
    """
    now = now or datetime.now(UTC)
    policy = policy or load_policy(args.policy)
    registry = Registry(args.registry)
    champion = registry.champion()
    if champion is None:
        raise RecsysError(f"the registry {registry.uri} has no champion to monitor")
    version_dir = registry.local_path(champion.version)
    since = now - timedelta(minutes=args.since_minutes) if args.since_minutes else None
    predictions, warnings = logs.load_predictions(args.predictions, since=since, until=now)
    feedback, more = logs.load_feedback(args.events, since=since, until=now)
    warnings += more
    # Traffic a previous version served says nothing about the champion.
    served = predictions[predictions["model_version"] == champion.version]
    current = logs.join_feedback(served, feedback, window=timedelta(hours=args.feedback_hours))
    popularity = item_popularity(version_dir)
    current["item_popularity"] = popularity.reindex(current[ITEM].astype(str)).to_numpy()
    run_dir = args.out / "runs" / now.strftime("%Y%m%dT%H%M%SZ")
    samples = logs.sample_summary(served, feedback)
    # Like with like: the model's own answers only. A cold-start answer and the popular fill
    # of a short list are popularity, not the version; they are counted, not judged.
    model_rows = (~current["cold_start"].astype(bool)) & (current["source"] == "model")
    samples |= {
        "cold_start_requests": int(served.loc[served["cold_start"], "request_id"].nunique()),
        "popular_items": int((~model_rows).sum()),
    }
    current = current[model_rows]
    reference = read_reference(version_dir)
    if reference is not None and SOURCE in reference:
        reference = reference[reference[SOURCE] == "model"]
    if reference is None:
        summary: dict[str, Any] = {
            "samples": samples,
            "missing": [f"a reference stored with {champion.version} (registered without one)"],
        }
    else:
        summary = run_reports(
            reference,
            current,
            run_dir,
            k=policy.k,
            drift_threshold=policy.drift_threshold,
            samples=samples,
            feedback_users=set(feedback["user_id"].astype(str)),
            popularity=popularity,
            workspace=args.out / "workspace",
            at=now,
        )
    summary["warnings"] = warnings
    summary["other_versions_requests"] = int(
        predictions.loc[predictions["model_version"] != champion.version, "request_id"].nunique()
    )
    decision = decide(summary, policy, at=now, version=champion.version)
    write_json(
        {"decision": decision.model_dump(mode="json"), "summary": summary},
        run_dir / "decision.json",
    )
    return decision, summary


def check_and_trigger(
    args: MonitorArgs,
    start_run: Callable[[Decision], dict[str, Any]] | None,
    *,
    now: datetime | None = None,
) -> tuple[Decision, dict[str, Any], dict[str, Any]]:
    """:func:`check`, then the trigger: a ``retrain`` decision starts ``start_run`` unless a run
    started within the cooldown (``start_run`` None: record the decision only)."""
    policy = load_policy(args.policy)
    decision, summary = check(args, now=now, policy=policy)
    if start_run is None:  # the cooldown only counts runs that started
        record(decision, args.out)
        return decision, summary, {"started": False, "reason": "retraining not enabled"}
    outcome = trigger(decision, policy, args.out, start_run)
    return decision, summary, outcome


def check_and_record(
    args: MonitorArgs, *, now: datetime | None = None
) -> tuple[Decision, dict[str, Any]]:
    """The monitoring pipeline's check: :func:`check`, and the decision recorded, except a
    ``retrain`` decision, which the pipeline's next task hands to the trigger (it records it
    with the outcome: started, or inside the cooldown)."""
    decision, summary = check(args, now=now)
    if decision.action != "retrain":
        record(decision, args.out)
    return decision, summary
