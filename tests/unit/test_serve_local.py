"""The local app's processes without Ray: the port check, the record of what serves the port,
and ending what a gone app left (by recorded pid, never by name)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys import processes, serve_local
from recsys.config import RecsysError
from recsys.files import write_json

STAND_IN = "haproxy-stand-in"  # on the stand-in's command line, where haproxy has its config


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def stand_in():
    """A harmless long-running process standing in for a left-behind HAProxy."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", STAND_IN])
    yield proc
    proc.kill()
    proc.wait()


def test_a_taken_port_is_one_line_naming_the_holder_and_the_option():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RecsysError) as err:
            serve_local.check_port("127.0.0.1", port)
        assert processes.listeners(port) == [os.getpid()]
    name = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert str(err.value) == (
        f"port {port} on 127.0.0.1 is in use (by {name}, pid {os.getpid()}); "
        "use --port to pick another"
    )
    serve_local.check_port("127.0.0.1", port)  # closed: free again


def test_a_wildcard_app_sees_a_loopback_listener_and_the_holder_of_a_record_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(RecsysError, match=f"port {port} on 0.0.0.0 is in use"):
            serve_local.check_port("0.0.0.0", port)
        gone = serve_local.LocalApp(
            owner_pid=os.getpid(),
            owner_start=1,
            host="127.0.0.1",
            port=port,
            session_dir="/tmp/ray/s",
            haproxy=[os.getpid()],
            haproxy_config="x",
        )
        write_json(gone.model_dump(), serve_local.record_path(port))
        note = serve_local.holder_note(port)
    assert note.endswith("left by an earlier recsys app: run 'recsys serve stop'")


def test_a_port_with_only_closing_connections_is_free():
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        conn.close()  # the server side closes first: its end waits in TIME_WAIT
        client.close()
    serve_local.check_port("127.0.0.1", port)


def record_stand_in(pid: int, *, owner_pid: int, owner_start: int, port: int = 18000) -> None:
    app = serve_local.LocalApp(
        owner_pid=owner_pid,
        owner_start=owner_start,
        host="127.0.0.1",
        port=port,
        session_dir="/tmp/ray/session_x",
        haproxy=[pid],
        haproxy_config=STAND_IN,
    )
    write_json(app.model_dump(), serve_local.record_path(port))


def test_what_a_gone_app_left_is_ended_by_its_recorded_pid(stand_in):
    program = Path(sys.executable).name  # the stand-in runs python, not haproxy
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    record_stand_in(stand_in.pid, owner_pid=int(dead.stdout), owner_start=1)
    lines = []
    assert serve_local.end_stale(lines.append, program=program) == [stand_in.pid]
    assert stand_in.wait(timeout=10) == -15  # SIGTERM was enough
    assert len(lines) == 1 and f"(pid {stand_in.pid}) left on port 18000" in lines[0]
    assert serve_local.read_records() == []


def test_the_real_check_never_takes_another_program_for_haproxy(stand_in):
    record_stand_in(stand_in.pid, owner_pid=999_999_999, owner_start=1)
    assert serve_local.end_stale() == []  # default: only `haproxy` with the recorded config
    assert stand_in.poll() is None
    assert serve_local.read_records() == []  # the record of a gone app is forgotten


def test_a_live_apps_processes_and_a_recycled_pid_are_left_alone(stand_in):
    program = Path(sys.executable).name
    me = os.getpid()
    record_stand_in(stand_in.pid, owner_pid=me, owner_start=processes.start_time(me))
    assert serve_local.end_stale(program=program) == []  # its app still runs
    assert stand_in.poll() is None and len(serve_local.read_records()) == 1

    other = serve_local.LocalApp.model_validate(
        {**serve_local.read_records()[0].model_dump(), "haproxy_config": "/tmp/other.cfg"}
    )  # the pid now runs something else: not the recorded config
    assert serve_local.end_app(other, program=program) == []
    assert stand_in.poll() is None


def test_terminate_kills_what_ignores_sigterm():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"  # noqa: E501
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    proc.stdout.readline()  # the handler is in place
    t0 = time.monotonic()
    serve_local.terminate(proc.pid, timeout_s=0.5)
    assert proc.wait(timeout=10) == -9 and time.monotonic() - t0 < 5


def test_inputs_the_replicas_read_are_checked_before_anything_starts(tmp_path):
    with pytest.raises(RecsysError, match=f"model root {tmp_path / 'none'}: no such directory"):
        serve_local.check_local_inputs(tmp_path / "none", "v1", None, None)
    (tmp_path / "models" / "v1").mkdir(parents=True)
    with pytest.raises(RecsysError, match="no v2"):
        serve_local.check_local_inputs(tmp_path / "models", "v2", None, None)
    with pytest.raises(RecsysError, match=f"feature repo {tmp_path}: no feature_store.yaml"):
        serve_local.check_local_inputs(tmp_path / "models", "v1", tmp_path, None)
