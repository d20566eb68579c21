"""The documentation site: its CLI reference is generated from the click commands, so it lists
every command and option that ``recsys --help`` shows; its pages are the ones mkdocs.yml names."""

from pathlib import Path

import click
import yaml
from mkdocs_click._docs import make_command_docs

from recsys.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]


def walk(group: click.Group, ctx: click.Context, path: tuple[str, ...] = ("recsys",)):
    """Every command under ``group`` with its path, as ``recsys --help`` lists them."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from walk(command, ctx, (*path, name))


def test_the_cli_reference_lists_every_command_and_option():
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert ":module: recsys.cli.main" in page and ":command: cli" in page
    # as the site renders it: mkdocs.yml's attr_list gives each heading its full command path
    assert "attr_list" in (ROOT / "mkdocs.yml").read_text()
    lines = make_command_docs("recsys", cli, depth=1, style="table", has_attr_list=True)
    markdown = "\n".join(lines)
    ctx = click.Context(cli)
    commands = list(walk(cli, ctx))
    assert len(commands) > 40  # the tree is read, not one level of it
    for path, command in commands:
        assert f"# {' '.join(path)} {{" in markdown, path
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert max(param.opts, key=len) in markdown, (path, param.opts)


def test_every_page_of_the_nav_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    named = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert named == on_disk
