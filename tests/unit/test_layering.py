"""The layering rules of DESIGN.md, enforced by walking imports with ``ast``.

Third-party seams:
- only the Juju face (src/charm.py, src/charm_state.py) and lib/ import ``ops``;
- only src/lxd/ imports pylxd; only src/github_api/ imports PyGithub (``github``); only
  src/reactive/consumer.py, src/reactive/broker.py and src/intake/publisher.py import kombu;
  only src/openstack_backend/client.py imports openstacksdk (``openstack``) and keystoneauth1.

Project rules:
- the core never imports the charm: outside the Juju face nothing imports ``charm``,
  ``charm_*`` or the charm libraries (``charms.*``);
- host integration (``juju.*``) is imported only by the Juju face and by juju/ itself;
- the LXD and GitHub seams never import each other, nor does the OpenStack seam import them;
- reconcile_plan.py imports nothing that does I/O, directly or through what it imports.

Imports under ``if TYPE_CHECKING:`` are type-only and do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

JUJU_FACE = ("src/charm.py", "src/charm_state.py")

# Top-level package -> the files or folders (relative to ROOT) allowed to import it.
THIRD_PARTY_SEAMS: dict[str, tuple[str, ...]] = {
    "ops": (*JUJU_FACE, "lib/"),
    "pylxd": ("src/lxd/",),
    "github": ("src/github_api/",),
    "kombu": ("src/reactive/consumer.py", "src/reactive/broker.py", "src/intake/publisher.py"),
    "openstack": ("src/openstack_backend/client.py",),
    "keystoneauth1": ("src/openstack_backend/client.py",),
}

# The pure plan, and the standard library modules a pure module may use.
PURE_ROOTS = ("src/reconcile_plan.py",)
PURE_STDLIB = {
    "__future__",
    "abc",
    "collections",
    "collections.abc",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "itertools",
    "math",
    "re",
    "typing",
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


def runtime_imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """Return (line, module, is_member) for every import that runs at import or call time.

    ``from pkg import name`` gives (pkg, False) and (pkg.name, True): the second is a module
    only when such a file exists (see :meth:`Project.modules`).
    """
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking_block(child):
                for sub in child.orelse:
                    visit_stmt(sub)
                continue
            visit_stmt(child)

    def visit_stmt(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, False))
            found.extend((node.lineno, f"{node.module}.{a.name}", True) for a in node.names)
        visit(node)

    visit(tree)
    return found


class Project:
    """The Python files of a tree (src/ and lib/) and their runtime imports."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.imports: dict[str, list[tuple[int, str, bool]]] = {}
        for base in ("src", "lib"):
            for path in sorted((root / base).rglob("*.py")):
                rel = path.relative_to(root).as_posix()
                tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
                self.imports[rel] = runtime_imports(tree)

    def file_of(self, module: str) -> str | None:
        """The project file a module name resolves to (src/ first, then lib/), if any."""
        parts = module.split(".")
        for base in ("src", "lib"):
            for candidate in (
                f"{base}/{'/'.join(parts)}.py",
                f"{base}/{'/'.join(parts)}/__init__.py",
            ):
                if candidate in self.imports:
                    return candidate
        return None

    def modules(self, rel: str) -> Iterator[tuple[int, str, str | None]]:
        """(line, module, project file or None) of each module ``rel`` imports at runtime."""
        for line, module, is_member in self.imports[rel]:
            target = self.file_of(module)
            if target is not None or not is_member:
                yield line, module, target


def _third_party(project: Project) -> Iterator[Violation]:
    for rel in project.imports:
        for line, module, target in project.modules(rel):
            allowed = THIRD_PARTY_SEAMS.get(module.split(".")[0])
            if allowed is None or target is not None:
                continue
            if not any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
                yield Violation(rel, line, module, f"only {list(allowed)} import it")


def _is_charm_module(module: str) -> bool:
    top = module.split(".", maxsplit=1)[0]
    return top == "charm" or top.startswith("charm_") or top == "charms"


def _core_never_imports_charm(project: Project) -> Iterator[Violation]:
    for rel in project.imports:
        if rel in JUJU_FACE or rel.startswith("lib/"):
            continue
        for line, module, _ in project.modules(rel):
            if _is_charm_module(module):
                yield Violation(rel, line, module, "the core never imports the charm")


def _juju_only_from_face(project: Project) -> Iterator[Violation]:
    for rel in project.imports:
        if rel in JUJU_FACE or rel.startswith("src/juju/"):
            continue
        for line, module, _ in project.modules(rel):
            if module.split(".")[0] == "juju":
                yield Violation(rel, line, module, "only the Juju face imports juju.*")


def _seams_apart(project: Project) -> Iterator[Violation]:
    pairs = (
        ("src/lxd/", "github_api"),
        ("src/github_api/", "lxd"),
        ("src/openstack_backend/seam.py", "github_api"),
        ("src/openstack_backend/client.py", "github_api"),
        ("src/openstack_backend/seam.py", "lxd"),
        ("src/openstack_backend/client.py", "lxd"),
    )
    for folder, forbidden in pairs:
        for rel in project.imports:
            if not rel.startswith(folder):
                continue
            for line, module, _ in project.modules(rel):
                if module.split(".")[0] == forbidden:
                    yield Violation(rel, line, module, "the seams stay apart")


def _pure_plan(project: Project) -> Iterator[Violation]:
    seen: set[str] = set()
    todo = [root for root in PURE_ROOTS if root in project.imports]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for line, module, target in project.modules(rel):
            if target is not None:
                todo.append(target)
            elif module not in PURE_STDLIB:
                yield Violation(rel, line, module, "the reconcile plan must be pure")


RULES: tuple[Callable[[Project], Iterator[Violation]], ...] = (
    _third_party,
    _core_never_imports_charm,
    _juju_only_from_face,
    _seams_apart,
    _pure_plan,
)


def check_tree(root: Path) -> list[Violation]:
    """Check every Python file under ``root``/src and ``root``/lib against the rules."""
    project = Project(root)
    found = {v for rule in RULES for v in rule(project)}
    return sorted(found, key=lambda v: (v.file, v.line, v.module))


def test_project_respects_layering() -> None:
    violations = check_tree(ROOT)
    assert violations == [], "\n".join(
        f"{v.file}:{v.line} imports {v.module} ({v.rule})" for v in violations
    )


def _plant(root: Path, files: dict[str, str]) -> None:
    for rel, source in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source, encoding="utf-8")


TINY_CORE = {
    "src/runner_type.py": "from dataclasses import dataclass\n",
    "src/lxd/__init__.py": "",
    "src/lxd/client.py": "import pylxd\n",
    "src/github_api/__init__.py": "",
    "src/github_api/types.py": "import re\n",
    "src/juju/__init__.py": "",
    "src/juju/host.py": "import subprocess\n",
    "src/charm_state.py": "import ops\nfrom juju import host\n",
    "src/charm.py": "import ops\nimport charm_state\nfrom juju.host import run\n",
}


@pytest.mark.parametrize(
    ("rel", "source", "module", "rule"),
    [
        ("src/runner_manager.py", "import ops\n", "ops", "only"),
        ("src/runner.py", "from ops.model import Unit\n", "ops.model", "only"),
        ("src/runner.py", "def f():\n    import pylxd\n", "pylxd", "only"),
        ("src/metrics/github.py", "from github import Github\n", "github", "only"),
        ("src/reactive/runner.py", "import kombu.simple\n", "kombu.simple", "only"),
        ("src/juju/host.py", "import ops\n", "ops", "only"),
        ("src/runner_manager.py", "from charm_state import from_charm\n", "charm_state", "charm"),
        ("src/reactive/wiring.py", "import charm\n", "charm", "charm"),
        (
            "src/runner.py",
            "from charms.github_runner.v0 import x\n",
            "charms.github_runner.v0",
            "charm",
        ),
        ("src/runner_manager.py", "from juju.host import run\n", "juju.host", "Juju face"),
        ("src/lxd/instance.py", "from github_api.types import X\n", "github_api.types", "apart"),
        ("src/github_api/client.py", "import lxd.client\n", "lxd.client", "apart"),
        ("src/openstack_backend/manager.py", "import openstack\n", "openstack", "only"),
        (
            "src/openstack_backend/seam.py",
            "from openstack import connection\n",
            "openstack",
            "only",
        ),
        ("src/runner.py", "import keystoneauth1.session\n", "keystoneauth1.session", "only"),
        (
            "src/openstack_backend/client.py",
            "from github_api.types import X\n",
            "github_api.types",
            "apart",
        ),
        ("src/reconcile_plan.py", "import subprocess\n", "subprocess", "pure"),
        ("src/reconcile_plan.py", "from lxd.client import LxdClient\n", "pylxd", "pure"),
        ("src/reconcile_plan.py", "from runner_type import A\n", "os", "pure"),
        (
            "src/runner.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    pass\nelse:\n    import ops\n",
            "ops",
            "only",
        ),
    ],
)
def test_planted_violation_is_caught(
    tmp_path: Path, rel: str, source: str, module: str, rule: str
) -> None:
    files = dict(TINY_CORE)
    if module == "os":  # a module the plan imports does I/O: caught through it
        files["src/runner_type.py"] = "import os\n"
        expected_file = "src/runner_type.py"
    else:
        through_lxd = module == "pylxd" and rule == "pure"
        expected_file = "src/lxd/client.py" if through_lxd else rel
    _plant(tmp_path, {**files, rel: source})
    violations = check_tree(tmp_path)
    assert [(v.file, v.module) for v in violations] == [(expected_file, module)]
    assert rule in violations[0].rule


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("src/charm.py", "import ops\nimport charm_state\nfrom juju.host import run\n"),
        ("src/lxd/instance.py", "import pylxd\nfrom lxd import client\n"),
        ("src/github_api/client.py", "from github import Auth\nfrom github_api import types\n"),
        ("src/reactive/consumer.py", "from kombu import Connection\n"),
        ("src/openstack_backend/client.py", "import openstack.config\nimport keystoneauth1\n"),
        ("lib/charms/github_runner/v0/cos_agent.py", "import ops\n"),
        ("src/runner.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ops\n"),
        ("src/reconcile_plan.py", "from dataclasses import dataclass\nimport runner_type\n"),
        ("src/juju/policy_host.py", "from juju import host\n"),
    ],
)
def test_allowed_imports_pass(tmp_path: Path, rel: str, source: str) -> None:
    _plant(tmp_path, {**TINY_CORE, rel: source})
    assert check_tree(tmp_path) == []
