"""Unit-test fixtures: an isolated $RECSYS_HOME, one torch thread, and one tiny fitted
multi-stage model shared by the modules that only read it."""

import pandas as pd
import pytest
import torch

from recsys.models.multistage import MultiStageConfig, MultiStageModel
from tests.helpers import TINY_MULTISTAGE, make_interactions, side_tables


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Unit tests never touch the user's cache."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "recsys-home"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add noise and contention
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_train() -> pd.DataFrame:
    return make_interactions()


@pytest.fixture(scope="session")
def tiny_multistage(tiny_train) -> MultiStageModel:
    """The tiny multi-stage model fitted on :func:`tiny_train` (never modified by a test)."""
    users, items = side_tables()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return MultiStageModel(MultiStageConfig(**TINY_MULTISTAGE)).fit(tiny_train, users, items)
    finally:
        torch.set_num_threads(threads)
