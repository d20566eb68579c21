"""Recording decisions and starting retraining at most once per cooldown.

What a run is, and how it starts (kfp.local, a Kubeflow Pipelines server), is the caller's: the
trigger takes a ``start_run`` callable (``pipelines.client`` creates runs on a KFP server).

Two monitors may decide ``retrain`` at the same moment (a scheduled run and a manual one):
the check-and-record of the last trigger happens under an exclusive ``flock`` on the state
file, so exactly one of them starts a run and the other records that it was inside the
cooldown. Every decision is appended to ``decisions.jsonl`` (one ``O_APPEND`` write each).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.files import append_line, atomic_path
from recsys.monitoring.policy import Decision, MonitorPolicy, load_policy

STATE = "last_retrain.json"
DECISIONS = "decisions.jsonl"


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def last_retrain(state_dir: str | Path) -> dict[str, Any] | None:
    """The last trigger that started a run, or None."""
    path = Path(state_dir) / STATE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def record(decision: Decision, state_dir: str | Path) -> None:
    """Append the decision to ``decisions.jsonl``."""
    path = Path(state_dir) / DECISIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, decision.model_dump_json())


def trigger(
    decision: Decision,
    policy: MonitorPolicy,
    state_dir: str | Path,
    start_run: Callable[[Decision], dict[str, Any]],
) -> dict[str, Any]:
    """Start a retraining run for a ``retrain`` decision unless one started within the
    cooldown; record the outcome either way.

    Args:
        decision: the monitor's decision.
        policy: its cooldown.
        state_dir: where the last trigger and the decisions live.
        start_run: starts the training pipeline (kfp.local here, ``kfp.Client`` on a cluster)
            and returns what it started; called at most once per cooldown across processes.

    Returns:
        ``{"started": bool, "reason": str, "run": ...}``.
    """
    state_dir = Path(state_dir)
    if decision.action != "retrain":
        record(decision, state_dir)
        return {"started": False, "reason": f"decision is {decision.action}"}
    with _locked(state_dir):
        last = last_retrain(state_dir)
        if last is not None:
            since = decision.at - datetime.fromisoformat(last["at"])
            if since < policy.cooldown:
                outcome = {
                    "started": False,
                    "reason": f"inside the cooldown: a run started {since} ago "
                    f"(cooldown {policy.cooldown})",
                }
                record(
                    decision.model_copy(update={"signals": {**decision.signals, **outcome}}),
                    state_dir,
                )
                return outcome
        with atomic_path(state_dir / STATE) as tmp:
            tmp.write_text(json.dumps({"at": decision.at.isoformat(), "reasons": decision.reasons}))
        record(decision, state_dir)
    # The run itself (minutes) happens outside the lock: the state already says it started.
    return {"started": True, "reason": "; ".join(decision.reasons), "run": start_run(decision)}


def trigger_decision_file(
    decision_file: str | Path,
    state_dir: str | Path,
    start_run: Callable[[Decision], dict[str, Any]],
    *,
    policy: str | Path | None = None,
) -> str:
    """The monitoring pipeline's last task: :func:`trigger` for the decision the check wrote
    (a JSON file), under the policy file's cooldown.

    Returns:
        ``"started"``, or why not.
    """
    verdict = Decision.model_validate_json(Path(decision_file).read_text())
    outcome = trigger(verdict, load_policy(policy), state_dir, start_run)
    print(f"retraining: {outcome}")
    return "started" if outcome["started"] else outcome["reason"]
