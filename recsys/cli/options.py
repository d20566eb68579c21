"""Click options that several ``recsys`` commands take, declared once so that a flag means
the same (type, default, help) wherever it appears; and the parser of ``--param KEY=VALUE``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from recsys.config import RecsysError
from recsys.features.repository import YAML
from recsys.registry import Registry
from recsys.registry.store import ROLLOUTS


class Number(click.FloatRange):
    """A float that is a number: click's own float and range types take ``nan`` (every range
    check is false for it) and hand it on to code that expects a number."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()


SHARE = Number(0.0, 1.0)  # a share of rows, or of anything: 0..1

repo_option = click.option(
    "--repo",
    type=click.Path(path_type=Path),
    default=None,
    help="Feast repository (default: $RECSYS_FEATURE_REPO or ./feature_repo).",
)
online_option = click.option(
    "--online",
    type=click.Choice(sorted(YAML)),
    default=None,
    help="Online store (default: $RECSYS_FEAST_ONLINE or sqlite); redis needs "
    "REDIS_CONNECTION_STRING.",
)


def path_option(*decls: str, **kwargs: Any):
    """A ``click.Path`` option whose value is a :class:`~pathlib.Path` (``None`` unless
    ``required`` or a default is given)."""
    kwargs.setdefault("default", None)
    return click.option(*decls, type=click.Path(path_type=Path), **kwargs)


def workdir_option(help: str):  # noqa: A002 - click's own name for it
    """``--workdir``: where a run writes; ``help`` names the default."""
    return path_option("--workdir", help=help)


k_option = click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
registry_option = click.option(
    "--registry",
    "registry_uri",
    default=None,
    help="Registry URI (default: $RECSYS_REGISTRY or $RECSYS_HOME/registry).",
)
gpu_option = click.option(
    "--gpu",
    is_flag=True,
    help="Train neural models on CUDA through Ray Train (bfloat16 mixed precision).",
)
num_workers_option = click.option(
    "--num-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ray Train workers per model, data-parallel (with 1, a run of several models, as "
    "the multi-stage model's two-towers, trains them side by side on the free CPUs).",
)


def rollout_option(default: str, help: str):  # noqa: A002 - click's own name for it
    """``--rollout switch|experiment``: how a gated version is deployed."""
    return click.option(
        "--rollout", type=click.Choice(ROLLOUTS), default=default, show_default=True, help=help
    )


def param_option(help: str):  # noqa: A002 - click's own name for it
    """``--param KEY=VALUE``, repeatable, into the ``params`` argument (see
    :func:`parse_params`)."""
    return click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help=help)


def parse_params(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs; values parse as JSON when they can (numbers, booleans); a dotted
    key sets a field of a nested setting (``two_tower.index.precision=int8``)."""
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        path = key.split(".")
        if not sep or not all(path):
            raise RecsysError(f"--param {pair!r}: expected key=value (key: name or a.b.name)")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        target = params
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RecsysError(f"--param {pair!r}: {part} is already set to a value")
        target[path[-1]] = parsed
    return params


def open_registry(uri: str | None) -> Registry:
    """The registry ``--registry`` names (default ``$RECSYS_REGISTRY``, else
    ``$RECSYS_HOME/registry``), its URI checked before any command reads it."""
    if uri is not None and not uri.strip():
        raise click.BadParameter("an empty registry URI", param_hint="--registry")
    try:
        registry = Registry(uri)
    except RuntimeError as exc:  # "~nobody/...": Path.expanduser knows no such user
        raise click.BadParameter(f"{uri}: {exc}", param_hint="--registry") from exc
    if "://" not in registry.uri:  # a local registry is a directory, or a path one can become
        root = Path(registry.uri)
        existing = next((p for p in (root, *root.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise RecsysError(f"registry {root}: {existing} is not a directory")
    return registry
