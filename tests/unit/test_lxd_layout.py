"""The LXD seam's modules: no import circle, pylxd in the transport only, pure Protocols."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LXD_DIR = Path(__file__).resolve().parents[2] / "src" / "lxd"


def imports_of(source: str) -> set[str]:
    """Every module a source imports (type-only imports included: they form circles too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "lxd":
                found.update(f"lxd.{alias.name}" for alias in node.names)
    return found


def lxd_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Which ``lxd.*`` modules each module of the part imports (the face excluded)."""
    return {
        name: {m for m in imports_of(text) if m in sources and m != name}
        for name, text in sources.items()
    }


def find_circle(graph: dict[str, set[str]]) -> list[str]:
    """A chain of imports that comes back to its start, or [] when there is none."""

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        for target in sorted(graph.get(node, ())):
            circle = visit(target, [*path, node])
            if circle:
                return circle
        return []

    for start in sorted(graph):
        circle = visit(start, [])
        if circle:
            return circle
    return []


def _sources() -> dict[str, str]:
    return {
        f"lxd.{path.stem}": path.read_text(encoding="utf-8")
        for path in sorted(LXD_DIR.glob("*.py"))
        if path.stem != "__init__"
    }


def test_lxd_modules_import_no_circle() -> None:
    assert find_circle(lxd_graph(_sources())) == []


def test_a_planted_circle_is_found() -> None:
    sources = {"lxd.a": "from lxd.b import B\n", "lxd.b": "import lxd.a\n", "lxd.c": ""}
    assert find_circle(lxd_graph(sources)) == ["lxd.a", "lxd.b", "lxd.a"]


def test_only_the_transport_imports_pylxd() -> None:
    users = {name for name, text in _sources().items() if "pylxd" in imports_of(text)}
    assert users == {"lxd.transport"}


@pytest.mark.parametrize("module", ["lxd.seam", "lxd.types"])
def test_protocols_and_types_do_no_io(module: str) -> None:
    imported = imports_of(_sources()[module])
    assert imported <= {
        "__future__",
        "collections.abc",
        "dataclasses",
        "datetime",
        "enum",
        "json",
        "re",
        "shlex",
        "typing",
        "lxd.types",
    }
