"""Recording decisions and starting retraining at most once per cooldown.

Two monitors may decide ``retrain`` at the same moment (a scheduled run and a manual one):
the check-and-record of the last trigger happens under an exclusive ``flock`` on the state
file, so exactly one of them starts a run and the other records that it was inside the
cooldown. Every decision is appended to ``decisions.jsonl`` (one ``O_APPEND`` write each).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from recsys.config import RecsysError
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


def submit_pipeline(
    host: str | None,
    package: str | Path,
    arguments: dict[str, Any],
    *,
    run_name: str,
    experiment: str = "recsys",
) -> dict[str, str]:
    """Run a compiled pipeline ``package`` once on the Kubeflow Pipelines API at ``host``
    (None: in-cluster, as a pipeline task does). The one place a run is created.

    Returns:
        The run's id and, with a host, where to see it.
    """
    import kfp

    if host:
        host = host.rstrip("/")
        check_reachable(host)
    client = kfp.Client(host=host or None)
    run = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        enable_caching=False,
    )
    done = {"run_id": run.run_id}
    return done | ({"url": f"{host}/#/runs/details/{run.run_id}"} if host else {})


def start_retraining(
    decision_file: str | Path,
    state_dir: str | Path,
    package: str | Path,
    arguments: dict[str, Any],
    *,
    policy: str | Path | None = None,
    kfp_host: str | None = None,
) -> str:
    """The monitoring pipeline's last task: for a ``retrain`` decision (a JSON file), submit
    the training ``package`` unless a run started within the policy's cooldown.

    Returns:
        ``"started"``, or why not.
    """
    verdict = Decision.model_validate_json(Path(decision_file).read_text())

    def submit(decision: Decision) -> dict[str, Any]:
        name = f"retrain-{decision.at:%Y%m%dT%H%M%SZ}"
        return submit_pipeline(kfp_host, package, arguments, run_name=name)

    outcome = trigger(verdict, load_policy(policy), state_dir, submit)
    print(f"retraining: {outcome}")
    return "started" if outcome["started"] else outcome["reason"]


def check_reachable(host: str, timeout_s: float = 10) -> None:
    """Fail fast with the URL and the cause (``kfp.Client`` retries its health check for long)."""
    url = f"{host}/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):  # behind auth: the client's own credentials may pass
            return
        raise RecsysError(f"{url}: HTTP {exc.code}; is {host} a Kubeflow Pipelines API?") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RecsysError(f"cannot reach the Kubeflow Pipelines API at {host}: {reason}") from exc
