"""The docs' picture of an Evidently report: the demo's, shot with headless Chromium.

``make demo`` writes the training pipeline's Evidently report (the candidate against the
champion on the held-out users) under its workdir; this script finds the newest one (or takes
``--report``), lets Chromium run the report's scripts, and writes
``docs/img/evidently_report.png``. Where Chromium is not installed (Debian: ``apt-get install
chromium``) it says so and exits 1; the committed picture stays as it was.

    python -m benchmarks.docs_screenshot [--report PATH] [--width 1280 --height 1600]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from recsys.config import RecsysError, recsys_home

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "evidently_report.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
# Evidently's report draws its widgets with JavaScript after the page loads.
RENDER_BUDGET_MS = 15_000


def newest_report(home: Path) -> Path:
    """The newest ``report.html`` of a quickstart run under ``home``."""
    found = sorted(
        (home / "runs" / "quickstart").rglob("report.html"), key=lambda p: p.stat().st_mtime
    )
    if not found:
        raise RecsysError(
            f"no Evidently report under {home / 'runs' / 'quickstart'}: run `make demo` first, "
            "or name one with --report"
        )
    return found[-1]


def browser() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    raise RecsysError("no Chromium on PATH: install it (Debian: apt-get install chromium)")


def shoot(report: Path, out: Path, width: int, height: int) -> Path:
    """Chromium's screenshot of ``report`` at ``width`` x ``height``, written to ``out``
    whole or not at all."""
    if not report.is_file():
        raise RecsysError(f"--report: {report} is not a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / out.name
        cmd = [
            browser(),
            "--headless",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp}/profile",
            f"--virtual-time-budget={RENDER_BUDGET_MS}",
            f"--window-size={width},{height}",
            f"--screenshot={shot}",
            report.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not shot.is_file():
            raise RecsysError(f"Chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        shutil.move(shot, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", type=Path, default=None, help="an Evidently HTML report")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=1600)
    args = p.parse_args(argv)
    try:
        report = args.report or newest_report(recsys_home())
        print(f"{shoot(report, args.out, args.width, args.height)} <- {report}")
    except RecsysError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
