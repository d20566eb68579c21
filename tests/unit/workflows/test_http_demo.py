"""The quickstart's app start in a thread: its lines wait for the caller, its failure reaches
the caller as raised, and a caller that fails first stops what it started."""

from __future__ import annotations

import threading

import pytest

from recsys.config import RecsysError
from recsys.workflows import http_demo


def test_the_app_starts_in_a_thread_and_its_lines_wait_for_the_caller(tmp_path, monkeypatch):
    release = threading.Event()

    def start_local(model_root, version, repo, catalog, workdir, port, log):
        log(f"(logs of {version} on {port})")
        release.wait(5)
        return f"http://127.0.0.1:{port}"

    monkeypatch.setattr(http_demo, "start_local", start_local)
    app = http_demo.AppStart(tmp_path, tmp_path, "v1", None, None, port=8123)
    printed: list[str] = []
    assert app.url is None and printed == []  # still starting: nothing printed yet
    release.set()
    assert app.wait(printed.append) == "http://127.0.0.1:8123"
    assert printed == ["(logs of v1 on 8123)"] and app.ready_s >= 0


def test_a_failed_start_is_raised_to_the_caller_and_an_abandoned_one_stopped(tmp_path, monkeypatch):
    def refuse(*args):
        args[-1]("checking the port")
        raise RecsysError("port 8123 on 127.0.0.1 is in use; use --port to pick another")

    monkeypatch.setattr(http_demo, "start_local", refuse)
    printed: list[str] = []
    with pytest.raises(RecsysError, match="port 8123"):
        http_demo.AppStart(tmp_path, tmp_path, "v1", None, None, port=8123).wait(printed.append)
    assert printed == ["checking the port"]

    stopped = []
    monkeypatch.setattr(http_demo, "start_local", lambda *args: "http://127.0.0.1:8123")
    monkeypatch.setattr(http_demo, "stop", lambda local_ray: stopped.append(local_ray))
    for ours in (None, object()):  # a local Ray this process started, or none
        monkeypatch.setattr(http_demo, "local_ray", lambda ours=ours: ours)
        http_demo.AppStart(tmp_path, tmp_path, "v1", None, None).abandon()
    assert stopped == [False, True]  # Serve stopped, and the local Ray where it was ours
