"""The layers of ``../shared/ARCHITECTURE.md`` as data: a module imports only its own layer and
the layers below it, directly or through any chain of imports, and imports the project's
modules at the top of the file.

Read statically (``ast``): no module is imported, so the test is fast and sees function-level
imports too.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("recsys", "pipelines", "serving", "benchmarks")

# Layer -> what it may import besides itself (ARCHITECTURE.md's table, "may import"); what a
# listed layer may import comes with it. ``recsys.config`` and ``recsys.files`` are the ground
# every layer stands on, and so is the package root itself (``recsys``: ``__version__``);
# ``recsys.ndcg`` too: the evaluation reports it and the models validate by it; and
# ``recsys.processes`` (this machine's processes from /proc), which the local app reads.
# No row names a single module of another layer but the registry's (the Manifest only).
GROUND = ("recsys.config", "recsys.files", "recsys.ndcg", "recsys.processes")
PACKAGE_ROOT = "recsys"
APPLICATION = ("recsys.workflows",)  # the application layer
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "recsys.data": (),
    "recsys.state": ("recsys.data",),
    "recsys.content": ("recsys.data",),
    "recsys.retrieval": (),
    "recsys.features": ("recsys.data", "recsys.state", "recsys.content"),
    "recsys.models": ("recsys.data", "recsys.state", "recsys.content", "recsys.retrieval"),
    "recsys.recommend": ("recsys.models", "recsys.state"),
    "recsys.training": ("recsys.models", "recsys.features"),
    "recsys.evaluation": ("recsys.recommend", "recsys.data"),
    "recsys.registry": ("recsys.models.manifest",),  # the Manifest only
    "recsys.experiments": ("recsys.evaluation", "recsys.registry"),
    "recsys.monitoring": ("recsys.evaluation", "recsys.registry", "recsys.experiments"),
    # the Serve config; beneath it, the local Ray and proxy lifecycle it starts and stops
    "recsys.serve_local": (),
    "recsys.serve_ops": ("recsys.registry", "recsys.serve_local"),
    **dict.fromkeys(APPLICATION, ("recsys.serve_ops", "recsys.monitoring", "recsys.training")),
    "recsys.cli": (*APPLICATION, "pipelines"),
    "pipelines": APPLICATION,
    "serving": APPLICATION,
    "benchmarks": ("recsys.cli", "serving"),
}
# A function-level project import is allowed only where the framework requires it: a KFP
# lightweight component runs its body alone in the task's container; and where it is timed:
# ``recsys train`` imports what trains while the Ray it started in the background comes up.
FUNCTION_LEVEL_ALLOWED = {"pipelines/components.py", "recsys/cli/train.py"}


def layer_of(module: str) -> str:
    """The longest row of the table ``module`` falls under (the package root: its own)."""
    rows = [row for row in (*MAY_IMPORT, *GROUND) if module == row or module.startswith(row + ".")]
    return max(rows, key=len) if rows else module


@cache
def reachable(row: str) -> frozenset[str]:
    """Every prefix ``row`` may import: its own, its listed rows and theirs, the ground."""
    out = {row, *GROUND}
    for below in MAY_IMPORT.get(row, ()):
        out |= {below} if below not in MAY_IMPORT else reachable(below)
    return frozenset(out)


def allowed(source: str, target: str) -> bool:
    if target == PACKAGE_ROOT:
        return True
    return any(target == p or target.startswith(p + ".") for p in reachable(layer_of(source)))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def is_module(name: str) -> bool:
    """Whether ``name`` is one of the project's modules or packages (a file, not a name in one)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module imported, line, inside a function)`` for every import of the project; a name
    imported from a package that is itself a module counts as that module
    (``from recsys import training`` imports ``recsys.training``)."""
    module = module_of(path)
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    package = module.split(".")[: -child.level or None]
                    if path.name == "__init__.py":
                        package = module.split(".")[: len(module.split(".")) - child.level + 1]
                    base = ".".join([*package, base] if base else package)
                subs = [f"{base}.{a.name}" for a in child.names]
                names = [s if is_module(s) else base for s in subs]
            for name in dict.fromkeys(names):
                if name.split(".")[0] in PACKAGES:
                    found.append((name, child.lineno, in_function))
            visit(child, nested)

    visit(ast.parse(path.read_text()), False)
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@cache
def import_graph() -> dict[str, frozenset[str]]:
    """Every module of the project -> the project modules it imports."""
    return {module_of(p): frozenset(t for t, _, _ in project_imports(p)) for p in modules()}


def upward_reaches(
    source: str,
    graph: Mapping[str, Iterable[str]],
    may: Callable[[str, str], bool] = allowed,
) -> list[str]:
    """The modules ``source`` reaches through any chain of imports that it may not import,
    each with the chain that reaches it.

    Importing ``a.b.c`` runs the packages ``a`` and ``a.b`` first: their imports are followed
    too (a package is passed through, not itself checked: its ``__init__`` runs its imports).
    """
    chains = {source: [source]}
    checked: set[str] = set()
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for target in graph.get(node, ()):
            checked.add(target)
            parts = target.split(".")
            packages = [".".join(parts[:i]) for i in range(1, len(parts))]
            for step in (*(p for p in packages if p in graph), target):
                if step not in chains:
                    chains[step] = [*chains[node], step]
                    queue.append(step)
    return [
        " → ".join(chains[m]) + f" ({layer_of(m)})"
        for m in sorted(checked)
        if m in chains and not may(source, m)
    ]


def test_the_table_covers_every_module():
    rows = (*MAY_IMPORT, *GROUND)
    for path in modules():
        module = module_of(path)
        covered = module == PACKAGE_ROOT or any(
            module == row or module.startswith(row + ".") for row in rows
        )
        assert covered, f"{path.relative_to(ROOT)} is in no layer of the table"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_its_layer_and_those_below(path):
    source = module_of(path)
    wrong = [
        f"line {line}: {target} ({layer_of(target)}) from {layer_of(source)}"
        for target, line, _ in project_imports(path)
        if not allowed(source, target)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports upward: " + "; ".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_reaches_nothing_above_it_through_its_imports(path):
    wrong = upward_reaches(module_of(path), import_graph())
    assert not wrong, f"{path.relative_to(ROOT)} reaches upward: " + "; ".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_project_imports_are_at_the_top(path):
    relative = path.relative_to(ROOT).as_posix()
    inside = [f"line {line}: {target}" for target, line, fn in project_imports(path) if fn]
    assert relative in FUNCTION_LEVEL_ALLOWED or not inside, (
        f"{relative} imports the project inside a function: " + "; ".join(inside)
    )


def test_the_checker_catches_an_upward_import():
    assert not allowed("recsys.models.ease", "recsys.training.train")
    assert not allowed("recsys.models.base", "recsys.features.build")
    assert not allowed("recsys.recommend.stages", "recsys.features.online")
    assert not allowed("recsys.state.user", "recsys.features.build")
    assert not allowed("recsys.registry.store", "recsys.models.kinds")
    assert not allowed("recsys.evaluation.protocol", "recsys.registry")
    assert not allowed("recsys.data.io", "recsys.state.user")
    assert not allowed("serving.app", "pipelines.client")
    assert not allowed("recsys.workflows.loop", "pipelines.client")
    assert allowed("recsys.registry.store", "recsys.models.manifest")
    assert allowed("recsys.models.base", "recsys.state.user")
    assert allowed("recsys.monitoring.check", "recsys.data.io")  # through evaluation
    assert allowed("recsys.monitoring.check", "recsys.state.offline")  # through recommend
    assert allowed("recsys.cli.pipeline", "pipelines.client")


# A project in miniature: every edge passes the one-step check, and yet the registry reaches
# the models' heavy modules (through the Manifest's imports, and through the package the
# Manifest sits in), and the models reach the feature store through the state.
PLANTED = {
    "recsys": (),
    "recsys.registry": (),
    "recsys.registry.store": ("recsys.models.manifest",),
    "recsys.models": (),
    "recsys.models.manifest": ("recsys.files",),
    "recsys.models.base": ("recsys.state.user",),
    "recsys.models.kinds": ("recsys.models.base",),
    "recsys.state": (),
    "recsys.state.user": ("recsys.data.io",),
    "recsys.data": (),
    "recsys.data.io": (),
    "recsys.files": (),
    "recsys.features": (),
    "recsys.features.build": ("recsys.state.user",),
}


def plant(graph: dict, source: str, target: str) -> dict:
    return {**graph, source: (*graph[source], target)}


def test_the_transitive_check_passes_a_clean_graph():
    assert all(not upward_reaches(m, PLANTED) for m in PLANTED)


def test_the_transitive_check_catches_a_chain_of_allowed_looking_imports():
    graph = plant(PLANTED, "recsys.models.manifest", "recsys.models.base")  # same layer
    assert all(allowed(a, b) for a, bs in graph.items() for b in bs)  # each step passes
    assert upward_reaches("recsys.registry.store", graph) == [
        "recsys.registry.store → recsys.models.manifest → recsys.models.base → "
        "recsys.state.user → recsys.data.io (recsys.data)",
        "recsys.registry.store → recsys.models.manifest → recsys.models.base (recsys.models)",
        "recsys.registry.store → recsys.models.manifest → recsys.models.base → "
        "recsys.state.user (recsys.state)",
    ]


def test_the_transitive_check_follows_a_package_init():
    graph = plant(PLANTED, "recsys.models", "recsys.models.kinds")  # models/__init__.py
    assert all(allowed(a, b) for a, bs in graph.items() for b in bs)  # each step passes
    reached = upward_reaches("recsys.registry.store", graph)
    assert "recsys.registry.store → recsys.models → recsys.models.kinds (recsys.models)" in reached
    assert not upward_reaches("recsys.registry.store", PLANTED)


def test_the_transitive_check_catches_a_layer_below_reaching_up():
    graph = plant(PLANTED, "recsys.state.user", "recsys.features.build")  # the state → Feast
    assert upward_reaches("recsys.models.kinds", graph) == [
        "recsys.models.kinds → recsys.models.base → recsys.state.user → recsys.features.build "
        "(recsys.features)"
    ]


def test_tests_share_helpers_through_one_module():
    """A test module imports what tests share from ``tests.helpers`` only: never another test
    module, a conftest, or a helper file of its own beside it."""
    wrong = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                first, *rest = name.split(".")
                inside = first == "tests" and name != "tests.helpers"
                sibling = first.startswith("test_") or first in ("conftest", "tiny_data")
                if inside or sibling:
                    wrong.append(f"{path.relative_to(ROOT)}: import {name}")
    assert wrong == []


def test_unit_tests_mirror_the_packages():
    """``tests/unit/<package>/`` for each package's tests; the top holds the tests of the
    top-level modules, the layers and the property suite."""
    top = {p.name for p in (ROOT / "tests" / "unit").glob("test_*.py")}
    allowed = {"test_layers.py"} | {
        f"test_{p.stem}.py" for p in (ROOT / "recsys").glob("*.py") if p.stem != "__init__"
    }
    assert top <= allowed, sorted(top - allowed)
