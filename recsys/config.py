"""Process-wide settings read from the environment, the project's error type, and the Ray
connection (a local Ray on this machine by default, ``RAY_ADDRESS`` for a cluster)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from recsys import __version__

log = logging.getLogger(__name__)


class RecsysError(Exception):
    """An error meant for a person: the message names the input, the field and the value.

    The CLI prints the message (no traceback) and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


# Bearer tokens of the Serve app, read from the replicas' environment: writes (events, items,
# version switches) and, when set, reads (recommendations).
WRITE_TOKEN_ENV, READ_TOKEN_ENV = "RECSYS_WRITE_TOKEN", "RECSYS_READ_TOKEN"


def shorten(value: object, limit: int = 64) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message names a bad value without
    echoing a long input back whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def recsys_home() -> Path:
    """The cache and work root: ``$RECSYS_HOME``, default ``~/.cache/recsys``."""
    env = os.environ.get("RECSYS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recsys"


def datasets_dir() -> Path:
    """Where fetched and generated datasets live by default."""
    return recsys_home() / "datasets"


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def ray_settings() -> None:
    """The environment Ray reads when it is imported: Train V2, no usage stats, no progress
    bars, and for a new local Ray its default token authentication stated explicitly (the same
    security, without Ray's notice on the screen). Call before importing Ray."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not os.environ.get("RAY_ADDRESS") and "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_ray(num_cpus: int | None = None, *, log_to_driver: bool = True) -> str | None:
    """Start (or join) Ray once per process.

    With ``RAY_ADDRESS`` set, the same command runs on that cluster; otherwise a local Ray starts
    without the dashboard, with at most 2 CPUs unless ``num_cpus`` says otherwise.
    ``log_to_driver=False`` keeps the actors' and workers' output in Ray's log files only.

    Returns:
        The session directory of a local Ray this call started (its logs under ``logs/``);
        None when Ray was already up or a cluster was joined.
    """
    ray_settings()
    import ray
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
