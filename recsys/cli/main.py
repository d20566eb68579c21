"""The ``recsys`` command. Each noun lives in its own module; this one wires them together,
importing a noun's module when that noun is run (``recsys registry list`` need not import
torch or the KFP client).

Exit codes: 0 success; 1 an error in the input or the operation (the message says which file,
row, field or value); 2 a usage error (unknown option, bad flag value); 3 validation found more
bad rows than allowed.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import sys

import click

from recsys import __version__
from recsys.config import RecsysError

# The commands: name -> "module:attribute" (each module imported on first use).
COMMANDS = {
    "data": "recsys.cli.data:data",
    "features": "recsys.cli.features:features",
    "train": "recsys.cli.train:train",
    "recommend": "recsys.cli.recommend:recommend",
    "items": "recsys.cli.items:items",
    "evaluate": "recsys.cli.evaluate:evaluate",
    "benchmark": "recsys.cli.benchmark:benchmark",
    "quickstart": "recsys.cli.quickstart:quickstart",
    "serve": "recsys.cli.serve:serve",
    "deploy": "recsys.cli.serve:deploy_cmd",
    "pipeline": "recsys.cli.pipeline:pipeline",
    "monitor": "recsys.cli.monitor:monitor",
    "registry": "recsys.cli.registry:registry",
    "experiment": "recsys.cli.experiment:experiment",
}


class RecsysGroup(click.Group):
    """A click group that turns :class:`RecsysError` (and an ``OSError``: a path the system
    refuses) into a one-line message and an exit code; its commands are :data:`COMMANDS`,
    each loaded when it is first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMANDS:
            module, attribute = COMMANDS[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return self.commands.get(name)

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


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(prog_name="recsys", standalone_mode=True))


if __name__ == "__main__":
    main()
