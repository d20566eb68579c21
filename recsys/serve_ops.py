"""Serve operations: the Serve config (build, apply), start (locally or on a cluster), switch
the model version or the experiment in place, wait until ready.

This speaks only Ray Serve's declarative API (the same one ``serve run config.yaml``, the
dashboard's ``serve deploy`` and KubeRay use); it never imports ``serving/`` — the Serve
controller does, from the config's ``import_path``. A declarative redeploy that changes only
``user_config`` is a lightweight update: replicas stay up and ``reconfigure`` swaps the model.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from recsys import serve_local
from recsys.config import FAST_PROXY, WRITE_TOKEN_ENV, RecsysError, proxy_settings  # noqa: F401
from recsys.serve_local import connect, stop  # noqa: F401  (the CLI's and benchmarks' names)

APP = "recsys"
# The deployments of either topology (the fused one runs the stages in the Ingress).
ALWAYS = ("Ingress", "Shadow")
# On one machine (`recsys serve start`, the demo) a replica runs every stage (faster: the
# serving table in docs/serving.md); serving/config.yaml and the chart compose them, a
# cluster scales each.
LOCAL_TOPOLOGY = "fused"


def local_replicas() -> int:
    """The fused replicas a local app starts with: one per CPU, up to 4, each running the model
    under its own GIL (what it gains: docs/serving.md)."""
    return max(1, min(os.cpu_count() or 1, 4))


def default_config() -> Path:
    """``serving/config.yaml`` of this checkout."""
    return Path(__file__).resolve().parents[1] / "serving" / "config.yaml"


def serve_config(
    path: str | Path | None = None,
    *,
    model_version: str | None = None,
    experiment: dict | None = None,
    args: dict[str, Any] | None = None,
    host: str | None = None,
    port: int | None = None,
    topology: str | None = None,
    replicas: int | None = None,
    proxy_location: str | None = None,
) -> dict:
    """The Serve config from ``path`` with overrides (``None`` keeps the file's value).

    ``experiment``: one against ``model_version`` (its control), as the app's ``user_config``
    carries it (``serving.schemas.ModelSelection``).

    ``topology="fused"`` keeps only the Ingress deployment (it runs every stage itself) and
    the Shadow (a shadow experiment's challenger).
    ``replicas``: every deployment but the Shadow starts with (and keeps at least) this many
    replicas.
    ``proxy_location``: ``HeadOnly`` where several nodes share one machine (and its ports).
    """
    path = Path(path) if path else default_config()
    if not path.exists():
        raise RecsysError(f"{path}: no such Serve config")
    config = yaml.safe_load(path.read_text())
    app = next((a for a in config["applications"] if a["name"] == APP), None)
    if app is None:
        raise RecsysError(f"{path}: no application named {APP!r}")
    app["args"] = app.get("args", {}) | {k: v for k, v in (args or {}).items() if v is not None}
    if topology:
        app["args"]["topology"] = topology
    if app["args"].get("topology") == "fused":
        app["deployments"] = [d for d in app["deployments"] if d["name"] in ALWAYS]
    if experiment and not model_version:
        raise RecsysError("an experiment needs the model_version it runs against (its control)")
    if model_version:
        selection = {"model_version": model_version, "experiment": experiment}
        for deployment in app["deployments"]:
            deployment["user_config"] = {k: v for k, v in selection.items() if v is not None}
    if replicas:
        for deployment in app["deployments"]:
            if deployment["name"] == "Shadow":  # none until a shadow experiment runs
                continue
            scaling = deployment.get("autoscaling_config")
            if scaling is None:
                deployment["num_replicas"] = replicas
                continue
            scaling["min_replicas"] = replicas
            scaling["max_replicas"] = max(scaling.get("max_replicas", 1), replicas)
            scaling["initial_replicas"] = replicas
    if proxy_location:
        config["proxy_location"] = proxy_location
    http = config.setdefault("http_options", {})
    if host:
        http["host"] = host
    if port:
        http["port"] = port
    return config


def fix_replicas(config: dict, replicas: int) -> dict:
    """``config`` with ``replicas`` replicas for every deployment in place of autoscaling
    (benchmarks), but the Shadow's (none until a shadow experiment runs)."""
    for deployment in config["applications"][0]["deployments"]:
        if deployment["name"] != "Shadow":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = replicas
    return config


def apply(config: dict, *, wait_s: float = 300) -> None:
    """Start Serve if needed and deploy ``config``; wait until the app is RUNNING."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.serve._private import api as serve_api
    from ray.serve.config import ProxyLocation
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    deadline = time.monotonic() + 60
    while True:
        try:
            client = serve_api.serve_start(
                http_options=schema.http_options.model_dump(),
                proxy_location=schema.proxy_location or ProxyLocation.EveryNode,
            )
            client.deploy_apps(schema, _blocking=False)
            break
        except RayActorError:  # a controller from a just-stopped Serve is still going away
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
        except RayTaskError as exc:  # the proxy could not bind: one line, not Ray's trace
            if "Failed to bind to address" not in str(exc):
                raise
            http = schema.http_options
            raise RecsysError(
                f"port {http.port} on {http.host} is in use (Serve's proxy could not bind it); "
                "use --port to pick another"
            ) from None
    wait_running(wait_s)


def start(config: dict, *, wait_s: float = 300) -> str:
    """Deploy ``config`` (starting Serve if needed), wait until the app is RUNNING and, when
    it names a model version, until ``/readyz`` answers 200; return its URL from here."""
    apply(config, wait_s=wait_s)
    url = local_url(config["http_options"])
    app = next(a for a in config["applications"] if a["name"] == APP)
    if any(d.get("user_config", {}).get("model_version") for d in app["deployments"]):
        wait_ready(url, timeout_s=wait_s)
    return url


def start_local(
    model_root: Path,
    model_version: str,
    feature_repo: Path | None,
    catalog: Path | None,
    workdir: Path,
    port: int,
    log=None,
    replicas: int | None = None,
    proxy_location: str | None = None,
) -> str:
    """Start (a local Ray and) the Serve app on ``model_version`` in the local topology (a
    replica runs every stage; ``replicas``, default :func:`local_replicas`, of them), its
    prediction log and events under ``workdir``; wait until it is ready. A local Ray started
    here keeps Ray's and Serve's own logs in its session directory, which ``log`` is told,
    instead of on the screen.

    Returns:
        The app's URL.
    """
    args = {
        "model_root": str(model_root),
        "feature_repo": str(feature_repo) if feature_repo else None,
        "catalog": str(catalog) if catalog else None,
        "prediction_log_dir": str(workdir / "predictions"),
        "events_dir": str(workdir / "events"),
        "items_dir": str(workdir / "items"),
    }
    config = serve_config(
        model_version=model_version,
        args=args,
        host="127.0.0.1",
        port=port,
        topology=LOCAL_TOPOLOGY,
        replicas=replicas or local_replicas(),
        proxy_location=proxy_location,
    )
    serve_local.check_local_inputs(model_root, model_version, feature_repo, catalog)
    http = config["http_options"]
    fresh = not serve_local.ray_is_up()
    local = serve_local.open_local(http, log)
    if local is not None and log is not None:
        log(f"(Ray's and Serve's own logs: {local.logs}; {local.proxy})")
    try:
        url = start(config)
    except BaseException:  # nothing half-started stays: a local Ray started here goes
        if local is not None and fresh:
            serve_local.stop(local_ray=True)
        raise
    if local is not None:
        serve_local.record(http["host"], http["port"], local.session_dir)
    return url


def wait_running(wait_s: float = 300) -> None:
    from ray import serve

    deadline = time.monotonic() + wait_s
    while True:
        status = serve.status().applications.get(APP)
        state = str(status.status) if status else "NOT_STARTED"
        if state.endswith("RUNNING") and all(
            str(d.status).endswith("HEALTHY") for d in status.deployments.values()
        ):
            return
        if state.endswith("DEPLOY_FAILED"):
            raise RecsysError(f"Serve app {APP!r} failed to deploy: {status.message}")
        if time.monotonic() > deadline:
            raise RecsysError(f"Serve app {APP!r} not running after {wait_s:.0f}s ({state})")
        time.sleep(0.5)


def live_config() -> dict:
    """The config the running Serve instance was last deployed with."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    app = details.get("applications", {}).get(APP)
    if not app or not app.get("deployed_app_config"):
        raise RecsysError(f"no Serve app {APP!r} deployed from a config is running")
    return {
        "proxy_location": details.get("proxy_location") or "EveryNode",
        "http_options": {
            k: v
            for k, v in (details.get("http_options") or {}).items()
            if k in ("host", "port", "request_timeout_s")
        },
        "applications": [app["deployed_app_config"]],
    }


def set_version(version: str, *, wait_s: float = 300) -> dict:
    """Serve ``version`` everywhere (an experiment running ends with it)."""
    return set_user_config({"model_version": version}, wait_s=wait_s)


def set_user_config(user_config: dict, *, wait_s: float = 300) -> dict:
    """The live config with every deployment's ``user_config`` (replicas reload in place)."""
    config = live_config()
    for deployment in config["applications"][0]["deployments"]:
        deployment["user_config"] = user_config
    apply(config, wait_s=wait_s)
    return config


def local_url(http_options: dict) -> str:
    """The URL to reach the proxy from this machine (``0.0.0.0`` binds, 127.0.0.1 answers)."""
    host = http_options.get("host", "127.0.0.1")
    host = "127.0.0.1" if host == "0.0.0.0" else host
    return f"http://{host}:{http_options.get('port', 8000)}"


def wait_ready_on_head(http_options: dict, timeout_s: float = 120) -> dict:
    """``wait_ready`` run as a task on the cluster's head node, against its own proxy.

    A Ray Client driver (``ray://``, a promotion from the RayJob or a Kubeflow task) is not
    where the proxy listens, and the cluster's NetworkPolicy admits only the ingress to the
    Serve port; the head's loopback is always there.
    """
    import ray
    from ray.exceptions import GetTimeoutError

    probe = ray.remote(num_cpus=0, resources={"node:__internal_head__": 0.001})(wait_ready)
    try:  # the probe times out itself; this bounds a task that never got scheduled
        return ray.get(probe.remote(local_url(http_options), timeout_s), timeout=timeout_s + 60)
    except GetTimeoutError:
        raise RecsysError(
            f"the readiness probe did not run on the Ray head within {timeout_s + 60:.0f}s"
        ) from None


def wait_ready(url: str, timeout_s: float = 120) -> dict:
    """Poll ``GET url/readyz`` until 200; returns its body."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            last = exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RecsysError(f"{url}/readyz not ready after {timeout_s:.0f}s: {last}")


def access(url: str) -> str:
    """One line on who may write and read, as the running app's own OpenAPI document says
    (its replicas' environment decides, which may not be this process's): "writes need a
    bearer token ..." or "writes are open ...", and the same for reads."""
    try:
        with urllib.request.urlopen(f"{url}/openapi.json", timeout=10) as resp:
            paths = json.loads(resp.read()).get("paths", {})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"access: unknown ({url}/openapi.json: {exc})"
    guarded = {p for p, ops in paths.items() if any("security" in op for op in ops.values())}
    writes = (
        "writes (POST /events, /items) need a bearer token"
        if "/events" in guarded
        else f"writes are open: anyone who reaches {url} may POST /events and /items (set "
        f"{WRITE_TOKEN_ENV} where Ray starts to require a bearer token)"
    )
    reads = "reads need a bearer token" if "/recommend" in guarded else "reads are open"
    return f"{writes}; {reads}"
