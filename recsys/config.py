"""Process-wide settings read from the environment, the project's error type, and the Ray
connection (a local Ray on this machine by default, ``RAY_ADDRESS`` for a cluster)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

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


class Strict(BaseModel):
    """What crosses a boundary (YAML, env, HTTP, the CLI): an unknown field is an error, and
    so are NaN and the infinities."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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


# Serve's fast proxy: the chart sets these on every Ray container (serve.fastProxy). HAProxy
# sends a request again, once, to another replica when its replica closed the connection
# without an answer (a replica killed mid-request; measured, a replica killed under load at
# concurrency 16: 0 of 15,387 requests failed, against 17 of 14,428 without). /recommend only
# reads; an /events POST retried so can be logged twice (at least once, as after any client's
# retry of a lost answer). One retry: a request that crashed its replica can take one more.
FAST_PROXY = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
    "RAY_SERVE_HAPROXY_RETRIES": "1",
}
# With HAProxy, Serve also listens on fixed side ports (HAProxy's stats 8404 and metrics 9101,
# the fallback proxy's 8500): a second local Ray on the machine (another app, a test worker)
# would fail to bind them, so a local Ray started here gets free ones.
SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
)
# Ports we choose for our servers start above Ray's worker ports (10002-19999 by default).
PORTS_FROM = 20000
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
# Ray's and Serve's loggers in this process (the driver); workers log to their own files.
RAY_LOGGERS = ("ray", "ray.serve", "ray.train", "ray.data", "ray.tune")
# Seconds between a local Ray Train controller's polls of its workers (Ray's default: 2).
TRAIN_POLL_S = "0.25"


@dataclass(frozen=True)
class LocalRay:
    """The local Ray this process started: where its logs are, which proxy Serve gets."""

    session_dir: str
    proxy: str  # the line that says which proxy serves

    @property
    def logs(self) -> str:
        """The directory of Ray's and Serve's own logs (and this driver's Ray log lines)."""
        return f"{self.session_dir}/logs"


_local: LocalRay | None = None


def ray_settings() -> None:
    """The environment Ray reads when it is imported: Train V2, no usage stats, no progress
    bars, and for a new local Ray its default token authentication stated explicitly (the same
    security, without Ray's notice on the screen). Call before importing Ray."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if not os.environ.get("RAY_ADDRESS") and "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def proxy_settings() -> str:
    """For a local Ray this process is about to start: HAProxy in place of Serve's Python
    proxy, with Serve's throughput-optimised mode, when ``haproxy`` is on PATH (the serving
    table in docs/serving.md has the measured gain), and free side ports for it. Variables the
    user set are kept. :func:`ensure_ray` calls it before it starts a local Ray: Serve's
    controller and proxies read these when they start, whichever step starts Ray first.

    Returns:
        A line that says which proxy serves, and how to get the fast one when it is missing.
    """
    if _local is not None:  # this process chose already; FAST_PROXY is now in the environment
        return _local.proxy
    if "RAY_SERVE_ENABLE_HA_PROXY" in os.environ:  # the user's choice stands
        chosen = os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
        if chosen:
            _free_side_ports()
        return f"proxy: {'HAProxy' if chosen else 'Serve default'} (RAY_SERVE_ENABLE_HA_PROXY set)"
    if shutil.which("haproxy") is None:
        return (
            "proxy: Serve's default (haproxy is not on PATH; install it, e.g. `apt-get install "
            "haproxy`, for the faster proxy)"
        )
    os.environ.update(FAST_PROXY)
    _free_side_ports()
    settings = ", ".join(f"{k}={v}" for k, v in FAST_PROXY.items())
    return f"proxy: HAProxy, throughput-optimised ({settings})"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (``""``: on every interface), chosen below the kernel's
    ephemeral range and above Ray's worker ports: a port the kernel hands out (``bind`` to 0)
    can be taken by any outgoing connection (Ray opens many) before our server binds it."""
    try:
        high = int(Path(EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        high = 32768  # Linux's default
    ours = range(PORTS_FROM, max(high, PORTS_FROM))
    for port in [*random.sample(ours, min(64, len(ours))), 0]:  # 0: the kernel's choice
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RecsysError(f"no free TCP port on {host or 'any interface'}")


def _free_side_ports() -> None:
    for name in SIDE_PORTS:
        if name not in os.environ:
            os.environ[name] = str(free_port(""))


def local_ray() -> LocalRay | None:
    """The local Ray :func:`ensure_ray` started in this process, while it runs; else None
    (no Ray, a cluster joined, or a Ray someone else started)."""
    ray = sys.modules.get("ray")
    return _local if _local is not None and ray is not None and ray.is_initialized() else None


def ray_address() -> str:
    """The GCS address of the Ray this process is connected to (a task elsewhere joins it with
    ``RAY_ADDRESS``); "" when it is connected to none."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().gcs_address


def ensure_ray(num_cpus: int | None = None, *, log_to_driver: bool = False) -> str | None:
    """Start (or join) Ray once per process.

    With ``RAY_ADDRESS`` set, the same command runs on that cluster (one that does not answer
    is a :class:`RecsysError`); otherwise a local Ray starts without the dashboard, with at
    most 2 CPUs unless ``num_cpus`` says otherwise, and with :func:`proxy_settings` applied
    first, so training and serving in one process share it. Ray's and Serve's own lines (the
    workers' output, this process's Ray loggers) go to the session's log files, never to the
    screen, unless ``log_to_driver`` asks for the workers' output here.

    Returns:
        The session directory of a local Ray this call started (its logs under ``logs/``);
        None when Ray was already up or a cluster was joined.
    """
    global _local
    ray_settings()
    import ray

    if "ray.data" in sys.modules:  # imported before the environment said no progress bars
        sys.modules["ray.data"].DataContext.get_current().enable_progress_bars = False
    if ray.is_initialized():
        return None
    if os.environ.get("RAY_ADDRESS"):
        join_ray(os.environ["RAY_ADDRESS"], log_to_driver=log_to_driver)
        return None
    proxy = proxy_settings()
    # Ray's notices during init wait in memory for the session's file (configure_logging
    # stays on: off, Ray drops the handlers of its logger and Python's last resort prints
    # its warnings on the screen)
    quiet_ray_logging()
    cpus = num_cpus or min(2, os.cpu_count() or 1)
    # One node that nothing drains: no preemption watcher actor per Ray Train run. Short
    # runs: a Train controller takes its workers' reports (each a checkpoint the worker waits
    # on) at a short poll interval, not Ray's default (benchmarks/ray_train_overhead.py).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", TRAIN_POLL_S)
    context = ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=log_to_driver)
    _local = LocalRay(context.address_info["session_dir"], proxy)
    quiet_ray_logging(Path(_local.logs) / f"driver-{os.getpid()}.log")
    return _local.session_dir


def join_ray(address: str, *, log_to_driver: bool = False) -> None:
    """Join the Ray cluster at ``address`` (``auto``: one running on this machine), its own
    lines kept off the screen (in ``$RECSYS_HOME/logs/ray-driver.log``).

    Raises:
        RecsysError: ``address`` names a cluster that does not answer.
        ConnectionError: ``auto`` found no running cluster.
    """
    import ray

    check_ray_address(address)
    log.info("joining the Ray cluster at %s", address)
    quiet_ray_logging(recsys_home() / "logs" / "ray-driver.log")
    ray.init(address=address, log_to_driver=log_to_driver)


def quiet_ray_logging(log_file: Path | None = None) -> None:
    """Ray's and Serve's loggers in this process write to the session's log file, never to
    the screen; until ``log_file`` is named, their lines are held in memory (Ray logs during
    ``ray.init``, before its session directory exists). Loggers Ray configures on a later
    import (``import ray.serve`` adds a handler of its own) need another call.
    """
    import ray  # noqa: F401  (Ray sets its loggers up on import; their handlers go here)

    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and handler is not _RAY_LINES:
                logger.removeHandler(handler)
        if _RAY_LINES not in logger.handlers:
            logger.addHandler(_RAY_LINES)
        logger.propagate = False
    if log_file is not None:
        _RAY_LINES.to_file(log_file)


class _RayLines(logging.Handler):
    """Writes Ray's log lines to a file; holds the latest of them until it is named."""

    HELD = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is not None:
            self.file.emit(record)
            return
        self.held.append(record)
        del self.held[: -self.HELD]

    def to_file(self, path: Path) -> None:
        """Write to ``path`` from now on (the held lines first)."""
        self.acquire()
        try:
            if self.file is not None:
                self.file.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = logging.FileHandler(path)
            self.file.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s")
            )
            for record in self.held:
                self.file.emit(record)
            self.held = []
        finally:
            self.release()


_RAY_LINES = _RayLines()


def check_ray_address(address: str) -> None:
    """Fail at once, in one line, when the Ray cluster at ``address`` does not answer
    (``ray.init`` would retry for a minute and end in a traceback). ``auto`` is left to Ray.

    Raises:
        RecsysError: naming the address, why it failed, and what to do instead.
    """
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RecsysError(
            f"RAY_ADDRESS={address!r}: expected host:port or ray://host:port; unset it to "
            "use a local Ray"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise RecsysError(
            f"RAY_ADDRESS={address}: no Ray cluster answers there ({exc.strerror or exc}); "
            "start it, or unset RAY_ADDRESS to use a local Ray"
        ) from None
