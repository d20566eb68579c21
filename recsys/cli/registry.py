"""``recsys registry``: model versions and the champion pointer (list, show, promote, ...).

The registry lives at ``--registry URI``: a directory (default ``$RECSYS_REGISTRY``, else
``$RECSYS_HOME/registry``), a ``file://`` URI, or an object store (``s3://``, ``gs://``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from recsys.cli.options import open_registry
from recsys.config import RecsysError
from recsys.registry import Champion, Registry

# Metrics columns of `list`: the first manifest key present wins.
COLUMNS = (("nDCG@10", ("ndcg",)), ("coverage", ("coverage", "catalog_coverage")))


@click.group()
@click.option(
    "--registry",
    "uri",
    default=None,
    help="Registry URI or directory (default: $RECSYS_REGISTRY or $RECSYS_HOME/registry).",
)
@click.pass_context
def registry(ctx: click.Context, uri: str | None) -> None:
    """Model versions and the champion pointer that serving follows."""
    ctx.obj = open_registry(uri)


@registry.command("list")
@click.pass_obj
def list_cmd(reg: Registry) -> None:
    """A table of the versions, oldest first; * marks the champion."""
    versions = reg.versions()
    if not versions:
        raise RecsysError(
            f"the registry {reg.uri} is empty (add one: recsys registry register DIR)"
        )
    champion = reg.champion()
    header = ("version", "kind", "created", *(name for name, _ in COLUMNS))
    rows = [
        (v.version, v.kind, v.created, *(_metric(v.metrics, keys) for _, keys in COLUMNS))
        for v in versions
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    marks = [" ", *("*" if champion and champion.version == r[0] else " " for r in rows)]
    for mark, row in zip(marks, [header, *rows], strict=True):
        cells = "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
        click.echo(f"{mark} {cells}".rstrip())


@registry.command()
@click.argument("version")
@click.pass_obj
def show(reg: Registry, version: str) -> None:
    """The manifest and registry facts of VERSION (or of the word 'champion') as JSON."""
    champion = reg.champion()
    if version == "champion":
        if champion is None:
            raise RecsysError(
                f"the registry {reg.uri} has no champion yet (recsys registry promote)"
            )
        version = champion.version
    info = reg.get(version)
    is_champion = champion is not None and champion.version == version
    payload = {
        "version": version,
        "uri": info.uri,
        "registry": reg.uri,
        "champion": is_champion,
        "pointer": champion.model_dump(mode="json") if is_champion else None,
        "manifest": reg.manifest(version),
    }
    click.echo(json.dumps(payload, indent=2))


@registry.command()
@click.argument("version")
@click.option("--reason", default="", help="Why (kept in the pointer and the history).")
@click.pass_obj
def promote(reg: Registry, version: str, reason: str) -> None:
    """Make VERSION the champion."""
    before = reg.champion()
    champion = reg.promote(version, reason=reason)
    if before is not None and before.version == champion.version:
        click.echo(f"{champion.version} is already the champion")
        return
    click.echo(f"champion: {champion.version} (previous: {_name(before)})")


@registry.command()
@click.option("--reason", default="", help="Why (kept in the pointer and the history).")
@click.pass_obj
def rollback(reg: Registry, reason: str) -> None:
    """Make the previous champion the champion again."""
    before = reg.champion()
    champion = reg.rollback(reason=reason)
    click.echo(f"champion: {champion.version} (rolled back from {_name(before)})")


@registry.command()
@click.pass_obj
def history(reg: Registry) -> None:
    """Every register, promote and rollback, oldest first."""
    for e in reg.history():
        was = f" (was {e.previous})" if e.previous else ""
        why = f"  {e.reason}" if e.reason else ""
        at = e.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        click.echo(f"{at}  {e.action:<8}  {e.version}{was}{why}  [{e.host}:{e.pid}]")


@registry.command()
@click.argument("model_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--note", default="", help="Kept in the history.")
@click.option("--promote", "and_promote", is_flag=True, help="Also make it the champion.")
@click.pass_obj
def register(reg: Registry, model_dir: Path, note: str, and_promote: bool) -> None:
    """Copy MODEL_DIR (written by `recsys train`) into the registry."""
    version = reg.register(model_dir, note=note)
    click.echo(f"registered {version.version} ({version.kind}) -> {version.uri}")
    if and_promote:
        before = reg.champion()
        champion = reg.promote(version.version, reason=note or "registered with --promote")
        if before is not None and before.version == champion.version:
            click.echo(f"{champion.version} is already the champion")
        else:
            click.echo(f"champion: {champion.version} (previous: {_name(before)})")


def _metric(metrics: dict, keys: tuple[str, ...]) -> str:
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int | float):
            return f"{value:.4f}"
    return "-"


def _name(champion: Champion | None) -> str:
    return champion.version if champion else "none"
