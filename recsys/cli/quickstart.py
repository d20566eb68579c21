"""``recsys quickstart``: the end-to-end job on the embedded default (MovieLens-100k); the job
itself is ``recsys.workflows.quickstart``, the training pipeline's run ``pipelines.client``."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines import client
from recsys.cli.options import rollout_option
from recsys.workflows.quickstart import Quickstart, run_quickstart


@click.command()
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the run writes (default: $RECSYS_HOME/runs/quickstart).",
)
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--feature-repo",
    type=click.Path(path_type=Path),
    default=None,
    help="Feast repository the models' features come from (default: $RECSYS_FEATURE_REPO or "
    "./feature_repo when it exists).",
)
@click.option("--no-features", is_flag=True, help="Read the side tables directly, not via Feast.")
@click.option(
    "--registry",
    "registry_uri",
    default=None,
    help="Model registry (default: $RECSYS_REGISTRY or $RECSYS_HOME/registry).",
)
@click.option("--params", default=None, help="Pipeline-model hyper-parameters: JSON or @file.")
@click.option("--serve/--no-serve", default=True, help="Step 4, the champion on Ray Serve.")
@click.option(
    "--drift",
    is_flag=True,
    help="Then the closed loop: replay held-out and drifted traffic, monitor, retrain, gate, "
    "hot-reload.",
)
@rollout_option(
    "experiment",
    help="How the closed loop deploys a gated retraining: as the champion's challenger in an "
    "experiment that later users decide, or a switch.",
)
@click.option("--port", type=int, default=8000, show_default=True, help="HTTP port of the demo.")
def quickstart(**options) -> None:
    """Fetch MovieLens-100k; run the Kubeflow training pipeline on kfp.local (validate, split,
    Feast features, train the multi-stage model on Ray Train, evaluate against the champion
    and the baselines, gate, register, deploy); print the table and the gate's
    decision; the same model kinds on the temporal protocol; then serve the champion on Ray
    Serve and send it real HTTP requests.

    Run it twice: the second run, on unchanged data, keeps the champion. With --drift, the
    closed loop follows (about 8 more minutes)."""
    run_quickstart(Quickstart(**options), client.run_local, log=click.echo)
