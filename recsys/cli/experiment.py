"""``recsys experiment``: an online experiment on the running app (start, status, stop).

A user's arm is a hash of (experiment, user id); the per-arm quality comes from the prediction
log and the events the app writes (``--predictions``, ``--events``: the app's directories,
default ``$RECSYS_HOME/predictions`` and ``$RECSYS_HOME/events``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from pydantic import ValidationError

from recsys.cli.options import SHARE, open_registry, path_option
from recsys.config import RecsysError, recsys_home
from recsys.data.records import reasons
from recsys.experiments.spec import Experiment
from recsys.features.repository import default_repo
from recsys.workflows import experiment as flow
from recsys.workflows.experiment_demo import ExperimentDemo, run_experiment_demo

REGISTRY = click.option(
    "--registry", "registry_uri", default=None, help="Registry URI (default: $RECSYS_REGISTRY)."
)
LOGS = [
    click.option("--predictions", default=None, help="The app's prediction log directory."),
    click.option("--events", default=None, help="The app's event log directory."),
]


def _logs(command):
    for option in reversed(LOGS):
        command = option(command)
    return command


@click.group()
def experiment() -> None:
    """A/B splits, interleaving and shadow traffic between the served version and a
    challenger, judged by what users do with the recommendations."""


@experiment.command()
@click.argument("name")
@click.option("--challenger", required=True, help="The challenger's model version.")
@click.option("--control", default="champion", show_default=True, help="Version or 'champion'.")
@click.option(
    "--share",
    type=SHARE,
    default=None,
    help="Split: the challenger's share of the users (0.5); shadow: of the requests (1.0).",
)
@click.option("--interleave", is_flag=True, help="Interleave both arms in every answer.")
@click.option(
    "--shadow", is_flag=True, help="The challenger answers in the background, logged only."
)
@click.option("--metric", type=click.Choice(["ctr", "ndcg_at_10", "hit_at_10"]), default="ctr")
@click.option(
    "--min-users", type=click.IntRange(2), default=200, show_default=True, help="Per arm."
)
@REGISTRY
def start(
    name, challenger, control, share, interleave, shadow, metric, min_users, registry_uri
) -> None:
    """Start experiment NAME on the running app (it must serve the control)."""
    if interleave and (share is not None or shadow):
        raise click.UsageError("--interleave excludes --share and --shadow")
    mode = "interleave" if interleave else "shadow" if shadow else "split"
    registry_uri = open_registry(registry_uri).uri
    control = flow.resolve_control(registry_uri, control)
    try:
        spec = Experiment(
            name=name,
            control=control,
            challenger=challenger,
            mode=mode,
            share=share if share is not None else 1.0 if shadow else 0.5,
            metric=metric,
            min_users=min_users,
        )
    except ValidationError as exc:
        raise RecsysError(f"experiment {name!r}: {'; '.join(reasons(exc))}") from None
    started = flow.start(registry_uri, spec)
    arms = {
        "interleave": "interleaved",
        "shadow": f"shadow on {spec.share:g} of the requests",
        "split": f"challenger share {spec.share:g}",
    }[mode]
    click.echo(
        f"experiment {name}: {control} (control) vs {challenger} ({arms}) at {started['url']}"
        + (" (declared in the app's config: recorded)" if started.get("declared") else "")
    )


@experiment.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@path_option("--report", help="Write an Evidently report per arm here (<arm>.html).")
@REGISTRY
@_logs
def status(name, as_json, report, registry_uri, predictions, events) -> None:
    """Per-arm users, requests, clicks, CTR, nDCG@10, latency; the SRM check; the decision."""
    registry_uri = open_registry(registry_uri).uri
    result = flow.status(
        registry_uri, name, predictions=predictions, events=events, report_dir=report
    )
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "warnings"}, indent=2))
        return
    click.echo(flow.status_table(result))
    for arm, path in result.get("reports", {}).items():
        click.echo(f"{arm} report: {path}")


@experiment.command()
@click.argument("name")
@click.option("--promote", is_flag=True, help="Promote the winner and serve it.")
@REGISTRY
@_logs
def stop(name, promote, registry_uri, predictions, events) -> None:
    """End experiment NAME: the control serves again, or the winner with --promote."""
    registry_uri = open_registry(registry_uri).uri
    done = flow.stop(registry_uri, name, promote=promote, predictions=predictions, events=events)
    click.echo(flow.status_table(done))
    how = "promoted and serving" if promote else "serving"
    click.echo(f"experiment {name} stopped; {how} {done['serving']}")


@experiment.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=None, help="Scratch area.")
@click.option("--feature-repo", type=click.Path(path_type=Path), default=None)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--users", type=click.IntRange(1), default=None, help="Users replayed (all).")
def demo(workdir, feature_repo, port, users) -> None:
    """The multi-stage model against popularity on live traffic: MovieLens-100k's held-out
    users click what they rated later; an A/B split, then interleaving."""
    run = ExperimentDemo(
        workdir=workdir or recsys_home() / "runs" / "experiment-demo",
        feature_repo=feature_repo or default_repo(),
        port=port,
        users=users,
    )
    run_experiment_demo(run, log=click.echo)
