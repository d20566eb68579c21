"""``recsys serve start|status|stop`` and ``recsys deploy --version V``: the Ray Serve app.

``serve start`` applies ``serving/config.yaml`` (with overrides) to a Ray cluster — the one at
``RAY_ADDRESS``, a running local one (``ray start --head``), or else a new local Ray that lives
as long as the command (its port checked first; Ray's and Serve's own lines in its session
directory, not on the screen). ``serve stop`` also ends what a killed command left behind.
``deploy`` switches the running app to another model version in place (a ``user_config``
update: no replica restarts).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from recsys import serve_local, serve_ops
from recsys.cli.options import Number
from recsys.config import RecsysError
from recsys.serve_local import check_local_inputs, connect


@click.group()
def serve() -> None:
    """The Ray Serve app: start, status, stop (see also `recsys deploy`)."""


@serve.command()
@click.option("--config", type=click.Path(path_type=Path), default=None, help="Serve config.")
@click.option("--version", "model_version", default=None, help="Model version to serve.")
@click.option("--model-root", default=None, help="Directory of model versions.")
@click.option("--feature-repo", default=None, help="Feast repository (online features).")
@click.option("--catalog", default=None, help="Items parquet with titles (for reasons).")
@click.option(
    "--topology",
    type=click.Choice(["composed", "fused"]),
    default=serve_ops.LOCAL_TOPOLOGY,
    show_default=True,
    help="fused: one replica runs every stage (faster on one machine); composed: a deployment "
    "per stage (the cluster's, scaled apart).",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="Replicas each deployment starts with (default: fused, one per CPU up to 4; "
    "composed, the config's).",
)
@click.option("--host", default=None, help="HTTP host (default: the config's).")
@click.option("--port", type=int, default=None, help="HTTP port (default: the config's).")
@click.option("--detach", is_flag=True, help="Return once ready (needs a running Ray cluster).")
def start(
    config, model_version, model_root, feature_repo, catalog, topology, replicas, host, port, detach
):
    """Deploy the app and wait until /readyz answers; without --detach, serve until Ctrl-C."""
    cfg = serve_ops.serve_config(
        config,
        model_version=model_version,
        args={"model_root": model_root, "feature_repo": feature_repo, "catalog": catalog},
        host=host,
        port=port,
        topology=topology,
        replicas=replicas or (serve_ops.local_replicas() if topology == "fused" else None),
    )
    if model_root is not None:
        check_local_inputs(
            Path(model_root),
            model_version or "",
            Path(feature_repo) if feature_repo else None,
            Path(catalog) if catalog else None,
        )
    http = cfg["http_options"]
    local = connect(local_http=None if detach else http, log=click.echo)
    if local is not None:
        click.echo(f"(Ray's and Serve's own logs: {local.logs}; {local.proxy})")
    try:
        url = serve_ops.start(cfg)
    except BaseException:  # nothing half-started stays behind
        if local is not None:
            serve_local.stop(local_ray=True)
        raise
    if local is not None:  # what a hard kill would leave, recorded before anyone is told
        serve_local.record(http["host"], int(http["port"]), local.session_dir)
    click.echo(f"serving at {url}  (OpenAPI: {url}/docs; version {model_version or 'none yet'})")
    click.echo(serve_ops.access(url))
    if detach:
        return
    if local is not None:
        click.echo("Ray runs inside this command: Ctrl-C stops the app")
    try:
        while True:
            time.sleep(30)
            if local is not None:  # HAProxy reloads (new replicas) start new processes
                serve_local.record(http["host"], int(http["port"]), local.session_dir)
    except KeyboardInterrupt:
        serve_local.stop(local_ray=local is not None)


@serve.command()
def status() -> None:
    """The app's state and each deployment's replicas."""
    connect()
    from ray import serve as ray_serve

    app = ray_serve.status().applications.get(serve_ops.APP)
    if app is None:
        raise RecsysError(f"no Serve app {serve_ops.APP!r} is running")
    click.echo(f"{serve_ops.APP}: {app.status}")
    for name, d in app.deployments.items():
        counts = ", ".join(f"{k}={v}" for k, v in d.replica_states.items())
        click.echo(f"  {name}: {d.status} ({counts})")


@serve.command()
def stop() -> None:
    """Shut the Serve instance down, and end what a killed `recsys serve start` or demo left
    running (its HAProxy, by the pid it recorded)."""
    ended = serve_local.end_stale(click.echo)
    try:
        connect()
    except RecsysError:
        if not ended:
            click.echo("nothing to stop: no running Ray cluster, nothing left by a recsys app")
        return
    from ray import serve as ray_serve

    ray_serve.shutdown()
    click.echo("Serve stopped")


@click.command("deploy")
@click.option("--version", "model_version", required=True, help="Model version to serve.")
@click.option("--wait-s", type=Number(0.0), default=300, show_default=True)
def deploy_cmd(model_version: str, wait_s: float) -> None:
    """Switch the running app to another model version in place (no replica restarts)."""
    connect()
    config = serve_ops.set_version(model_version, wait_s=wait_s)
    url = serve_ops.local_url(config["http_options"])
    ready = serve_ops.wait_ready(url, timeout_s=wait_s)
    click.echo(f"serving {ready['model_version']} at {url}")
