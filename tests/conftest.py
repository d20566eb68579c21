"""Shared fixtures: tiny seeded interaction tables, a private copy of the Feast repository;
the order the suite runs in on several workers (``make test``: ``pytest -n 2``)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import make_interactions

# Each xdist worker starts its own local Ray (and Serve): its own temp directory keeps the
# clusters' sessions, sockets and logs apart. Subprocesses (`recsys ...`) inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray-{os.environ['PYTEST_XDIST_WORKER']}")

# With `--dist loadscope` a module runs whole on one worker (its module fixtures built once) and
# modules are handed out in collection order: the longest first, so that two workers finish
# together (each module's seconds in a fresh clone's `make test`; the rest is short and fills gaps).
MODULE_SECONDS = {
    "tests/integration/test_training_pipeline.py": 305,
    "tests/integration/test_cli_movielens.py": 295,
    "tests/integration/test_ray_training.py": 160,
    "tests/integration/test_feature_store.py": 150,
    "tests/integration/test_serving.py": 100,
    "tests/integration/test_multistage_ray.py": 30,
}


def pytest_collection_modifyitems(items):
    root = Path(__file__).resolve().parents[1]

    def seconds(item) -> int:
        return MODULE_SECONDS.get(Path(item.fspath).relative_to(root).as_posix(), 0)

    items.sort(key=lambda item: -seconds(item))  # stable: the order inside a module is kept


@pytest.fixture
def interactions() -> pd.DataFrame:
    return make_interactions()
