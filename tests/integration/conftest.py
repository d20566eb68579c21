"""Integration tests run the real thing: the real MovieLens-100k (cached under $RECSYS_HOME),
the installed ``recsys`` command in a subprocess (``run_cli``), or the same click command in
this process (``cli_here``: no interpreter start and imports per call)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.config import free_port
from recsys.data import movielens

# Serve with HAProxy keeps a removed replica serving for at least 30 s (its drain period), so
# that a proxy which has not yet dropped it fails no request. These tests replace replicas and
# shut Serve down with no traffic in flight (a switch under load keeps its replicas): a short
# drain keeps that wait out of the suite. Users' apps keep Serve's default.
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The verified MovieLens-100k dataset directory (fetched on the first run)."""
    return movielens.fetch()


@pytest.fixture(scope="session")
def recsys_cmd() -> list[str]:
    exe = shutil.which("recsys", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "recsys.cli.main"]


@pytest.fixture
def run_cli(recsys_cmd):
    def run(*args, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        env = {**os.environ, "FEAST_USAGE": "False"}
        proc = subprocess.run(
            [*recsys_cmd, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"recsys {args} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def cli_here():
    """``recsys ARGS`` run by click in this process; answers as ``run_cli`` does (a completed
    process: exit code, stdout, stderr). What a command sets in the environment (the offline
    engine) is undone after it."""

    def run(*args, check: bool = True) -> subprocess.CompletedProcess:
        runner = CliRunner(env={"RECSYS_OFFLINE_ENGINE": None, "FEAST_USAGE": "False"})
        result = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        proc = subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"recsys {args} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def ray_session():
    """The one local Ray of the integration session (``ensure_ray``), shut down at the end."""
    import ray

    from recsys.config import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real Redis on 127.0.0.1 for the session: ``host:port``. Skips locally without
    ``redis-server``; fails instead where ``RECSYS_REQUIRE_REDIS=1`` (``.ci/run`` sets it)."""
    exe = shutil.which("redis-server")
    if exe is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("RECSYS_REQUIRE_REDIS") == "1":
            pytest.fail(reason + "; RECSYS_REQUIRE_REDIS=1 demands it")
        pytest.skip(reason)
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on 127.0.0.1:{port}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
