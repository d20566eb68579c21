"""What a ``retrain`` decision starts, written once: a snapshot of the base data plus the
accepted feedback, then the training pipeline on it (kfp.local here, or a run on a Kubeflow
Pipelines server).

The trigger (``recsys.monitoring.trigger``) decides whether it starts (the cooldown); the
monitor's ``--retrain`` and the closed loop hand it what to start. How a run starts is a
callable the CLI passes (``pipelines.client``), so this module stays below ``pipelines/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys.monitoring.check import MonitorArgs
from recsys.monitoring.policy import Decision
from recsys.monitoring.snapshot import build_snapshot
from recsys.workflows.training_pipeline import RunPipeline, retrain

StartRun = Callable[[Decision], dict[str, Any]]  # what the trigger calls on a retrain decision
Submit = Callable[[dict[str, Any]], dict[str, Any]]  # pipeline arguments -> the run on a server
SNAPSHOT_NOTE = "retraining on {rows} rows ({event_rows} from feedback)"


def retrain_on_decision(
    base: str,
    events: Path,
    snapshot: Path,
    start: Callable[[Path], dict[str, Any]],
    *,
    log: Callable[[str], None] = print,
    note: str = SNAPSHOT_NOTE,
) -> dict[str, Any]:
    """The body of every ``start_run`` the trigger calls: build the snapshot, say what it
    holds, start the training pipeline on it.

    Args:
        base: the snapshot's base data (``movielens-100k`` or a dataset directory).
        events: the Serve app's events directory (the accepted feedback).
        snapshot: where the snapshot is written.
        start: starts the training pipeline on the snapshot directory.
        log: where ``note`` goes.
        note: a format over the snapshot's counts (``rows``, ``base_rows``, ``event_rows``).

    Returns:
        What ``start`` returns.
    """
    made = build_snapshot(base, events, snapshot)
    log(note.format(**made))
    return start(snapshot)


def monitor_retraining(
    args: MonitorArgs,
    base: str,
    *,
    feature_repo: Path | None,
    serve_address: str,
    run_pipeline: RunPipeline,
    submit: Submit | None = None,
    log: Callable[[str], None] = print,
) -> StartRun:
    """The ``start_run`` of ``recsys monitor check --retrain``: the snapshot under
    ``args.out/snapshots/<time>``, then the run on a KFP server (``submit``) or the training
    pipeline here (``run_pipeline``, under ``args.out/retraining/<time>``).

    Returns:
        The callable for :func:`recsys.monitoring.check.check_and_trigger`; it returns the
        server's run, or the local run's gate summary and whether it promoted.
    """

    def start(decision: Decision) -> dict[str, Any]:
        stamp = decision.at.strftime("%Y%m%dT%H%M%SZ")

        def run(snapshot: Path) -> dict[str, Any]:
            if submit is not None:
                return submit({"source": str(snapshot), "registry_uri": args.registry or ""})
            result = retrain(
                snapshot,
                run_pipeline,
                feature_repo=feature_repo,
                registry_uri=args.registry,
                serve_address=serve_address,
                workdir=args.out / "retraining" / stamp,
                log=log,
            )
            return {"summary": result["summary"], "promote": result["decision"]["promote"]}

        snapshot = args.out / "snapshots" / stamp
        return retrain_on_decision(base, args.events, snapshot, run, log=log)

    return start
