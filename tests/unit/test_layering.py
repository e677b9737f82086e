"""The layering rules of DESIGN.md, enforced by walking imports with ``ast``.

- Only the charm side (charm.py, charm_state.py, event_timer.py, lib/) imports ``ops``.
- Only lxd.py imports pylxd; only github_client.py imports PyGithub (``github``); only
  reactive/consumer.py imports kombu.
- reconcile_plan.py imports nothing that does I/O.

Imports under ``if TYPE_CHECKING:`` are type-only and do not count.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Top-level package -> the files (relative to ROOT) allowed to import it.
SEAMS: dict[str, set[str]] = {
    "ops": {"src/charm.py", "src/charm_state.py"},
    "pylxd": {"src/lxd/client.py"},
    "github": {"src/github_api/client.py"},
    "kombu": {"src/reactive/consumer.py"},
}
# Files allowed to import a seam package by folder prefix.
SEAM_FOLDERS: dict[str, tuple[str, ...]] = {"ops": ("lib/",)}

# What the pure reconcile plan may import: the standard library's pure parts and pure modules.
PURE_MODULES = {"reconcile_plan.py"}
PURE_ALLOWED = {
    "__future__",
    "dataclasses",
    "datetime",
    "enum",
    "typing",
    "collections",
    "collections.abc",
    "itertools",
    "math",
    "github_api.types",
    "runner_type",
}


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    file: str
    line: int
    module: str
    rule: str


def _is_type_checking_block(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Return (line, module) for every import that runs at import or call time."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking_block(child):
                for sub in child.orelse:
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        visit(node)

    visit(tree)
    return found


def check_tree(root: Path) -> list[Violation]:
    """Check every Python file under ``root``/src and ``root``/lib against the rules."""
    violations: list[Violation] = []
    files = [*sorted((root / "src").rglob("*.py")), *sorted((root / "lib").rglob("*.py"))]
    for path in files:
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        for line, module in runtime_imports(tree):
            top = module.split(".")[0]
            allowed = SEAMS.get(top)
            if allowed is not None and rel not in allowed:
                folders = SEAM_FOLDERS.get(top, ())
                if not rel.startswith(folders) or not folders:
                    violations.append(Violation(rel, line, module, f"only {sorted(allowed)}"))
            if path.name in PURE_MODULES and module not in PURE_ALLOWED:
                violations.append(Violation(rel, line, module, "reconcile_plan.py must be pure"))
    return violations


def test_project_respects_layering() -> None:
    violations = check_tree(ROOT)
    assert violations == [], "\n".join(
        f"{v.file}:{v.line} imports {v.module} ({v.rule})" for v in violations
    )


def _plant(tmp_path: Path, rel: str, source: str) -> None:
    target = tmp_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source, encoding="utf-8")


@pytest.mark.parametrize(
    ("rel", "source", "module"),
    [
        ("src/runner_manager.py", "import ops\n", "ops"),
        ("src/runner.py", "from ops.model import Unit\n", "ops.model"),
        ("src/runner.py", "def f():\n    import pylxd\n", "pylxd"),
        ("src/metrics/github.py", "from github import Github\n", "github"),
        ("src/reactive/runner.py", "import kombu.simple\n", "kombu.simple"),
        ("src/reconcile_plan.py", "import subprocess\n", "subprocess"),
        ("src/reconcile_plan.py", "from lxd import LxdClient\n", "lxd"),
        (
            "src/runner.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    pass\nelse:\n    import ops\n",
            "ops",
        ),
    ],
)
def test_planted_violation_is_caught(tmp_path: Path, rel: str, source: str, module: str) -> None:
    _plant(tmp_path, rel, source)
    violations = check_tree(tmp_path)
    assert [(v.file, v.module) for v in violations] == [(rel, module)]


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("src/charm.py", "import ops\n"),
        ("src/lxd/client.py", "import pylxd\n"),
        ("src/github_api/client.py", "from github import Auth\n"),
        ("src/reactive/consumer.py", "from kombu import Connection\n"),
        ("lib/charms/github_runner/v0/cos_agent.py", "import ops\n"),
        ("src/runner.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ops\n"),
        ("src/reconcile_plan.py", "from dataclasses import dataclass\nimport runner_type\n"),
    ],
)
def test_allowed_imports_pass(tmp_path: Path, rel: str, source: str) -> None:
    _plant(tmp_path, rel, source)
    assert check_tree(tmp_path) == []
