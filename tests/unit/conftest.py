"""Unit-test fixtures: an isolated $RECSYS_HOME and one torch thread."""

import pytest
import torch


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
