"""The invariants of an interactions file, through the library and through the CLI."""

from __future__ import annotations

import traceback
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from recsys.cli.main import cli
from recsys.config import RecsysError
from recsys.data.validate import REASONS, load_interactions
from recsys.files import write_parquet

EXIT_CODES = {0, 1, 2, 3}  # README and docs/troubleshooting.md: exit codes


def check_file(path: Path, n_rows: int | None, work: Path, *, must_load: bool) -> None:
    """Validate ``path`` three times (library, CLI at 0 and at 1 allowed bad share) and check
    rows in = kept + quarantined with reasons, the exit codes, byte-identical outputs.

    Args:
        n_rows: the data rows written, when the file is readable by construction.
        must_load: the file is well formed with the required columns: no error is allowed.
    """
    try:
        clean, result = load_interactions(path, quarantine_to=work / "q0.parquet", max_bad_share=1)
    except RecsysError as exc:
        assert not must_load, f"a well-formed file was refused: {exc}"
        assert str(exc).strip()
        loaded = False
    else:
        loaded = True
        check_result(clean, result, n_rows)
    strict = run_cli("data", "validate", path, "--quarantine", work / "q1.parquet")
    lenient = run_cli(
        "data", "validate", path, "--quarantine", work / "q2.parquet", "--max-bad-share", "1"
    )
    if not loaded:
        assert strict.exit_code == lenient.exit_code == 1, strict.output + lenient.output
        assert strict.output.startswith("error: ")
        return
    bad = len(result.quarantine)
    assert strict.exit_code == (3 if bad else 0), strict.output
    assert lenient.exit_code == 0, lenient.output
    assert f"{result.n_input} rows: {len(clean)} clean, {bad} quarantined" in lenient.output
    if bad:  # the same input gives the same bytes, run after run
        q = [(work / f"q{i}.parquet").read_bytes() for i in range(3)]
        assert q[0] == q[1] == q[2]
    again, _ = load_interactions(path, quarantine_to=work / "q3.parquet", max_bad_share=1)
    a, b = write_parquet(clean, work / "c1.parquet"), write_parquet(again, work / "c2.parquet")
    assert a.read_bytes() == b.read_bytes()


def check_result(clean: pd.DataFrame, result, n_rows: int | None) -> None:
    quarantine = result.quarantine
    if n_rows is not None:
        assert result.n_input == n_rows
    assert len(clean) + len(quarantine) == result.n_input
    assert list(clean.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert str(clean["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert clean["timestamp"].notna().all() and clean["user_id"].notna().all()
    assert all(isinstance(u, str) and u for u in clean["user_id"])
    if len(quarantine):
        assert quarantine["row"].is_unique and quarantine["row"].between(0, n_rows or 1e18).all()
        for reason in quarantine["reason"]:
            assert reason and set(reason.split("; ")) <= set(REASONS), reason
    assert sum(result.counts.values()) >= len(quarantine)


def run_cli(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"recsys {' '.join(map(str, args))!r} crashed:\n{trace}")
    assert result.exit_code in EXIT_CODES, (result.exit_code, result.output)
    return result
