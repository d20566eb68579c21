"""A Serve app's local processes: the local Ray it serves from, the port check before
anything starts, and the HAProxy it leaves behind when its command is killed hard.

Serve starts HAProxy as a child of its proxy actor; a killed ``recsys`` command takes its Ray
down but not that HAProxy, still on the app's port (``ray stop`` does not know it). So a local
app records the pids listening on its port (``$RECSYS_HOME/serve/local-<port>.json``); ``recsys
serve stop`` and the next local start end those of an app whose command is gone: by recorded
pid, only while it still runs ``haproxy`` with the recorded config, never by name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from recsys.config import (
    LocalRay,
    RecsysError,
    ensure_ray,
    join_ray,
    local_ray,
    quiet_ray_logging,
    recsys_home,
)
from recsys.files import read_json_model, write_json
from recsys.processes import cmdline, listeners, program_name, start_time, terminate

HAPROXY = "haproxy"


def connect(
    address: str | None = None, *, local_http: dict | None = None, log=None
) -> LocalRay | None:
    """Join ``address`` (default ``RAY_ADDRESS``, else a running local Ray; for a start, one
    only where an app of ours is recorded). When none runs and ``local_http`` (the app's
    ``http_options``) is given, start a local Ray for an app that will listen there:
    :func:`open_local`.

    Returns:
        The local Ray this process started and serves from; None on a joined cluster.
    """
    import ray

    if ray.is_initialized():
        return local_ray()
    joined = address or os.environ.get("RAY_ADDRESS") or "auto"
    if joined == "auto" and local_http is not None and not read_records():
        # Ray's "auto" joins any Ray on the machine (another user's, another app's): a start
        # joins only where an app of ours was recorded, else it starts its own.
        return open_local(local_http, log)
    try:
        join_ray(joined)
        import ray.serve  # noqa: F401  (its logger's screen handler goes to the file too)

        quiet_ray_logging()
        if local_http is not None and joined == "auto" and not _serve_running():
            check_port(local_http.get("host", "127.0.0.1"), int(local_http.get("port", 8000)))
        return None
    except ConnectionError:
        if local_http is None:
            raise RecsysError(
                "no running Ray cluster (set RAY_ADDRESS, or `ray start --head`)"
            ) from None
    return open_local(local_http, log)


def open_local(http: dict, log=None) -> LocalRay | None:
    """Make ready to serve from this process's local Ray (started if needed) on ``http``'s
    host and port: first end what an earlier local app left (``log`` hears of it) and check
    the port.

    Returns:
        The local Ray this process started; None for a Ray someone else started.

    Raises:
        RecsysError: the port is taken (naming what holds it and ``--port``).
    """
    end_stale(log)
    if not (ray_is_up() and _serve_running()):
        check_port(http.get("host", "127.0.0.1"), int(http.get("port", 8000)))
    ensure_ray()
    with warnings.catch_warnings():  # Serve's own pydantic deprecations stay off the screen
        warnings.simplefilter("ignore", DeprecationWarning)  # (whatever filter ran before)
        import ray.serve  # noqa: F401  (it adds a screen handler to its logger on import ...)

    quiet_ray_logging()  # ... which goes to the session's file with Ray's
    return local_ray()


def ray_is_up() -> bool:
    """Whether this process is connected to a Ray (without importing Ray: ray_settings first)."""
    return (ray := sys.modules.get("ray")) is not None and ray.is_initialized()


def _serve_running() -> bool:
    """Whether Serve already runs on the Ray this process is connected to."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    with contextlib.suppress(ValueError):
        return ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE) is not None
    return False


def stop(*, local_ray: bool) -> None:
    """Shut the app down: with ``local_ray`` (this process started the Ray it runs on) the
    whole local Ray with Serve and its HAProxy (one still running is ended by its recorded
    pid; stopping Ray outright also keeps the raylet's report of the Serve controller's killed
    shutdown task off the screen); otherwise Serve only, the cluster stays."""
    import ray
    from ray import serve

    if local_ray:
        ray.shutdown()
        end_own()
    else:
        serve.shutdown()


def check_local_inputs(
    model_root: Path, model_version: str, feature_repo: Path | None, catalog: Path | None
) -> None:
    """Fail before anything starts when an input the replicas read is missing."""
    if not (Path(model_root) / model_version).is_dir():
        what = "no such directory" if not Path(model_root).is_dir() else f"no {model_version}"
        raise RecsysError(f"model root {model_root}: {what}")
    if feature_repo is not None and not (Path(feature_repo) / "feature_store.yaml").exists():
        raise RecsysError(f"feature repo {feature_repo}: no feature_store.yaml there")
    if catalog is not None and not Path(catalog).exists():
        raise RecsysError(f"catalog {catalog}: no such file")


class LocalApp(BaseModel):
    """What a local Serve app started by a ``recsys`` command left running besides Ray."""

    model_config = ConfigDict(extra="forbid")

    owner_pid: int  # the recsys command that started the local Ray
    owner_start: int  # its start time (/proc/<pid>/stat), so a recycled pid is not taken for it
    host: str
    port: int
    session_dir: str  # the local Ray's session directory (its logs under logs/)
    haproxy: list[int] = []  # pids of the HAProxy processes listening on the port
    haproxy_config: str | None = None  # the config file on their command line


def record_path(port: int) -> Path:
    return recsys_home() / "serve" / f"local-{port}.json"  # the local app's record on ``port``


def check_port(host: str, port: int) -> None:
    """Fail, in one line, when the app could not listen on ``host:port``: a bind test with
    ``SO_REUSEADDR``, as a server sets it (closing connections free a port, a listener not).

    Raises:
        RecsysError: naming the port, what holds it when that can be known, and ``--port``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise RecsysError(
                    f"cannot listen on {host}:{port}: {exc.strerror}; use --host or --port to "
                    "pick another"
                ) from None
    raise RecsysError(
        f"port {port} on {host} is in use ({holder_note(port)}); use --port to pick another"
    )


def holder_note(port: int) -> str:
    """Who listens on ``port``: "by haproxy, pid 1234, left by an earlier recsys app: run
    'recsys serve stop'", "by python, pid 99", or "by another process" when it cannot be
    known (another user's process, no /proc)."""
    pids = listeners(port)
    if not pids:
        return "by another process"
    pid = pids[0]
    note = f"by {program_name(pid)}, pid {pid}"
    for app in read_records():
        if pid in app.haproxy:
            if owner_alive(app):
                return f"{note}, serving the recsys app of pid {app.owner_pid}"
            return f"{note}, left by an earlier recsys app: run 'recsys serve stop'"
    return note


def haproxy_serving(port: int, program: str = HAPROXY) -> tuple[list[int], str | None]:
    """The HAProxy processes listening on ``port`` and the config file they run with."""
    pids, config = [], None
    for pid in listeners(port):
        argv = cmdline(pid)
        if argv and Path(argv[0]).name == program and "-f" in argv[:-1]:
            pids.append(pid)
            config = argv[argv.index("-f") + 1]
    return pids, config


def record(host: str, port: int, session_dir: str) -> LocalApp:
    """Record this process's local app on ``port``, with the HAProxy processes serving it now
    (none with Serve's default proxy). Called once the app is ready, and again when the
    processes may have changed (HAProxy reloads start new ones)."""
    pids, config = haproxy_serving(port)
    app = LocalApp(
        owner_pid=os.getpid(),
        owner_start=start_time(os.getpid()) or 0,
        host=host,
        port=port,
        session_dir=session_dir,
        haproxy=pids,
        haproxy_config=config,
    )
    write_json(app.model_dump(), record_path(port))
    return app


def read_records() -> list[LocalApp]:
    """Every local app recorded on this machine (under this ``$RECSYS_HOME``)."""
    paths = sorted(record_path(0).parent.glob("local-*.json"))
    return [read_json_model(p, LocalApp, "serve records") for p in paths]


def owner_alive(app: LocalApp) -> bool:
    """Whether the command that recorded ``app`` still runs (same pid, same start time)."""
    return start_time(app.owner_pid) == app.owner_start


def end_stale(log: Callable[[str], None] | None = None, *, program: str = HAPROXY) -> list[int]:
    """End what local apps whose command is gone left running, and forget them.

    Args:
        log: told one line per process ended.
        program: the program a recorded pid must still run to be ended (only tests, with a
            stand-in process, name another).

    Returns:
        The pids ended.
    """
    ended = []
    for app in read_records():
        if not owner_alive(app):
            ended += end_app(app, log, program=program)
    return ended


def end_own() -> list[int]:
    """:func:`end_app` for the apps this process recorded (after its local Ray stopped)."""
    return [pid for app in read_records() if app.owner_pid == os.getpid() for pid in end_app(app)]


def end_app(
    app: LocalApp, log: Callable[[str], None] | None = None, *, program: str = HAPROXY
) -> list[int]:
    """End ``app``'s recorded processes that still run ``program`` with its config, then
    delete its record.

    Returns:
        The pids ended.
    """
    ended = []
    for pid in app.haproxy:
        argv = cmdline(pid)
        if not argv or Path(argv[0]).name != program or app.haproxy_config not in argv:
            continue  # gone, or the pid now belongs to another program
        terminate(pid)
        ended.append(pid)
        if log is not None:
            log(
                f"ended {program} (pid {pid}) left on port {app.port} by an earlier recsys app "
                f"(pid {app.owner_pid}; its Ray logs: {app.session_dir}/logs)"
            )
    record_path(app.port).unlink(missing_ok=True)
    return ended
