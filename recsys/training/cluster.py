"""Connecting to Ray: a local Ray on this machine by default, ``RAY_ADDRESS`` for a cluster."""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def ensure_ray(num_cpus: int | None = None, *, log_to_driver: bool = True) -> str | None:
    """Start (or join) Ray once per process.

    With ``RAY_ADDRESS`` set, the same command runs on that cluster; otherwise a local Ray starts
    without the dashboard, with at most 2 CPUs unless ``num_cpus`` says otherwise.
    ``log_to_driver=False`` keeps the actors' and workers' output in Ray's log files only.

    Returns:
        The session directory of a local Ray this call started (its logs under ``logs/``);
        None when Ray was already up or a cluster was joined.
    """
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return None
    if os.environ.get("RAY_ADDRESS"):
        log.info("joining the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=log_to_driver)
        return None
    cpus = num_cpus or min(2, os.cpu_count() or 1)
    context = ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=log_to_driver,
        configure_logging=False,
    )
    return context.address_info.get("session_dir")
