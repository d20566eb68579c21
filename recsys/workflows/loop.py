"""The closed loop, demonstrated (``recsys quickstart --drift``): serve the champion, replay
held-out MovieLens traffic, then traffic from a drifted synthetic population; the monitor sees
the drift, retraining runs, the gate decides and the Serve app hot-reloads, while a load
thread counts every failed request.

The training pipeline's run is a callable (the CLI passes ``pipelines.client.run_local``, the
Kubeflow training pipeline on kfp.local), so this module stays below ``pipelines/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import serve_local, serve_ops
from recsys.config import RecsysError, local_ray
from recsys.data import movielens
from recsys.data.ingest import ingest
from recsys.data.io import ITEM, USER
from recsys.evaluation.reference import read_reference
from recsys.features.repository import copy_definitions
from recsys.features.store import materialize_split
from recsys.monitoring import logs
from recsys.monitoring.check import MonitorArgs, check_and_trigger
from recsys.monitoring.policy import Decision
from recsys.monitoring.traffic import served_quality
from recsys.registry import Registry
from recsys.workflows import training_pipeline
from recsys.workflows.retraining import retrain_on_decision
from recsys.workflows.rollout import users_decide
from recsys.workflows.simulated import (
    LoadThread,
    drifted_population,
    replay_drifted,
    replay_heldout,
)

Retrain = Callable[[Path, str], dict[str, Any]]  # (snapshot dir, serve address) -> result
SNAPSHOT_NOTE = (
    "retraining on {base_rows} base rows + {event_rows} accepted events "
    "(the training pipeline on kfp.local)"
)


@dataclass
class LoopDemo:
    """Settings of one closed-loop run."""

    workdir: Path
    registry_uri: str | None
    feature_repo: Path | None
    split_dir: Path  # the champion's split (recsys.data.ingest): its test users are replayed
    port: int = 8000
    dataset: Path | None = None  # interactions + items catalog; default MovieLens-100k
    url: str | None = None  # an app already serving (its logs under workdir/loop); else start one
    policy: Path | None = None  # the monitoring policy file
    heldout_users: int = 300
    drift_users: int = 300
    drift_events_per_user: int = 24
    threads: int = 8
    # how the retraining deploys: switch (the gate promotes), or experiment (the gate lets it
    # try as the champion's challenger on experiment_share of the users: trial_users decide)
    rollout: str = "switch"
    experiment_share: float = 0.5
    trial_users: int = 600
    timeline: list[tuple[str, str]] = field(default_factory=list)

    def note(self, text: str, log) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        self.timeline.append((stamp, text))
        log(f"[{stamp}] {text}")


def run_loop(demo: LoopDemo, retrain: Retrain, log=print) -> dict[str, Any]:
    """Serve, replay, monitor, retrain, hot-reload; print the timeline.

    Returns:
        The decisions, the version served at the end, the requests sent during retraining
        and how many failed, and the timeline.
    """
    import ray

    registry = Registry(demo.registry_uri)
    champion = registry.champion()
    loop_dir = demo.workdir / "loop"
    dataset = demo.dataset or movielens.fetch()
    base = str(demo.dataset) if demo.dataset else movielens.NAME
    catalog = pd.read_parquet(dataset / "items.parquet")[ITEM].astype(str).tolist()
    url = demo.url or serve_ops.start_local(
        registry.versions_dir(),
        champion.version,
        demo.feature_repo,
        dataset / "items.parquet",
        loop_dir,
        demo.port,
        log,
    )
    ours = demo.url is None and local_ray() is not None  # a local Ray this process started
    seen: dict[str, Any] = {"decisions": []}
    try:
        demo.note(f"serving champion {champion.version} at {url}", log)
        test = pd.read_parquet(demo.split_dir / "test.parquet")
        replayed, clicks = replay_heldout(url, test, demo.heldout_users, demo.threads)
        demo.note(f"replayed held-out traffic: {len(replayed)} requests, {clicks} clicks", log)
        reference = read_reference(registry.local_path(champion.version))
        if reference is not None:
            seen["heldout_quality"] = same_users_quality(loop_dir, reference, replayed)
            live, offline = (seen["heldout_quality"][s] for s in ("live", "offline"))
            demo.note(
                f"on those {len(replayed)} users, live precision@10 {live['precision']:.4f} "
                f"(hit rate {live['hit_rate']:.4f}); offline, the gate's evaluation: "
                f"{offline['precision']:.4f} ({offline['hit_rate']:.4f})",
                log,
            )
        seen["decisions"].append(monitor(demo, loop_dir, since=None, retrain=None, log=log))
        drift_start = datetime.now(UTC)
        later = demo.trial_users if demo.rollout == "experiment" else 0
        synthetic, trial = drifted_population(
            catalog, loop_dir / "synthetic", demo.drift_users, demo.drift_events_per_user, later
        )
        requests, events = replay_drifted(url, synthetic, demo.threads)
        demo.note(
            f"replayed a drifted synthetic population: {requests} requests, {events} events", log
        )
        address = ray.get_runtime_context().gcs_address
        users = [*test[USER].unique()[:50], *synthetic[USER].unique()[:50]]
        with LoadThread(url, users) as load:

            def start(decision: Decision) -> dict[str, Any]:
                demo.note(f"monitor: {decision.action}: {'; '.join(decision.reasons)}", log)
                return retrain_on_decision(
                    base,
                    loop_dir / "events",
                    loop_dir / "snapshot",
                    lambda snapshot: retrain(snapshot, address),
                    log=lambda text: demo.note(text, log),
                    note=SNAPSHOT_NOTE,
                )

            decision = monitor(demo, loop_dir, since=drift_start, retrain=start, log=log)
            seen["decisions"].append(decision)
            time.sleep(3)  # requests that were in flight during the switch finish
        seen["failed_requests"], seen["requests_during_retraining"] = load.failed, load.sent
        if later:  # the retraining rolled out as an experiment: the later users decide
            note = lambda text: demo.note(text, log)  # noqa: E731
            stopped = users_decide(demo.registry_uri, url, loop_dir, trial, demo.threads, note, log)
            seen["experiment"] = stopped
        serving = serve_ops.wait_ready(url, timeout_s=30)
        seen["serving"] = serving
        demo.note(
            f"serving {serving['model_version']}; {load.sent} requests during retraining and "
            f"the {'rollout' if later else 'hot reload'}, {load.failed} failed",
            log,
        )
    finally:
        if demo.url is None:
            serve_local.stop(local_ray=ours)
            demo.note("Serve shut down" + (" (and the local Ray)" if ours else ""), log)
    seen["timeline"] = demo.timeline
    return seen


def monitor(demo: LoopDemo, loop_dir: Path, *, since, retrain, log) -> str:
    """One monitoring check over the traffic since ``since``; the trigger when ``retrain``."""
    minutes = (datetime.now(UTC) - since).total_seconds() / 60 + 0.1 if since else None
    args = MonitorArgs(
        predictions=loop_dir / "predictions",
        events=loop_dir / "events",
        out=loop_dir / "monitoring",
        registry=demo.registry_uri,
        since_minutes=minutes,
        policy=demo.policy,
    )
    decision, summary, outcome = check_and_trigger(args, retrain)
    if not outcome.get("started"):  # a started run noted the decision before it began
        demo.note(f"monitor: {decision.action}: {'; '.join(decision.reasons)}", log)
    for key in ("drift_html", "quality_html"):
        if key in summary:
            log(f"    {key.replace('_html', '')} report: {summary[key]}")
    if outcome.get("run"):
        demo.note(outcome["run"]["summary"], log)
    return decision.action


def same_users_quality(loop_dir: Path, reference: pd.DataFrame, users: list[str]) -> dict:
    """Precision@10, hit rate and MRR of the lists the app served to ``users`` (judged by
    their clicks) and of the version's offline lists for the same users (judged by the
    held-out items): one recommendation path, so they agree."""
    predictions, _ = logs.load_predictions(loop_dir / "predictions")
    feedback, _ = logs.load_feedback(loop_dir / "events")
    live = logs.join_feedback(predictions[predictions[USER].isin(users)], feedback)
    offline = reference[reference[USER].isin(users)]
    return {
        "users": len(users),
        "live": served_quality(live, "request_id", 10),
        "offline": served_quality(offline, USER, 10),
    }


def scratch_registry(registry: Registry, where: Path) -> Registry:
    """A registry at ``where`` holding a copy of ``registry``'s champion, promoted."""
    champion = registry.champion()
    if champion is None:
        raise RecsysError(f"the closed loop needs a champion: {registry.uri} has none yet")
    scratch = Registry(where)
    scratch.register(registry.local_path(champion.version), note=f"from {registry.uri}")
    scratch.promote(champion.version, reason=f"the champion of {registry.uri}")
    return scratch


def closed_loop(
    workdir: Path,
    repo: Path | None,
    registry_uri: str | None,
    port: int,
    run_pipeline: training_pipeline.RunPipeline,
    log=print,
    rollout: str = "experiment",
) -> dict:
    """:func:`run_loop` from scratch on MovieLens-100k; the retraining is the training
    pipeline, run by ``run_pipeline``, under ``workdir/loop/retraining``.

    The loop starts afresh each time (its logs, decisions and cooldown under
    ``workdir/loop``) and serves from its own feature store, materialized from the champion's
    training rows, so an earlier run's clicks do not linger in the users' histories. The
    retraining materializes a third store (SQLite takes one writer; the app keeps reading).
    Its registry is its own too, holding a copy of ``registry_uri``'s champion: what the loop
    promotes stays there, so the next run (and the next quickstart) meets the same champion.

    Args:
        run_pipeline: runs the training pipeline (the CLI passes
            ``pipelines.client.run_local``, kfp.local).
        rollout: how the retraining deploys (``LoopDemo.rollout``): ``experiment`` ends the
            loop in an experiment that users who came after the retraining decide.
    """
    loop = workdir / "loop"
    shutil.rmtree(loop, ignore_errors=True)
    registry_uri = str(scratch_registry(Registry(registry_uri), loop / "registry").uri)
    ingest(movielens.NAME, loop / "split")  # the champion's split: held-out users, store
    serve_repo = train_repo = None
    if repo is not None:
        serve_repo = copy_definitions(repo, loop / "serve_repo")
        materialize_split(loop / "split", serve_repo)
        train_repo = copy_definitions(repo, loop / "retrain_repo")

    def retrain(snapshot: Path, serve_address: str) -> dict[str, Any]:
        return training_pipeline.retrain(
            snapshot,
            run_pipeline,
            feature_repo=train_repo,
            no_features=train_repo is None,
            registry_uri=registry_uri,
            serve_address=serve_address,
            workdir=loop / "retraining",
            log=log,
            rollout=rollout,
            experiment_share=demo.experiment_share,
        )

    demo = LoopDemo(workdir, registry_uri, serve_repo, loop / "split", port=port, rollout=rollout)
    seen = run_loop(demo, retrain, log)
    log("timeline:")
    for stamp, text in seen["timeline"]:
        log(f"  {stamp}  {text}")
    log(f"reports and decisions: {workdir / 'loop' / 'monitoring'}")
    return seen
