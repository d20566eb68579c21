"""Every benchmark table of the docs, rendered from ``benchmarks/results/*.json``.

Each results file that records its table (``table_markdown``) becomes
``docs/_tables/<name>.md``: the table under one line that says when, on what machine and at
which code version it was recorded. The pages include these files (``--8<-- "<name>.md"``,
pymdownx.snippets), so a figure in the docs is always the recorded one; a test fails when a
committed file differs from what this script renders.

    python -m benchmarks.docs_tables [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TABLES = ROOT / "docs" / "_tables"


def provenance(result: dict) -> dict:
    """When, where and at which code version a results file was recorded (a file of appended
    runs: its last run's)."""
    last = (result.get("runs") or [{}])[-1]
    return {key: result.get(key) or last.get(key) for key in ("when", "machine", "code_version")}


def render(result: dict, name: str) -> str | None:
    """The snippet of one results file, or None where it records no table."""
    table = result.get("table_markdown")
    return _snippet(table, provenance(result), name) if table else None


def _snippet(table: str, where: dict, name: str) -> str:
    machine = where["machine"] or {}
    cpus = f"{machine['cpus']} CPUs" if machine.get("cpus") else "an unrecorded machine"
    accelerator = f", {machine['accelerator']}" if machine.get("accelerator") else ""
    line = (
        f"*Recorded {where['when'] or 'at an unrecorded time'} on {cpus}{accelerator}, "
        f"code {where['code_version'] or 'unrecorded'} (`benchmarks/results/{name}.json`).*"
    )
    return f"{line}\n\n{table.strip()}\n"


def rendered() -> dict[str, str]:
    """File name → contents, for every results file with a table: ``<name>.md``, and
    ``<name>_<table>.md`` for each of its other tables (``tables_markdown``: each with the
    provenance of the run it reads)."""
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        text = render(result, path.stem)
        if text is not None:
            out[f"{path.stem}.md"] = text
        for table, entry in (result.get("tables_markdown") or {}).items():
            out[f"{path.stem}_{table}.md"] = _snippet(entry["markdown"], entry, path.stem)
    return out


def stale(directory: Path = TABLES) -> list[str]:
    """The snippet files that differ from a fresh rendering, are missing, or are left over."""
    return differing(rendered(), directory, "*.md")


def differing(want: dict[str, str], directory: Path, pattern: str) -> list[str]:
    """The files of ``want`` (name -> text) that ``directory`` lacks or holds otherwise, and
    its ``pattern`` files that ``want`` does not name."""
    have = {p.name: p.read_text() for p in directory.glob(pattern)} if directory.is_dir() else {}
    return sorted(name for name in set(want) | set(have) if want.get(name) != have.get(name))


def sync(want: dict[str, str], directory: Path, pattern: str, check: bool, command: str) -> int:
    """Write ``want`` into ``directory`` (its other ``pattern`` files removed); with ``check``,
    only name the files that differ (exit status 1 where any does)."""
    names = differing(want, directory, pattern)
    where = directory.relative_to(ROOT)
    if check:
        for name in names:
            print(f"stale: {where}/{name} (run: {command})")
        return 1 if names else 0
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(pattern):
        if old.name not in want:
            old.unlink()
    for name, text in want.items():
        (directory / name).write_text(text)
    print(f"{len(want)} files -> {where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 where a file is stale")
    args = p.parse_args(argv)
    return sync(rendered(), TABLES, "*.md", args.check, "python -m benchmarks.docs_tables")


if __name__ == "__main__":
    sys.exit(main())
