"""Process-wide settings read from the environment, and the project's error type."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

from recsys import __version__


class RecsysError(Exception):
    """An error meant for a person: the message names the input, the field and the value.

    The CLI prints the message (no traceback) and exits with ``exit_code``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def recsys_home() -> Path:
    """The cache and work root: ``$RECSYS_HOME``, default ``~/.cache/recsys``."""
    env = os.environ.get("RECSYS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recsys"


def datasets_dir() -> Path:
    """Where fetched and generated datasets live by default."""
    return recsys_home() / "datasets"


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version plus the git commit when running from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__
