import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Unit tests never touch the user's cache."""
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "recsys-home"))
