"""``recsys quickstart``, the job: fetch MovieLens-100k; the Kubeflow training pipeline on
kfp.local; the table and the gate's decision beside the published rows; the same model kinds on
the temporal protocol; the champion served on Ray Serve and asked over HTTP; with ``drift``,
the closed loop.

The training pipeline's run is a callable (the CLI passes ``pipelines.client.run_local``), so
this module stays below ``pipelines/``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys import serve_local
from recsys.config import RecsysError, check_ray_address, ensure_ray, ray_address, recsys_home
from recsys.data import movielens
from recsys.data.io import read_dataset_info
from recsys.evaluation.quality import DEMO_MODELS, PUBLISHED_MOVIELENS_100K
from recsys.evaluation.tables import markdown_table
from recsys.features.repository import default_repo
from recsys.files import write_json
from recsys.registry import Registry
from recsys.workflows.http_demo import AppStart, serve_demo
from recsys.workflows.loop import closed_loop
from recsys.workflows.quality import QualityRun, run_quality
from recsys.workflows.training_pipeline import (
    PipelineRun,
    RunPipeline,
    prune_runs,
    result_lines,
    run_training,
)

Log = Callable[[str], None]
DEMO_USERS = ["196", "405"]
# The quickstart's pipeline roots kept under its workdir (each holds its run's data and model;
# the registry keeps its own copy of every version): a demo run many times does not fill the disk.
DEMO_RUNS_KEPT = 3


@dataclass
class Quickstart:
    """The options of ``recsys quickstart``."""

    workdir: Path | None = None  # default: $RECSYS_HOME/runs/quickstart
    k: int = 10
    feature_repo: Path | None = None  # default: $RECSYS_FEATURE_REPO or ./feature_repo if any
    no_features: bool = False  # read the side tables directly, not via Feast
    registry_uri: str | None = None
    params: str | None = None  # the pipeline model's hyper-parameters: JSON or @file
    serve: bool = True  # step 4, the champion on Ray Serve
    drift: bool = False  # step 5, the closed loop
    rollout: str = "experiment"  # how the loop deploys a gated retraining (or "switch")
    port: int = 8000  # HTTP port of the demo


def run_quickstart(run: Quickstart, run_pipeline: RunPipeline, log: Log = print) -> dict:
    """Steps 1 to 5 of the quickstart, each announced with ``== N.`` through ``log``.

    Args:
        run: the options.
        run_pipeline: runs the training pipeline (``pipelines.client.run_local``).
        log: where every line goes.

    Returns:
        The working directory, the training pipeline's result, the temporal rows, and what
        the serving demo and the closed loop saw (when they ran).
    """
    workdir = (run.workdir or recsys_home() / "runs" / "quickstart").resolve()
    if os.environ.get("RAY_ADDRESS"):
        check_ray_address(os.environ["RAY_ADDRESS"])
    if run.serve:  # a taken port fails now, not after training
        serve_local.end_stale(log)
        serve_local.check_port("127.0.0.1", run.port)
    repo = _feature_repo(run, log)
    log("== 1. data: MovieLens-100k (fetched once, then cached)")
    dataset = movielens.fetch()
    info = read_dataset_info(dataset)
    log(
        f"{info.n_interactions} ratings, {info.n_users} users, {info.n_items} items "
        f"(source: {info.source}) -> {dataset}"
    )
    seen: dict[str, Any] = {"workdir": workdir}
    # One Ray for every step: the pipeline's training task joins it (as a RayJob's driver
    # joins its cluster), the temporal run trains on it, the champion is served on it.
    ensure_ray()
    # Step 3b trains beside the pipeline, on the CPU its tasks leave idle (imports, Feast).
    temporal = TemporalRun(run.k, workdir)
    try:
        seen["training"] = _train(run, repo, workdir, run_pipeline, log)
    except BaseException:
        temporal.abandon()
        raise
    if not run.serve:
        seen["temporal"] = temporal.result(log)
        return seen
    registry = Registry(run.registry_uri)
    champion = registry.champion()
    # The champion's replicas load while the temporal run trains (step 4 prints after it).
    app = AppStart(
        workdir,
        registry.local_path(champion.version).parent,
        champion.version,
        repo,
        dataset / "items.parquet",
        port=run.port,
    )
    try:
        seen["temporal"] = temporal.result(log)
    except BaseException:
        app.abandon()
        raise
    log(
        f"== 4. serve the champion {champion.version}: "
        "candidates -> ranker -> ordering in one Ray Serve replica (the cluster's chart gives "
        "the candidates and the ranker deployments of their own; started while 3b trained)"
    )
    seen["serve"] = serve_demo(app, dataset / "items.parquet", users=DEMO_USERS, log=log)
    if run.drift:
        log(
            "== 5. the closed loop: held-out traffic -> drifted traffic -> Evidently -> "
            "retrain -> gate -> "
            + ("an experiment the users decide" if run.rollout == "experiment" else "hot reload")
        )
        seen["loop"] = closed_loop(
            workdir, repo, run.registry_uri, run.port, run_pipeline, log, run.rollout
        )
    return seen


def _feature_repo(run: Quickstart, log: Log) -> Path | None:
    """The Feast repository the models' features come from; None: the side tables (asked
    for, or no repository where the default looks)."""
    repo = None if run.no_features else (run.feature_repo or default_repo())
    if repo is not None and not (repo / "feature_store.yaml").exists():
        if run.feature_repo is not None:
            raise RecsysError(f"--feature-repo {repo}: no feature_store.yaml there")
        log(f"(no Feast repository at {repo}: training from the side tables)")
        repo = None
    return repo


def _train(
    run: Quickstart, repo: Path | None, workdir: Path, run_pipeline: RunPipeline, log: Log
) -> dict[str, Any]:
    """Steps 2 and 3: the training pipeline, its table beside the published rows."""
    log(
        "== 2. the training pipeline on kfp.local: ingest -> Feast features -> training set -> "
        "train (Ray Train) -> evaluate (+ Evidently) -> gate -> register -> deploy"
    )
    options = PipelineRun(
        source=movielens.NAME,
        feature_repo=repo,
        no_features=repo is None,
        params=run.params,
        registry_uri=run.registry_uri,
        k=run.k,
        ray_address=os.environ.get("RAY_ADDRESS") or ray_address(),
        workdir=workdir / "kfp",
    )
    result = run_training(options, run_pipeline, log)
    prune_runs(workdir / "kfp", DEMO_RUNS_KEPT)
    log(f"== 3. results at k={run.k} (stratified protocol), with published reference rows")
    for line in result_lines(result):
        log(line)
    log(markdown_table(PUBLISHED_MOVIELENS_100K))
    write_json(result["evaluation"], workdir / "metrics.json")
    log(f"metrics.json under {workdir}")
    return result


class TemporalRun:
    """Step 3b, the demo's model kinds on the temporal protocol, in a child process started at
    once (it joins this process's Ray, where its ranker trains); its own output goes to
    ``workdir/temporal.log``, its table to the screen when :meth:`result` is asked for."""

    def __init__(self, k: int, workdir: Path) -> None:
        self.k, self.workdir = k, workdir
        self.log = workdir / "temporal.log"
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "temporal.json").unlink(missing_ok=True)
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=_temporal_job, args=(k, workdir, self.log, ray_address()), daemon=True
        )
        self.process.start()

    def result(self, log: Log) -> list[dict]:
        """Wait for the run; print its table; raise with the end of its log when it failed."""
        log(
            f"== 3b. the temporal protocol at k={self.k}: each user's latest 25% held out; the "
            "multi-stage model learns what comes next (crossfit=user-time, the recent window, a "
            "two-tower source)"
        )
        self.process.join()
        if self.process.exitcode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RecsysError(f"step 3b failed (its log: {self.log}):\n{tail}")
        temporal = json.loads((self.workdir / "temporal.json").read_text())
        log(markdown_table(temporal))
        return temporal

    def abandon(self) -> None:
        """End the run (a step before it failed)."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()


def _temporal_job(k: int, workdir: Path, log_file: Path, address: str) -> None:
    """The child of :class:`TemporalRun`: its output to ``log_file``, Ray joined at
    ``address``, the rows to ``workdir/temporal.json``."""
    with open(log_file, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    if address:
        os.environ["RAY_ADDRESS"] = address
    temporal = run_quality(
        QualityRun(workdir=workdir / "temporal", models=DEMO_MODELS, protocols=("temporal",), k=k),
        log=lambda _: None,
    )
    write_json(temporal, workdir / "temporal.json")
