"""Shared fixtures: tiny seeded interaction tables, a private copy of the Feast repository;
the order the suite runs in on several workers (``make test``: ``pytest -n 2``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.features.store import copy_definitions
from recsys.recommend import Request, recommend_frame

# Each xdist worker starts its own local Ray (and Serve): its own temp directory keeps the
# clusters' sessions, sockets and logs apart. Subprocesses (`recsys ...`) inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", f"/tmp/ray-{os.environ['PYTEST_XDIST_WORKER']}")

# With `--dist loadscope` a module runs whole on one worker (its module fixtures built once) and
# modules are handed out in collection order: the longest first, so that two workers finish
# together (seconds measured on 2 CPUs, one worker; everything else is short and fills the gaps).
MODULE_SECONDS = {
    "tests/integration/test_cli_movielens.py": 215,
    "tests/integration/test_training_pipeline.py": 210,
    "tests/integration/test_ray_training.py": 115,
    "tests/integration/test_serving.py": 90,
    "tests/integration/test_feature_store.py": 55,
    "tests/integration/test_multistage_ray.py": 57,
}


def pytest_collection_modifyitems(items):
    root = Path(__file__).resolve().parents[1]

    def seconds(item) -> int:
        return MODULE_SECONDS.get(Path(item.fspath).relative_to(root).as_posix(), 0)

    items.sort(key=lambda item: -seconds(item))  # stable: the order inside a module is kept


def make_interactions(
    n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0
) -> pd.DataFrame:
    """Users prefer items of their own cluster, so a model has something real to learn."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for u in range(n_users):
        cluster = u % 4
        own = [i for i in range(n_items) if i % 4 == cluster]
        picks = rng.choice(own, size=min(per_user, len(own)), replace=False)
        for j, i in enumerate(picks):
            rows.append(
                (
                    f"u{u}",
                    f"i{i}",
                    float(rng.integers(1, 6)),
                    start + pd.Timedelta(hours=u * 24 + j),
                )
            )
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


@pytest.fixture
def interactions() -> pd.DataFrame:
    return make_interactions()


REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_feature_repo(dest: Path) -> Path:
    """A private copy of ``feature_repo/`` (definitions only; its data/ starts empty)."""
    return copy_definitions(REPO_ROOT / "feature_repo", dest)


def recommend_rows(model, user_ids, k: int = 10, *, history=None, exclude_seen: bool = True):
    """The one recommendation path's rows for ``user_ids``, states from ``history``."""
    return recommend_frame(
        model, user_ids, Request(k=k, exclude_seen=exclude_seen), history=history
    )
