"""The training pipeline's deploy step: a gated version switched in (``switch``), or rolled out
as the challenger of an experiment against the champion (``experiment``), on the Ray cluster
that runs the Serve app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from recsys import serve_ops
from recsys.config import RecsysError
from recsys.experiments.spec import Experiment
from recsys.registry import Registry
from recsys.registry.store import check_rollout
from recsys.workflows import experiment as experiments


def rollout_name(version: str) -> str:
    """The experiment a rollout of ``version`` starts: ``rollout-<version>`` (64 characters at
    most, as an experiment's name)."""
    return f"rollout-{version}"[:64]


def deploy(
    version: str,
    registry_uri: str | None,
    serve_config_out: str | Path,
    *,
    rollout: str = "switch",
    share: float = 0.1,
    ray_address: str | None = None,
) -> dict[str, Any]:
    """Write the Serve config for the gated ``version``; when a Ray cluster is named
    (``ray_address`` or ``RAY_ADDRESS``), apply it to the running app in place.

    ``switch``, or a version the register step made the champion (the registry's first): the
    app serves ``version``. ``experiment``: the app keeps serving the champion and runs the
    experiment :func:`rollout_name` with ``version`` as the challenger on ``share`` of the
    users (recorded in the registry; ``recsys experiment status`` and ``stop --promote``).

    Returns:
        ``{"version", "live", "config", ...}``; ``live`` says whether a running app changed,
        ``experiment`` names the one started.
    """
    check_rollout(rollout)
    registry = Registry(registry_uri)
    registry.get(version)  # fail here, not in the replicas, when the version is missing
    champion = registry.champion()
    trial = None
    if rollout == "experiment" and champion is not None and champion.version != version:
        trial = Experiment(
            name=rollout_name(version), control=champion.version, challenger=version, share=share
        )
    root = str(registry.versions_dir() or registry.uri)
    config = serve_ops.serve_config(
        model_version=trial.control if trial else version,
        experiment=trial.model_dump() if trial else None,
        args={"model_root": root},
    )
    Path(serve_config_out).parent.mkdir(parents=True, exist_ok=True)
    Path(serve_config_out).write_text(yaml.safe_dump(config, sort_keys=False))
    done: dict[str, Any] = {"version": version, "live": False, "config": str(serve_config_out)}
    if trial:
        done["experiment"] = trial.name
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        done["note"] = "no Ray address given: the config is written, no app was changed"
        return done
    serve_ops.connect(address)
    live = serve_ops.live_config()
    live_root = live["applications"][0].get("args", {}).get("model_root")
    if live_root and Path(live_root).resolve() != Path(root).resolve():
        raise RecsysError(
            f"the running Serve app loads models from {live_root}, not from this registry "
            f"({root}); restart it with --model-root {root}"
        )
    if trial:  # the app keeps serving the champion (its http_options as read above)
        experiments.start(registry_uri, trial)
    else:
        live = serve_ops.set_version(version)
    url = serve_ops.local_url(live["http_options"])
    if address.startswith("ray://"):  # a Ray Client: the proxy is on the cluster, not here
        ready = serve_ops.wait_ready_on_head(live["http_options"])
    else:
        ready = serve_ops.wait_ready(url)
    return {**done, "live": True, "url": url, "serving": ready.get("model_version")}
