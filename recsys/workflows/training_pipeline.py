"""The training pipeline, run here: the options of ``recsys pipeline run training`` become the
pipeline's arguments, the result its evaluation table, the gate's sentence and the champion.

The run itself is a callable (the CLI passes ``pipelines.client.run_local``, the pipeline on
``kfp.local``), so this module stays below ``pipelines/``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from recsys.config import RecsysError, recsys_home
from recsys.data import movielens
from recsys.evaluation.tables import markdown_table
from recsys.features.repository import default_repo
from recsys.features.store import DEFAULT_SERVICE
from recsys.registry import Registry
from recsys.registry.gate import GatePolicy
from recsys.registry.store import ROLLOUTS


class RunPipeline(Protocol):
    """Runs the training pipeline once, here (``pipelines.client.run_local``).

    Returns:
        ``summary``, ``evaluation``, ``decision`` and ``report`` (the Evidently HTML path).
    """

    def __call__(
        self, arguments: dict[str, Any], pipeline_root: Path, *, log_file: Path | None = None
    ) -> dict[str, Any]: ...


@dataclass
class PipelineRun:
    """The options of ``recsys pipeline run training``, each with its default."""

    source: str = movielens.NAME  # movielens-100k, or a dataset directory / interactions file
    feature_repo: Path | None = None  # default: $RECSYS_FEATURE_REPO or ./feature_repo
    no_features: bool = False  # train on the side tables, not via Feast
    feature_service: str = DEFAULT_SERVICE
    model_kind: str = "multistage"
    params: str | dict | None = None  # JSON, @file.json, or the parsed object
    registry_uri: str | None = None
    k: int = 10
    margin: float = GatePolicy().margin
    coverage_tolerance: float = GatePolicy().coverage_tolerance
    baseline_margin: float = GatePolicy().baseline_margin
    gpu: bool = False
    num_workers: int = 1
    ray_address: str = ""
    serve_address: str = ""
    rollout: str = "switch"  # or "experiment": the gated version is the champion's challenger
    experiment_share: float = 0.1  # the challenger's share of the users in a rollout
    workdir: Path | None = None  # the pipeline root; default $RECSYS_HOME/runs/pipeline
    show_logs: bool = False  # the tasks' output here, not only their status


def run_training(
    run: PipelineRun, run_pipeline: RunPipeline, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Check the options, run the training pipeline, copy its report to
    ``workdir/report.html``.

    Args:
        run: the options.
        run_pipeline: runs the pipeline (``pipelines.client.run_local``).
        log: where the pipeline root is announced.

    Returns:
        The run's result plus ``report`` (the copy), ``log`` (the tasks' output file, None with
        ``show_logs``) and ``registry_uri``.
    """
    GatePolicy(  # fail before running
        margin=run.margin,
        coverage_tolerance=run.coverage_tolerance,
        baseline_margin=run.baseline_margin,
    )
    if run.rollout not in ROLLOUTS:  # worded as the CLI's options, as the share's below
        raise RecsysError(f"--rollout {run.rollout}: expected one of {', '.join(ROLLOUTS)}")
    if not 0.0 < run.experiment_share < 1.0:
        raise RecsysError(f"--experiment-share {run.experiment_share}: expected in (0, 1)")
    repo = None if run.no_features else (run.feature_repo or default_repo())
    if repo is not None and not (repo / "feature_store.yaml").exists():
        raise RecsysError(f"--feature-repo {repo}: no feature_store.yaml there (or --no-features)")
    workdir = (run.workdir or recsys_home() / "runs" / "pipeline").resolve()
    source = run.source
    arguments = {
        "source": source if source == movielens.NAME else str(Path(source).resolve()),
        "feature_repo": str(repo.resolve()) if repo else "",
        "feature_service": run.feature_service,
        "model_kind": run.model_kind,
        "params": run.params if isinstance(run.params, dict) else _params(run.params),
        "registry_uri": run.registry_uri or "",
        "k": run.k,
        "margin": run.margin,
        "coverage_tolerance": run.coverage_tolerance,
        "baseline_margin": run.baseline_margin,
        "gpu": run.gpu,
        "num_workers": run.num_workers,
        "ray_address": run.ray_address,
        "serve_address": run.serve_address,
        "rollout": run.rollout,
        "experiment_share": run.experiment_share,
        "checkpoint_uri": str(workdir / "checkpoints"),
    }
    log(f"kfp.local: pipeline root {workdir}")
    log_file = None if run.show_logs else workdir / "pipeline.log"
    result = run_pipeline(arguments, workdir, log_file=log_file)
    report = workdir / "report.html"
    shutil.copyfile(result["report"], report)
    tasks = str(log_file) if log_file else None
    return {**result, "report": str(report), "log": tasks, "registry_uri": run.registry_uri}


def _params(value: str | None) -> dict[str, Any]:
    """``--params``: a JSON object, or ``@file.json``."""
    if not value:
        return {}
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecsysError(f"--params: not JSON ({exc}): {text[:80]!r}") from exc
    if not isinstance(params, dict):
        raise RecsysError(f"--params: expected a JSON object, got {type(params).__name__}")
    return params


def result_lines(result: dict[str, Any]) -> list[str]:
    """The evaluation table, the gate's decision, the registry's champion and where the
    report (and the tasks' output) are: what every command that runs the pipeline prints."""
    evaluation = result["evaluation"]
    entries = [("candidate", evaluation["candidate"]), ("champion", evaluation["champion"])]
    entries += [(name, row) for name, row in evaluation["references"].items()]
    rows = [
        {"model": f"{label} ({row.get('version') or row.get('model')})", **row["metrics"]}
        for label, row in entries
        if row is not None
    ]
    champion = Registry(result.get("registry_uri") or None).champion()
    lines = [
        f"evaluation at k={evaluation['k']} (same held-out users, exclude-seen):",
        markdown_table(rows),
        result["summary"],
        f"champion: {champion.version if champion else 'none'}",
        f"Evidently report: {result['report']}",
    ]
    return lines + ([f"tasks' output: {result['log']}"] if result.get("log") else [])


def retrain(
    snapshot: Path,
    run_pipeline: RunPipeline,
    *,
    feature_repo: Path | None,
    registry_uri: str | None,
    serve_address: str,
    workdir: Path,
    no_features: bool = False,
    log: Callable[[str], None] = print,
    rollout: str = "switch",
    experiment_share: float = PipelineRun.experiment_share,
) -> dict[str, Any]:
    """The training pipeline over a retraining snapshot (base data + feedback), its result
    logged: what a ``retrain`` decision starts here (the monitor's ``--retrain`` without a KFP
    host, the closed loop). Training joins the Ray that serves (``serve_address``), as the
    quickstart's does: one Ray on one machine. ``rollout`` and ``experiment_share``: as
    ``recsys pipeline run training``'s."""
    run = PipelineRun(
        rollout=rollout,
        experiment_share=experiment_share,
        source=str(snapshot),
        feature_repo=feature_repo,
        no_features=no_features,
        registry_uri=registry_uri,
        ray_address=serve_address,
        serve_address=serve_address,
        workdir=workdir,
    )
    result = run_training(run, run_pipeline, log)
    for line in result_lines(result):
        log(line)
    return result


def prune_runs(workdir: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` pipeline roots under ``workdir`` (their names start
    with the run's time) and their Ray Train checkpoints (``checkpoints/<root>-*``).

    Returns:
        The roots removed.
    """
    roots = sorted(p for p in workdir.glob("recsys-training-*") if p.is_dir())
    gone = roots[: max(len(roots) - keep, 0)]
    for root in gone:
        for path in [root, *(workdir / "checkpoints").glob(f"{root.name}-*")]:
            shutil.rmtree(path, ignore_errors=True)
    return gone
