"""Values the option fuzzer (tests/unit/properties/test_cli_options.py) found crashing the CLI:
each ends in a message and a documented exit code now."""

import pytest
from click.testing import CliRunner

from recsys.cli.main import cli

CSV = "user_id,item_id,rating,timestamp\n1,2,4,1700000000\n1,3,9,1700000000\n"


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(CSV)
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_numpy_refuses_is_a_usage_error(csv_path, tmp_path, seed):
    r = invoke("data", "split", csv_path, "--out", tmp_path / "s", "--seed", seed)
    assert r.exit_code == 2 and "--seed" in r.output and r.exception.__class__ is SystemExit


def test_a_file_as_the_registry_names_it(csv_path):
    r = invoke("registry", "--registry", csv_path, "list")
    assert r.exit_code == 1 and "is not a directory" in r.output
    r = invoke("registry", "--registry", "", "list")
    assert r.exit_code == 2 and "--registry" in r.output
    r = invoke("registry", "--registry", "~0", "list")  # no user "0": RuntimeError before
    assert r.exit_code == 2 and "home directory" in r.output


def test_a_directory_as_the_quarantine_file_names_it(csv_path, tmp_path):
    r = invoke("data", "validate", csv_path, "--quarantine", tmp_path, "--max-bad-share", "1")
    assert r.exit_code == 1 and f"{tmp_path}: cannot be written" in r.output


def test_an_undecodable_file_name_is_written_and_printed(csv_path, tmp_path):
    """argv bytes the locale cannot decode arrive as surrogate escapes; pyarrow and the
    output stream both refused them."""
    out = tmp_path / "q-\udcff.parquet"
    r = invoke("data", "validate", csv_path, "--quarantine", out, "--max-bad-share", "1")
    assert r.exit_code == 0, r.output
    assert out.exists()


@pytest.mark.parametrize("option", ["--rating-min", "--rating-max", "--max-bad-share"])
def test_nan_is_not_a_number_for_any_float_option(csv_path, option):
    r = invoke("data", "validate", csv_path, option, "NaN")
    assert r.exit_code == 2 and "'NaN' is not a number" in r.output, r.output


def test_nan_share_of_bad_rows_for_train_is_a_usage_error(tmp_path):
    """FloatRange(0, 1) took NaN; TrainArgs then raised a pydantic ValidationError."""
    r = invoke(
        "train",
        "--data",
        tmp_path / "x",
        "--model",
        "ease",
        "--out",
        tmp_path / "m",
        "--max-bad-share",
        "NAN",
    )
    assert r.exit_code == 2 and "--max-bad-share" in r.output, r.output


def test_a_registry_where_nothing_can_be_written_names_the_path():
    """``registry --registry /proc rollback`` raised FileNotFoundError from the lock file."""
    r = invoke("registry", "--registry", "/proc", "rollback")
    assert r.exit_code == 1 and r.output.startswith("error: /proc"), r.output
