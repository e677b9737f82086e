"""The packed charm (``make pack``, scripts/pack-charm.py): what the archive holds; that it runs.

Both archives are checked: the Noble one (``github-runner_ubuntu@24.04-amd64.charm``, CPython
3.12 wheels: what Juju deploys) and the one built for this machine's Python
(``build/charm-host/github-runner_host-<arch>.charm``), which is unpacked and run: the charm is
imported from the archive's ``src``/``lib``/``venv`` in a fresh interpreter and handles one
ops.testing event. A missing archive is packed first.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "scripts" / "pack-charm.py"
CHARMCRAFT = ROOT / "build" / "charmcraft-4.5.0" / "bin" / "charmcraft"
NOBLE = ROOT / "github-runner_ubuntu@24.04-amd64.charm"
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
HOST = ROOT / "build" / "charm-host" / f"github-runner_host-{HOST_ARCH}.charm"
NOBLE_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3"}

REQUIRED = (
    "dispatch",
    "hooks/install",
    "hooks/start",
    "hooks/upgrade-charm",
    "manifest.yaml",
    "metadata.yaml",
    "config.yaml",
    "actions.yaml",
    "charmcraft.yaml",
    "LICENSE",
    "icon.svg",
    "README.md",
    "src/charm.py",
    "src/charm_state.py",
    "lib/charms/github_runner/v0/mongodb.py",
    "lib/charms/github_runner/v0/cos_agent.py",
    "templates/start.sh.j2",
    "scripts/setup-lxd.sh",
    "scripts/build-lxd-image.sh",
)
FORBIDDEN_TOP = {"tests", "sandbox", "benchmarks", "docs", "harness", ".venv", "build", ".git"}


def packed(charm: Path, *args: str) -> Path:
    """Return the archive, packing it first when it is missing."""
    if not charm.is_file():
        subprocess.run([sys.executable, str(PACK), *args], check=True, timeout=900)
    assert charm.is_file()
    return charm


@pytest.fixture(scope="module", params=["noble", "host"])
def charm(request: pytest.FixtureRequest) -> Path:
    if request.param == "noble":
        return packed(NOBLE)
    return packed(HOST, "--base", "host")


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(packed(HOST, "--base", "host")) as archive:
        archive.extractall(where)
    return where


def locked(markers: dict[str, str]) -> dict[str, str]:
    """The lock's pins that apply to an environment: name -> version."""
    environment = {**default_environment(), **markers}
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(environment):
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return pins


def test_archive_holds_the_charm_and_nothing_of_the_project_around_it(charm: Path) -> None:
    with zipfile.ZipFile(charm) as archive:
        names = set(archive.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
    missing = [name for name in REQUIRED if name not in names]
    assert not missing, f"missing from {charm.name}: {missing}"
    assert {n.split("/", 1)[0] for n in names} & FORBIDDEN_TOP == set()
    assert {n for n in names if n.startswith("scripts/")} == {
        "scripts/setup-lxd.sh",
        "scripts/build-lxd-image.sh",
    }
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for executable in ("dispatch", "src/charm.py"):
        assert modes[executable] & stat.S_IXUSR, f"{executable} is not executable"
    with zipfile.ZipFile(charm) as archive:
        dispatch = archive.read("dispatch").decode()
    assert "PYTHONPATH=lib:venv" in dispatch
    assert "exec ./src/charm.py" in dispatch


def test_venv_holds_every_locked_dependency_at_its_version(charm: Path) -> None:
    with zipfile.ZipFile(charm) as archive:
        names = archive.namelist()
    found = {}
    for name in names:
        match = re.fullmatch(r"venv/([^/]+)-([^-/]+)\.dist-info/METADATA", name)
        if match:
            found[canonicalize_name(match[1])] = match[2]
    markers = NOBLE_MARKERS if charm == NOBLE else {}
    assert found == locked(markers)
    # Development and demo tooling stays out of the charm.
    assert not {"rich", "pytest", "mypy", "ruff", "ops-scenario"} & set(found)


def test_noble_archive_carries_cpython_3_12_wheels() -> None:
    with zipfile.ZipFile(packed(NOBLE)) as archive:
        names = archive.namelist()
    compiled = [n for n in names if n.startswith("venv/") and n.endswith(".so")]
    assert compiled
    assert not [n for n in compiled if "cpython-3" in n and "cpython-312" not in n]


def test_charmcraft_analyse_reports_no_error(charm: Path) -> None:
    out = subprocess.run(
        [str(CHARMCRAFT), "analyse", "--ignore=pydeps", str(charm)],
        capture_output=True, text=True, timeout=300, check=False, cwd=charm.parent,
    )  # fmt: skip
    text = out.stdout + out.stderr
    results = dict(re.findall(r"^([a-z][a-z-]*): \[([A-Za-z]+)\]", text, flags=re.MULTILINE))
    assert out.returncode == 0, text
    assert results["metadata"] == results["juju-config"] == results["juju-actions"] == "OK"
    assert results["entrypoint"] == results["ops-main-call"] == "OK"
    assert results["framework"] == "OPERATOR"
    assert not {k: v for k, v in results.items() if v in {"ERROR", "ERRORS", "FATAL"}}


def test_metadata_files_are_charmcraft_yaml_s_sections(charm: Path) -> None:
    import yaml

    project = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())
    with zipfile.ZipFile(charm) as archive:
        config = yaml.safe_load(archive.read("config.yaml"))
        actions = yaml.safe_load(archive.read("actions.yaml"))
        metadata = yaml.safe_load(archive.read("metadata.yaml"))
    assert config == project["config"]
    assert actions == project["actions"]
    assert metadata["name"] == "github-runner"
    assert metadata["assumes"] == ["juju >= 3.3"]
    assert metadata["requires"]["mongodb"]["interface"] == "mongodb_client"
    assert metadata["storage"] == project["storage"]


RUN_FROM_ARCHIVE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    root = Path(sys.argv[1]).resolve()
    import charm, ops, pydantic, dpcharmlibs.interfaces, kombu
    from charms.github_runner.v0 import mongodb
    from ops import testing
    where = {m.__name__: str(Path(m.__file__).resolve().relative_to(root))
             for m in (charm, ops, pydantic, dpcharmlibs.interfaces, kombu, mongodb)}
    ctx = testing.Context(charm.GithubRunnerCharm, charm_root=root)
    out = ctx.run(ctx.on.config_changed(), testing.State(config={"path": "octo/repo"}))
    print(json.dumps({"where": where, "status": [out.unit_status.name, out.unit_status.message]}))
    """
)


def test_charm_runs_from_the_unpacked_archive_s_venv(unpacked: Path) -> None:
    # Only the archive's code and venv, then the test interpreter's own site-packages for
    # ops.testing (ops-scenario is a test tool, not in the charm).
    pythonpath = os.pathsep.join(str(unpacked / d) for d in ("src", "lib", "venv"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-c", RUN_FROM_ARCHIVE, str(unpacked)],
        env=env, cwd=unpacked, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["where"] == {
        "charm": "src/charm.py",
        "ops": "venv/ops/__init__.py",
        "pydantic": "venv/pydantic/__init__.py",
        "dpcharmlibs.interfaces": "venv/dpcharmlibs/interfaces/__init__.py",
        "kombu": "venv/kombu/__init__.py",
        "charms.github_runner.v0.mongodb": "lib/charms/github_runner/v0/mongodb.py",
    }
    status, message = result["status"]
    assert status == "blocked"
    assert message.startswith("Missing required configuration: token")


def test_packing_writes_nothing_into_the_project(tmp_path: Path) -> None:
    # The prime directory is written (metadata files, modes): it must hold copies, never links.
    watched = ("charmcraft.yaml", "src/charm.py", "README.md", "LICENSE", "icon.svg")

    def snapshot() -> dict[str, tuple[bytes, int]]:
        return {n: ((ROOT / n).read_bytes(), (ROOT / n).stat().st_mode) for n in watched}

    before = snapshot()
    out = tmp_path / "again.charm"
    subprocess.run(
        [sys.executable, str(PACK), "--base", "host", "--output", str(out)],
        check=True, timeout=900, capture_output=True,
    )  # fmt: skip
    assert out.is_file()
    assert snapshot() == before
    prime = ROOT / "build" / f"prime-host-{HOST_ARCH}"
    files = [p for p in prime.rglob("*") if p.is_file() and not p.is_symlink()]
    linked = [
        p for p in files if p.stat().st_nlink > 1 and "venv" not in p.relative_to(prime).parts
    ]
    assert linked == []
