"""This machine's processes as /proc shows them: who listens on a port, what a pid runs and
since when, and ending one (TERM, then KILL).

A pid is only ever ended after its program and start time were checked, never by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from recsys.config import RecsysError


def listeners(port: int) -> list[int]:
    """Pids of the processes with a TCP socket listening on ``port`` (from /proc; those of
    other users stay unknown without the rights to read their descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    pids = []
    for proc in Path("/proc").iterdir() if inodes else ():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return sorted(pids)


def terminate(pid: int, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if ``pid`` still runs after ``timeout_s``.

    Raises:
        RecsysError: ``pid`` is not this user's to end.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            raise RecsysError(f"pid {pid} ({program_name(pid)}) belongs to another user") from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if start_time(pid) is None:
                return
            time.sleep(0.05)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def program_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "a process"


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot; None when it is not running (a
    zombie, already dead and waiting to be reaped, counts as not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": the comm may hold spaces
    return None if fields[0] == "Z" else int(fields[19])
