"""The ``recsys`` command. Each noun lives in its own module; this one wires them together.

Exit codes: 0 success; 1 an error in the input or the operation (the message says which file,
row, field or value); 2 a usage error (unknown option, bad flag value); 3 validation found more
bad rows than allowed.
"""

from __future__ import annotations

import io
import logging
import os
import sys

import click

from recsys import __version__
from recsys.cli import (
    benchmark,
    data,
    evaluate,
    features,
    monitor,
    pipeline,
    quickstart,
    recommend,
    registry,
    serve,
    train,
)
from recsys.config import RecsysError


class RecsysGroup(click.Group):
    """A click group that turns :class:`RecsysError` (and an ``OSError``: a path the system
    refuses) into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RecsysError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path the system refuses: unwritable, missing, not a folder
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            ctx.exit(1)


@click.group(cls=RecsysGroup)
@click.version_option(__version__, prog_name="recsys")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """recsys-platform: from raw interactions to a monitored recommender service."""
    os.environ.setdefault("FEAST_USAGE", "False")
    for stream in (sys.stdout, sys.stderr):
        # a path from argv with bytes the locale cannot decode is printed back as those bytes
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="surrogateescape")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


for command in (
    data.data,
    features.features,
    train.train,
    recommend.recommend,
    evaluate.evaluate,
    benchmark.benchmark,
    quickstart.quickstart,
    serve.serve,
    serve.deploy_cmd,
    pipeline.pipeline,
    monitor.monitor,
    registry.registry,
):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="recsys", standalone_mode=True))


if __name__ == "__main__":
    main()
