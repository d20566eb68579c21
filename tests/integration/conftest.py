"""Integration tests run the real thing: the real MovieLens-100k (cached under $RECSYS_HOME),
the installed ``recsys`` command in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys.data import movielens


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


@pytest.fixture(scope="session")
def ray_session():
    """The one local Ray of the integration session (``ensure_ray``), shut down at the end."""
    import ray

    from recsys.training.cluster import ensure_ray

    ensure_ray()
    yield ray
    ray.shutdown()
