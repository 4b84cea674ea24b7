"""Data flows one way (DESIGN.md §2): the packages of ``src/pixelmill`` import each other without
a cycle, the task core imports nothing above it, and the pipelines (``submit``, ``work``) and the
contract mappings are imported only from above. Imports under ``TYPE_CHECKING`` are types only
and do not count."""

from __future__ import annotations

import ast
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pixelmill

ROOT = Path(pixelmill.__file__).parent
#: What the task core (record, status, requests, view ...) may import.
CORE_ALLOWED = {"clock", "db", "exceptions", "prompts", "validation"}
#: The only packages and modules that may import the pipelines.
PIPELINE_USERS = {"api", "submit", "work", "runtime", "cli", "app", "chaos", "testing", "console"}


def _type_only(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def package_imports() -> dict[str, dict[str, list[str]]]:
    """Package (or top-level module) → the packages it imports at run time → where."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "migrations":
            continue
        source = rel.parts[0].removesuffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) not in skipped and isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pixelmill."):
                target = node.module.split(".")[1]
                if target != source:
                    edges[source][target].append(f"{rel}: {node.module}")
    return edges


def test_packages_import_each_other_without_a_cycle() -> None:
    edges = package_imports()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node):] + [node]
            where = [edges[a][b][0] for a, b in pairwise(cycle)]
            raise AssertionError(f"import cycle {' -> '.join(cycle)}: {where}")
        if node in done:
            return
        for target in edges.get(node, {}):
            visit(target, [*path, node])
        done.add(node)

    for package in list(edges):
        visit(package, [])


def test_the_task_core_imports_nothing_above_it() -> None:
    imports = package_imports()
    assert set(imports["tasks"]) <= CORE_ALLOWED, dict(imports["tasks"])
    assert set(imports["contracts"]) <= {"exceptions", "tasks"}, dict(imports["contracts"])


def test_only_the_layers_above_use_the_pipelines() -> None:
    users = {source for source, targets in package_imports().items() if {"submit", "work"} & set(targets)}
    assert users <= PIPELINE_USERS
