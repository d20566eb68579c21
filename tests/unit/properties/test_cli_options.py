"""Every ``recsys`` option that takes a value, found by walking the click tree (a new option is
covered the day it is added), fed any value: a clean message and a documented exit code, never a
traceback. Each command runs on inputs that fail fast (no training, Ray, Serve or KFP)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from recsys.cli.main import cli

from .files_check import run_cli
from .strategies import fuzz

# Commands that would start Ray, Serve, KFP or the network even on bad values: not run here.
SKIP = {
    "benchmark quality": "trains every baseline on MovieLens (network, minutes)",
    "data fetch": "downloads MovieLens-100k (network)",
    "deploy": "connects to Ray Serve",
    "experiment demo": "trains two models on MovieLens-100k and starts Ray Serve",
    "monitor check": "reads the registry and may start the training pipeline (kfp.local, Ray)",
    "pipeline compile": "imports kfp and writes every compiled pipeline (seconds a call)",
    "pipeline run": "runs a pipeline on kfp.local (Ray)",
    "pipeline submit": "connects to a KFP server",
    "quickstart": "the whole demo: fetch, train on Ray, serve",
    "serve start": "starts Ray and Serve",
    "serve status": "connects to Ray",
    "serve stop": "connects to Ray",
    "features apply": "runs the feast CLI in a child process (seconds a call)",
    "features materialize": "imports Feast and opens the repository's online store",
    "features get": "imports Feast and opens the repository's online store",
    "features event": "imports Feast and opens the repository's online store",
    "features training-set": "imports Feast (seconds); bad --data is covered by features build",
}
# Arguments that make a command stop before any heavy work, whatever the fuzzed option is:
# an input that does not exist, or (synth, whose inputs are all numbers) an invalid count.
MISSING = "{tmp}/no-such-input"
VALID_CSV = "{tmp}/ratings.csv"
BASE = {
    "data split": [VALID_CSV, "--out", "{tmp}/split"],
    "data synth": ["--users", "1", "--items", "1", "--interactions", "0", "--out", "{tmp}/s"],
    "data validate": [VALID_CSV],
    "evaluate": ["--recs", MISSING, "--test", MISSING],
    "experiment start": ["no-such-version", "--challenger", "v2", "--registry", "{tmp}/reg"],
    "experiment status": ["no-such-version", "--registry", "{tmp}/reg"],
    "experiment stop": ["no-such-version", "--registry", "{tmp}/reg"],
    "features build": ["--data", MISSING, "--repo", "{tmp}/repo"],
    "features init": ["--from", MISSING, "--repo", "{tmp}/repo"],
    "items add": [MISSING, "--items-dir", "{tmp}/items", "--no-push"],
    "recommend": ["--model", MISSING, "--data", MISSING, "--out", "{tmp}/r.parquet"],
    "registry history": [],
    "registry list": [],
    "registry promote": ["no-such-version"],
    "registry register": [MISSING],
    "registry rollback": [],
    "registry show": ["no-such-version"],
    "train": ["--data", MISSING, "--model", "ease", "--out", "{tmp}/m"],
}


def walk(command: click.Command, path: tuple[str, ...] = ()):
    """(command path, the options of its groups, the command) for every leaf command."""
    if isinstance(command, click.Group):  # the commands as click lists them (the CLI's lazily)
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from ((p, [command, *g], c) for p, g, c in walk(sub, (*path, name)))
    else:
        yield path, [], command


def takes_value(param: click.Parameter) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


CASES = []  # (command path, group path, the option or argument, how the group is invoked)
for path, groups, command in walk(cli):
    name = " ".join(path)
    if name in SKIP:
        continue
    assert name in BASE, f"recsys {name}: a new command; add it to BASE or SKIP with a reason"
    for level, owner in enumerate([*groups[1:], command]):
        for param in owner.params:
            if takes_value(param) and param.name != "help":
                CASES.append((path, level, param))

VALUES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
    st.sampled_from(["", " ", "nan", "-nan", "inf", "-inf", "1e309", "-0", "0", "-1", "0.5"]),
    st.integers(-(2**80), 2**80).map(str),
    st.floats().map(str),
    st.sampled_from([MISSING, "{tmp}", "{tmp}/ratings.csv", "{tmp}/ratings.csv/below", "/proc"]),
    st.text("\udc80\udcff\udce9", min_size=1, max_size=3),  # undecodable bytes in argv
).filter(lambda v: "://" not in v)  # an object store URI would reach for the network


@given(st.sampled_from(CASES), VALUES)
@fuzz(4.0)
def test_any_option_value_ends_cleanly(case, value):
    path, level, param = case
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "ratings.csv").write_text("user_id,item_id,rating,timestamp\n1,2,4,1700000000\n")
        fill = [a.format(tmp=tmp) for a in BASE[" ".join(path)]]
        value = value.format(tmp=tmp) if "{tmp}" in value else value
        given_ = [value] if isinstance(param, click.Argument) else [param.opts[-1], value]
        if isinstance(param, click.Argument):  # the argument replaces the base's own
            fill = [
                a for a in fill if a not in (MISSING.format(tmp=tmp), VALID_CSV.format(tmp=tmp))
            ]
            fill = [a for a in fill if a not in ("no-such-version",)]
        group_args = given_ if level < len(path) - 1 else []
        leaf_args = [] if group_args else given_
        args = [*path[: level + 1], *group_args, *path[level + 1 :], *fill, *leaf_args]
        if isinstance(param, click.Argument) and "--" not in fill:
            args = [*path, *fill, "--", value] if value.startswith("-") else args
        with CliRunner().isolated_filesystem(temp_dir=tmp):  # relative paths land in tmp
            run_cli(*args)
