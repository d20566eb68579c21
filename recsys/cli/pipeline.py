"""``recsys pipeline run training | compile | submit``: the Kubeflow training pipeline.

``run`` executes the pipeline here with ``kfp.local`` (each task a subprocess of this Python);
``compile`` writes the YAML the Kubeflow Pipelines UI uploads; ``submit`` sends it to a KFP API
server, once or on a cron schedule. The pipeline itself lives in ``pipelines/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from pipelines import client
from recsys.cli.options import (
    gpu_option,
    k_option,
    num_workers_option,
    param_option,
    parse_params,
    path_option,
    registry_option,
    workdir_option,
)
from recsys.config import RecsysError, recsys_home
from recsys.data import movielens
from recsys.evaluation.tables import markdown_table
from recsys.features.store import DEFAULT_SERVICE, default_repo
from recsys.registry import Registry
from recsys.registry.gate import GatePolicy

PIPELINES = ("training",)
GATE_OPTIONS = (  # GatePolicy's fields, each an option of `pipeline run` with its default
    ("margin", "nDCG@k the candidate must gain over the champion."),
    ("coverage_tolerance", "Catalog coverage the candidate may lose."),
    (
        "baseline_margin",
        "nDCG@k the candidate must gain over the strongest baseline (EASE, popularity).",
    ),
)


@click.group()
def pipeline() -> None:
    """The Kubeflow training pipeline: run it here, compile it, submit it to a cluster."""


def _params(value: str | None) -> dict[str, Any]:
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


def gate_options(command):
    """The gate's thresholds as options (``--margin``, ...), listed in :data:`GATE_OPTIONS`'
    order, each defaulting to :class:`GatePolicy`'s value."""
    for field, help_text in reversed(GATE_OPTIONS):
        option = click.option(
            "--" + field.replace("_", "-"),
            type=float,
            default=getattr(GatePolicy(), field),
            show_default=True,
            help=help_text,
        )
        command = option(command)
    return command


@pipeline.command()
@click.argument("name", type=click.Choice(PIPELINES))
@click.option(
    "--source",
    default="movielens-100k",
    show_default=True,
    help="movielens-100k, or a dataset directory / interactions file.",
)
@path_option(
    "--feature-repo", help="Feast repository (default: $RECSYS_FEATURE_REPO or ./feature_repo)."
)
@click.option("--no-features", is_flag=True, help="Train on the side tables, not via Feast.")
@click.option("--feature-service", default=DEFAULT_SERVICE, show_default=True)
@click.option("--model", "model_kind", default="multistage", show_default=True)
@click.option("--params", default=None, help="Hyper-parameters: JSON, or @file.json.")
@registry_option
@k_option
@gate_options
@gpu_option
@num_workers_option
@click.option("--ray-address", default="", help="Train on this Ray cluster (default: a local Ray).")
@click.option(
    "--serve-address", default="", help="Switch the Serve app on this Ray cluster to a promotion."
)
@workdir_option("Pipeline root for the artifacts (default: $RECSYS_HOME/runs/pipeline).")
@click.option("--show-logs", is_flag=True, help="Print the tasks' output, not only their status.")
def run(name: str, **options: Any) -> None:
    """Run the NAME pipeline here with kfp.local (SubprocessRunner, this Python)."""
    result = run_training(**options)
    print_result(result)


def run_training(
    *,
    source: str = movielens.NAME,
    feature_repo: Path | None = None,
    no_features: bool = False,
    feature_service: str = DEFAULT_SERVICE,
    model_kind: str = "multistage",
    params: str | dict | None = None,
    registry_uri: str | None = None,
    k: int = 10,
    margin: float = GatePolicy().margin,
    coverage_tolerance: float = GatePolicy().coverage_tolerance,
    baseline_margin: float = GatePolicy().baseline_margin,
    gpu: bool = False,
    num_workers: int = 1,
    ray_address: str = "",
    serve_address: str = "",
    workdir: Path | None = None,
    show_logs: bool = False,
) -> dict[str, Any]:
    """The options of ``pipeline run training`` → the local run's result (the quickstart
    calls this too). The report is copied to ``workdir/report.html``."""
    GatePolicy(  # fail before running
        margin=margin, coverage_tolerance=coverage_tolerance, baseline_margin=baseline_margin
    )
    repo = None if no_features else (feature_repo or default_repo())
    if repo is not None and not (repo / "feature_store.yaml").exists():
        raise RecsysError(f"--feature-repo {repo}: no feature_store.yaml there (or --no-features)")
    workdir = (workdir or recsys_home() / "runs" / "pipeline").resolve()
    arguments = {
        "source": source if source == movielens.NAME else str(Path(source).resolve()),
        "feature_repo": str(repo.resolve()) if repo else "",
        "feature_service": feature_service,
        "model_kind": model_kind,
        "params": params if isinstance(params, dict) else _params(params),
        "registry_uri": registry_uri or "",
        "k": k,
        "margin": margin,
        "coverage_tolerance": coverage_tolerance,
        "baseline_margin": baseline_margin,
        "gpu": gpu,
        "num_workers": num_workers,
        "ray_address": ray_address,
        "serve_address": serve_address,
        "checkpoint_uri": str(workdir / "checkpoints"),
    }
    click.echo(f"kfp.local: pipeline root {workdir}")
    log_file = None if show_logs else workdir / "pipeline.log"
    result = client.run_local(arguments, workdir, log_file=log_file)
    report = workdir / "report.html"
    shutil.copyfile(result["report"], report)
    log = str(log_file) if log_file else None
    return {**result, "report": str(report), "log": log, "registry_uri": registry_uri}


def retrain(
    snapshot: Path,
    *,
    feature_repo: Path | None,
    registry_uri: str | None,
    serve_address: str | None,
    workdir: Path,
    no_features: bool = False,
) -> dict[str, Any]:
    """The training pipeline on kfp.local over a retraining snapshot (base data + feedback),
    its result printed: what a ``retrain`` decision starts here (the monitor's ``--retrain``
    without a KFP host, the closed-loop demo)."""
    result = run_training(
        source=str(snapshot),
        feature_repo=feature_repo,
        no_features=no_features,
        registry_uri=registry_uri,
        serve_address=serve_address,
        workdir=workdir,
    )
    print_result(result)
    return result


def print_result(result: dict[str, Any]) -> None:
    """The evaluation table, the gate's decision and the registry's champion."""
    evaluation = result["evaluation"]
    k = evaluation["k"]
    entries = [("candidate", evaluation["candidate"]), ("champion", evaluation["champion"])]
    entries += [(name, row) for name, row in evaluation["references"].items()]
    rows = [
        {"model": f"{label} ({row.get('version') or row.get('model')})", **row["metrics"]}
        for label, row in entries
        if row is not None
    ]
    click.echo(f"evaluation at k={k} (same held-out users, exclude-seen):")
    click.echo(markdown_table(rows))
    click.echo(result["summary"])
    uri = result.get("registry_uri") or None
    champion = Registry(uri).champion()
    click.echo(f"champion: {champion.version if champion else 'none'}")
    click.echo(f"Evidently report: {result['report']}")
    if result.get("log"):
        click.echo(f"tasks' output: {result['log']}")


@pipeline.command("compile")
@path_option("--out", help="Directory for the YAML (default: pipelines/compiled).")
def compile_cmd(out: Path | None) -> None:
    """Compile every variant (training, training-gpu) to YAML for the Kubeflow Pipelines UI."""
    for path in client.compile_all(out or client.COMPILED):
        click.echo(f"wrote {path}")


@pipeline.command()
@click.option("--host", required=True, help="The KFP API, e.g. http://localhost:8080.")
@click.option(
    "--variant", default="training", show_default=True, help="training (CPU) or training-gpu."
)
@click.option(
    "--schedule",
    default=None,
    help="Cron expression for a recurring run, e.g. '0 3 * * *' (daily 03:00).",
)
@click.option("--experiment", default="recsys", show_default=True)
@click.option("--run-name", default=None)
@param_option("A pipeline parameter (repeatable); VALUE is parsed as JSON when it can be.")
def submit(host, variant, schedule, experiment, run_name, params) -> None:
    """Upload the compiled pipeline to a KFP server and run it (or schedule it)."""
    done = client.submit(
        host,
        parse_params(params),
        variant=variant,
        schedule=schedule,
        experiment=experiment,
        run_name=run_name,
    )
    for key, value in done.items():
        click.echo(f"{key}: {value}")
