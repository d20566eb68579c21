"""`recsys serve start` on a taken port: one line, exit code 1, nothing started."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from recsys import processes


@pytest.mark.integration
def test_serve_start_on_a_taken_port_says_so_in_one_line_and_starts_nothing(
    run_cli, tmp_path, monkeypatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local start, as on a newcomer's machine
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))  # no records of other runs
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        t0 = time.monotonic()
        proc = run_cli("serve", "start", "--host", "127.0.0.1", "--port", port, check=False)
        took = time.monotonic() - t0
        holders = processes.listeners(port)
    assert proc.returncode == 1
    assert proc.stdout == ""
    name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert proc.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (by {name}, pid {os.getpid()}); "
        "use --port to pick another"
    ]
    assert holders == [os.getpid()]  # only the test's socket: no proxy, no Ray was started
    assert took < 30, took  # it failed before starting Ray (a local Ray takes ~10 s)
    assert processes.listeners(port) == []
    assert not list((tmp_path / "serve").glob("local-*.json"))
