"""The closed loop's last step when a retraining rolls out as an experiment (``recsys
quickstart --drift``; the training pipeline's ``--rollout experiment``): the gate let the
candidate try, the deploy step started ``rollout-<version>`` with it as the champion's
challenger; users who came after the retraining decide, and the winner is promoted (or, with
no winner, the experiment stops and the champion keeps serving).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.experiments.spec import Experiment
from recsys.registry import Registry
from recsys.workflows import experiment as flow
from recsys.workflows.deploy import rollout_name
from recsys.workflows.simulated import LoadThread, replay_drifted


def running_rollout(registry_uri: str | None) -> Experiment | None:
    """The rollout experiment (:func:`~recsys.workflows.deploy.rollout_name`) the registry
    records as running, if any."""
    registry = Registry(registry_uri)
    for name in registry.experiment_names():
        record = registry.experiment_record(name) or {}
        if record.get("stopped_at") is None and "experiment" in record:
            experiment = Experiment.model_validate(record["experiment"])
            if name == rollout_name(experiment.challenger):
                return experiment
    return None


def users_decide(
    registry_uri: str | None,
    url: str,
    logs_dir: Path,
    users: pd.DataFrame,
    threads: int,
    note: Callable[[str], None],
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Replay ``users`` (drifted users the retrained model never saw,
    :func:`~recsys.workflows.simulated.replay_drifted`) against the running rollout, print its
    status, then stop it: the winner promoted through the registry, under a load thread that
    counts the requests the switch fails.

    Args:
        logs_dir: the app's logs (``predictions/``, ``events/``).
        note: a line of the loop's timeline.

    Returns:
        None without a running rollout; else :func:`recsys.workflows.experiment.stop`'s
        result plus ``requests_during_stop`` and ``failed_during_stop``.
    """
    trial = running_rollout(registry_uri)
    if trial is None:
        return None
    note(
        f"experiment {trial.name}: challenger {trial.challenger} on {trial.share:.0%} of the "
        f"users, champion {trial.control} on the rest ({trial.mode}, {trial.metric}, "
        f"at least {trial.min_users} users per arm before a decision)"
    )
    requests, events = replay_drifted(url, users, threads)
    note(f"users who came after the retraining: {requests} requests, {events} events")
    logs = {"predictions": logs_dir / "predictions", "events": logs_dir / "events"}
    result = flow.status(registry_uri, trial.name, **logs)
    log(flow.status_table(result))
    winner = result["decision"]["winner"]
    with LoadThread(url, sorted(users["user_id"].unique())[:50]) as load:
        stopped = flow.stop(registry_uri, trial.name, promote=winner is not None, **logs)
    stopped |= {"requests_during_stop": load.sent, "failed_during_stop": load.failed}
    if winner is None:
        note(
            f"no winner ({result['decision']['reason']}): {trial.name} stopped, champion "
            f"{trial.control} keeps serving"
        )
    else:
        note(
            f"the {winner} won: {stopped['serving']} promoted and served ({load.sent} requests "
            f"during the switch, {load.failed} failed)"
        )
    return stopped
