"""The documentation site: its CLI reference is generated from the click commands, so it lists
every command and option that ``recsys --help`` shows; its pages are the ones mkdocs.yml names;
the README stays a short entry page whose links all lead somewhere."""

import re
from pathlib import Path

import click
import yaml
from mkdocs_click._docs import make_command_docs

from benchmarks import docs_tables
from recsys.cli.main import cli

ROOT = Path(__file__).resolve().parents[3]
README_MAX_LINES = 250


class MkDocsLoader(yaml.SafeLoader):
    """mkdocs.yml as data: its ``!!python/name:`` tags (Material's custom fences name a
    function) read as the name, nothing imported."""


MkDocsLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda _, suffix, node: suffix)


def mkdocs_config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=MkDocsLoader)


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
    config = mkdocs_config()

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    named = set(pages(config["nav"]))
    docs = ROOT / "docs"
    on_disk = {str(p.relative_to(docs)) for p in docs.rglob("*.md")}
    assert named == {p for p in on_disk if not p.startswith("_tables/")}


def test_every_table_in_the_docs_is_its_results_files_rendering(tmp_path):
    """The committed tables are what benchmarks/docs_tables.py renders from the results; every
    one is included by a page, and every include names one."""
    assert docs_tables.stale() == [], "run: python -m benchmarks.docs_tables"
    tables = {p.name for p in docs_tables.TABLES.glob("*.md")}
    assert tables == set(docs_tables.rendered()) and len(tables) >= 20
    included = set()
    for page in (ROOT / "docs").rglob("*.md"):
        for line in page.read_text().splitlines():
            if line.startswith("--8<--"):
                included.add(line.split('"')[1])
    assert included == tables
    # a results file changed after its table was rendered: found, and named
    (tmp_path / "history_bag.md").write_text("| an old figure |\n")
    assert "history_bag.md" in docs_tables.stale(tmp_path)


def test_a_table_names_when_where_and_at_which_code_it_was_recorded():
    result = {
        "when": "2026-12-07T19:06:09+00:00",
        "code_version": "0.1.0+gabc1234",
        "machine": {"cpus": 2, "accelerator": "NVIDIA H100"},
        "table_markdown": "| a |\n|---|\n| 1 |\n",
    }
    text = docs_tables.render(result, "x")
    assert text.splitlines()[0] == (
        "*Recorded 2026-12-07T19:06:09+00:00 on 2 CPUs, NVIDIA H100, code 0.1.0+gabc1234 "
        "(`benchmarks/results/x.json`).*"
    )
    assert text.endswith("| a |\n|---|\n| 1 |\n")
    runs = {"runs": [{"when": "w1"}, {"when": "w2", "code_version": "v2"}], "table_markdown": "|b|"}
    assert "Recorded w2 on an unrecorded machine, code v2" in docs_tables.render(runs, "y")
    assert docs_tables.render({"rows": []}, "z") is None


def test_the_mermaid_fence_is_configured_as_material_documents_it():
    extensions = mkdocs_config()["markdown_extensions"]
    superfences = next(e for e in extensions if isinstance(e, dict) and "pymdownx.superfences" in e)
    fences = superfences["pymdownx.superfences"]["custom_fences"]
    assert {"name": "mermaid", "class": "mermaid"}.items() <= fences[0].items()
    assert fences[0]["format"] == "pymdownx.superfences.fence_code_format"


# [text](target) outside code: the target up to a space (a title) or the closing parenthesis
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def readme_links(text: str) -> list[str]:
    """The link targets of a markdown text, outside fenced code blocks and code spans."""
    links, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            links += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return links


def test_the_readme_is_short_and_every_relative_link_in_it_leads_to_a_file():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, "move the detail into a page under docs/"
    links = readme_links(text)
    relative = [t for t in links if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert len(relative) >= 15  # the pages are linked, not only named
    missing = [t for t in relative if not (ROOT / t.split("#")[0]).is_file()]
    assert missing == []
    # every page of the site is reachable from the README (the site's home is the README's twin)
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    pages -= {"docs/index.md"} | {p for p in pages if p.startswith("docs/_tables/")}
    assert pages <= {t.split("#")[0] for t in relative}


def test_readme_links_are_read_as_a_reader_follows_them():
    text = "see [a](docs/a.md#x) and [b](https://x.org) `[c](no.md)`\n```\n[d](no.md)\n```\n"
    assert readme_links(text) == ["docs/a.md#x", "https://x.org"]
