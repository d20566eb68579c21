"""``recsys pipeline run training | compile | submit``: the Kubeflow training pipeline.

``run`` executes the pipeline here with ``kfp.local`` (each task a subprocess of this Python);
``compile`` writes the YAML the Kubeflow Pipelines UI uploads; ``submit`` sends it to a KFP API
server, once or on a cron schedule. The pipeline itself lives in ``pipelines/``; the run's
arguments and result in ``recsys.workflows.training_pipeline``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipelines import client
from recsys.cli.options import (
    Number,
    gpu_option,
    k_option,
    num_workers_option,
    param_option,
    parse_params,
    path_option,
    registry_option,
    rollout_option,
    workdir_option,
)
from recsys.features.store import DEFAULT_SERVICE
from recsys.registry.gate import GatePolicy
from recsys.workflows.training_pipeline import PipelineRun, result_lines, run_training

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


def gate_options(command):
    """The gate's thresholds as options (``--margin``, ...), listed in :data:`GATE_OPTIONS`'
    order, each defaulting to :class:`GatePolicy`'s value."""
    for field, help_text in reversed(GATE_OPTIONS):
        option = click.option(
            "--" + field.replace("_", "-"),
            type=Number(),
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
@rollout_option(
    "switch",
    help="switch: the app serves the gated version; experiment: the version is the champion's "
    "challenger (`recsys experiment status rollout-<version>`).",
)
@click.option(
    "--experiment-share",
    type=float,
    default=0.1,
    show_default=True,
    help="With --rollout experiment: the challenger's share of the users.",
)
@click.option(
    "--serve-address", default="", help="Switch the Serve app on this Ray cluster to a promotion."
)
@workdir_option("Pipeline root for the artifacts (default: $RECSYS_HOME/runs/pipeline).")
@click.option("--show-logs", is_flag=True, help="Print the tasks' output, not only their status.")
def run(name: str, **options: Any) -> None:
    """Run the NAME pipeline here with kfp.local (SubprocessRunner, this Python)."""
    result = run_training(PipelineRun(**options), client.run_local, log=click.echo)
    for line in result_lines(result):
        click.echo(line)


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
