"""The layers of ``../shared/ARCHITECTURE.md`` as data: a module imports only its own layer and
the layers below it, and imports the project's modules at the top of the file.

Read statically (``ast``): no module is imported, so the test is fast and sees function-level
imports too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("recsys", "pipelines", "serving", "benchmarks")

# Layer -> what it may import besides itself (ARCHITECTURE.md's table, "may import"); what a
# listed layer may import comes with it. ``recsys.config`` and ``recsys.files`` are the ground
# every layer stands on, and so is the package root itself (``recsys``: ``__version__``).
GROUND = ("recsys.config", "recsys.files")
PACKAGE_ROOT = "recsys"
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "recsys.data": (),
    "recsys.retrieval": (),
    "recsys.features": ("recsys.data",),
    # The models read the user's state through its pure contract (no Feast in these two):
    # the state is defined once, beside the feature store that holds it online.
    "recsys.models": (
        "recsys.data",
        "recsys.retrieval",
        "recsys.features.state",
        "recsys.features.offline",
    ),
    "recsys.recommend": ("recsys.models", "recsys.features"),
    "recsys.training": ("recsys.models", "recsys.features"),
    "recsys.evaluation": ("recsys.recommend", "recsys.data"),
    "recsys.registry": ("recsys.models.manifest",),  # the Manifest only
    "recsys.monitoring": ("recsys.evaluation", "recsys.registry"),
    "recsys.serve_ops": ("recsys.registry",),
    "recsys.demo": ("recsys.serve_ops", "recsys.monitoring", "recsys.training"),
    "recsys.cli": ("recsys.demo", "pipelines"),
    "pipelines": ("recsys.demo",),
    "serving": ("recsys.demo",),
    "benchmarks": ("recsys.cli", "serving"),
}
# A function-level project import is allowed only where the framework requires it: a KFP
# lightweight component runs its body alone in the task's container.
FUNCTION_LEVEL_ALLOWED = {"pipelines/components.py"}


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


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(module imported, line, inside a function)`` for every import of the project."""
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
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
                names = [base]
            for name in names:
                if name.split(".")[0] in PACKAGES:
                    found.append((name, child.lineno, in_function))
            visit(child, nested)

    visit(ast.parse(path.read_text()), False)
    return found


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_the_table_covers_every_module():
    rows = (*MAY_IMPORT, *GROUND)
    for path in modules():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        covered = module == PACKAGE_ROOT or any(
            module == row or module.startswith(row + ".") for row in rows
        )
        assert covered, f"{path.relative_to(ROOT)} is in no layer of the table"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_its_layer_and_those_below(path):
    source = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    wrong = [
        f"line {line}: {target} ({layer_of(target)}) from {layer_of(source)}"
        for target, line, _ in project_imports(path)
        if not allowed(source, target)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports upward: " + "; ".join(wrong)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_project_imports_are_at_the_top(path):
    relative = path.relative_to(ROOT).as_posix()
    inside = [f"line {line}: {target}" for target, line, fn in project_imports(path) if fn]
    assert relative in FUNCTION_LEVEL_ALLOWED or not inside, (
        f"{relative} imports the project inside a function: " + "; ".join(inside)
    )


def test_the_checker_catches_an_upward_import():
    assert not allowed("recsys.models.ease", "recsys.training.api")
    assert not allowed("recsys.registry.store", "recsys.models.kinds")
    assert not allowed("recsys.evaluation.protocol", "recsys.registry")
    assert not allowed("recsys.data.io", "recsys.features.state")
    assert not allowed("serving.app", "pipelines.client")
    assert not allowed("recsys.demo.loop", "pipelines.client")
    assert allowed("recsys.registry.store", "recsys.models.manifest")
    assert allowed("recsys.monitoring.check", "recsys.data.io")  # through evaluation
    assert allowed("recsys.cli.pipeline", "pipelines.client")
