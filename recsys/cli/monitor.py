"""``recsys monitor check``: drift and quality of the champion's traffic, the decision, and
(with ``--retrain``) the training pipeline — kfp.local here, a KFP server with ``--kfp-host``."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import click

from pipelines import client
from recsys.cli.options import Number, path_option
from recsys.config import recsys_home
from recsys.monitoring.check import MonitorArgs, check_and_trigger
from recsys.monitoring.policy import Decision
from recsys.workflows.retraining import monitor_retraining


@click.group()
def monitor() -> None:
    """Monitoring with Evidently: drift, quality on feedback, the retrain decision."""


@monitor.command("check")
@path_option("--predictions", required=True, help="The Serve app's prediction_log_dir.")
@path_option("--events", required=True, help="The Serve app's events_dir (feedback).")
@path_option("--out", help="Reports, decisions, workspace (default: $RECSYS_HOME/monitoring).")
@click.option("--registry", "registry_uri", default=None)
@click.option(
    "--policy",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Policy YAML (MonitorPolicy fields; defaults for the rest).",
)
@click.option("--since-minutes", type=Number(0.0), default=None, help="Only this recent traffic.")
@click.option("--retrain", is_flag=True, help="Run the training pipeline on a retrain decision.")
@click.option(
    "--retrain-base",
    default="movielens-100k",
    show_default=True,
    help="Base data of the retraining snapshot (plus the accepted events).",
)
@path_option("--feature-repo")
@click.option("--serve-address", default="", help="Ray cluster whose Serve app hot-reloads.")
@click.option("--kfp-host", default=None, help="Submit the retraining to this KFP API instead.")
def check_cmd(
    predictions,
    events,
    out,
    registry_uri,
    policy,
    since_minutes,
    retrain,
    retrain_base,
    feature_repo,
    serve_address,
    kfp_host,
) -> None:
    """Compare the champion's live traffic with its reference; decide; maybe retrain."""
    args = MonitorArgs(
        predictions=predictions,
        events=events,
        out=out or recsys_home() / "monitoring",
        registry=registry_uri,
        policy=policy,
        since_minutes=since_minutes,
    )
    start = None
    if retrain:
        start = monitor_retraining(
            args,
            retrain_base,
            feature_repo=feature_repo,
            serve_address=serve_address,
            run_pipeline=client.run_local,
            submit=partial(client.submit, kfp_host) if kfp_host else None,
            log=click.echo,
        )
    decision, summary, outcome = check_and_trigger(args, start)
    print_check(decision, summary, outcome)


def print_check(decision: Decision, summary: dict[str, Any], outcome: dict[str, Any]) -> None:
    """The decision, its reasons, the signals and where the reports are."""
    stamp = datetime.now().strftime("%H:%M:%S")
    click.echo(f"[{stamp}] monitor: {decision.action} (model {decision.model_version})")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    samples = summary.get("samples", {})
    click.echo(
        f"  samples: {samples.get('requests', 0)} requests, "
        f"{samples.get('users_with_feedback', 0)} users with feedback"
    )
    for key in ("drift_html", "quality_html"):
        if key in summary:
            click.echo(f"  {key.replace('_html', '')} report: {summary[key]}")
    for warning in summary.get("warnings", []):
        click.echo(f"  warning: {warning}")
    if decision.action == "retrain":
        click.echo(f"  retraining: {'started' if outcome['started'] else outcome['reason']}")
