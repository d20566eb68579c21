"""``python -m recsys.features.feast_cli ARGS``: Feast's own CLI with typeguard's checks of
the definitions off (importing :mod:`recsys.features` first turns them off), for definitions
that passed a checked apply before (:func:`recsys.features.repository.apply_command`)."""

from feast.cli.cli import cli

if __name__ == "__main__":
    cli()
