#!/usr/bin/env python3
"""Pack the charm here, by charmcraft's own layout and pieces, without an LXD-managed build.

``charmcraft pack`` builds inside an Ubuntu instance (LXD) or, with ``--destructive-mode``, only
on the Ubuntu release it targets; on this Debian machine neither is possible. This script does
what charmcraft's ``charm`` plugin with strict dependencies does, with charmcraft's own code
(pinned, in a throwaway venv under ``build/``): the project's files filtered by ``.jujuignore``
(charmcraft's JujuIgnore), ``venv/`` holding exactly ``requirements.lock`` (``pip --no-deps``,
then every requirement of every installed distribution checked, like ``pip check``), charmcraft's
``dispatch`` and hook links, ``metadata.yaml``/``config.yaml``/``actions.yaml`` rendered from
``charmcraft.yaml`` by charmcraft's models, ``manifest.yaml``, zipped by charmcraft's
``build_zip``; then ``charmcraft analyse`` must report no error.

Targets (``--base``): ``ubuntu@24.04`` (default; the wheels of CPython 3.12 for the
architecture, ``--arch amd64|arm64``: what a Noble unit runs), written to the repository root
as ``github-runner_ubuntu@24.04-<arch>.charm``; ``host`` (this machine's Python, for the tests
that import the charm from the unpacked archive), written to
``build/charm-host/github-runner_host-<arch>.charm``. The venv is cached per lock hash and
target in ``$GITHUB_RUNNER_PACK_CACHE`` (default ``~/.cache/github-runner-pack``).

Usage: ``scripts/pack-charm.py [--base ubuntu@24.04|host] [--arch amd64] [--output FILE]``;
``scripts/pack-charm.py --lock`` regenerates ``requirements.lock`` from ``requirements.txt``.
"""

# The charmcraft and packaging imports are local on purpose: the script starts under any
# python3, installs its pinned tools in build/, then re-runs itself with them.
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CHARMCRAFT_VERSION = "4.5.0"
UV_VERSION = "0.13.9"
ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "build" / f"charmcraft-{CHARMCRAFT_VERSION}"
LOCK = ROOT / "requirements.lock"
CACHE = Path(os.environ.get("GITHUB_RUNNER_PACK_CACHE", Path.home() / ".cache/github-runner-pack"))
ENTRYPOINT = "src/charm.py"
LOCK_HEADER = """\
# Every runtime dependency of the charm, transitive ones included: the packed charm's venv/ is
# exactly this file (pip --no-deps). Generated from requirements.txt by `make lock`:
#   uv pip compile --universal --python-version 3.11 --no-header --annotation-style line \\
#     requirements.txt -o requirements.lock
# Do not edit by hand; edit requirements.txt and run `make lock`.
"""
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class Target:
    """What the venv is built for."""

    base: str  # ubuntu@24.04, or "host"
    arch: str  # Juju's name: amd64, arm64
    python: str  # X.Y
    pip_args: tuple[str, ...] = ()
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The part of the file name after ``github-runner_``."""
        return f"{self.base}-{self.arch}"


def target_for(base: str, arch: str) -> Target:
    """Return the target of a base (``host``: this interpreter) and architecture."""
    if base == "host":
        host_arch = {v: k for k, v in MACHINES.items()}.get(platform.machine(), platform.machine())
        return Target("host", host_arch, f"{sys.version_info[0]}.{sys.version_info[1]}")
    if base != "ubuntu@24.04":
        sys.exit(f"unsupported base {base!r}: ubuntu@24.04 or host (pymongo needs Python >= 3.11)")
    machine = MACHINES[arch]
    wheels = (
        "--only-binary=:all:",
        "--implementation=cp",
        "--python-version=3.12",
        "--abi=cp312",
        "--abi=abi3",
        "--abi=none",
        # Noble's glibc is 2.39: every manylinux tag up to it (this pip does not expand them).
        *(f"--platform=manylinux_2_{minor}_{machine}" for minor in range(17, 40)),
        f"--platform=manylinux2014_{machine}",
    )
    markers = {
        "python_version": "3.12",
        "python_full_version": "3.12.3",
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return Target(base, arch, "3.12", wheels, markers)


def run(cmd: list[str], timeout: float = 900, **kwargs: object) -> None:
    """Run a command, echoing it; fail the pack when it fails."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]


def ensure_tools() -> None:
    """Install charmcraft and uv (pinned) in build/ once, and run this script with them."""
    marker = TOOLS / ".installed"
    if not marker.exists():
        shutil.rmtree(TOOLS, ignore_errors=True)
        run(["python3", "-m", "venv", str(TOOLS)])
        pip = [str(TOOLS / "bin/python"), "-m", "pip", "--disable-pip-version-check"]
        run([*pip, "install", "--quiet", f"charmcraft=={CHARMCRAFT_VERSION}", f"uv=={UV_VERSION}"])
        marker.write_text(f"charmcraft=={CHARMCRAFT_VERSION} uv=={UV_VERSION}\n")
    if Path(sys.prefix).resolve() != TOOLS.resolve():
        python = str(TOOLS / "bin/python")
        os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])  # noqa: S606


def lock() -> None:
    """Regenerate requirements.lock from requirements.txt (universal, Python >= 3.11)."""
    out = ROOT / "build" / "requirements.lock.new"
    run(
        [str(TOOLS / "bin/uv"), "pip", "compile", "--quiet", "--universal",
         "--python-version", "3.11", "--no-header", "--annotation-style", "line",
         str(ROOT / "requirements.txt"), "-o", str(out)],
        cwd=ROOT,
    )  # fmt: skip
    LOCK.write_text(LOCK_HEADER + out.read_text())
    out.unlink()
    print(f"wrote {LOCK.relative_to(ROOT)}")


def locked() -> dict[str, str]:
    """Return the lock's pins: normalised name -> version (markers are pip's to apply)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        [spec] = list(req.specifier)
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def check_venv(venv: Path, target: Target) -> None:
    """Every locked distribution installed at its version, every requirement of each met."""
    from importlib.metadata import distributions

    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = {
        canonicalize_name(d.metadata["Name"]): d.version for d in distributions(path=[str(venv)])
    }
    problems = [
        f"{name}=={version} is locked but {installed.get(name, 'not installed')}"
        for name, version in locked().items()
        if installed.get(name) != version and name in installed
    ]
    environment = {**default_environment(), **target.markers, "extra": ""}
    for dist in distributions(path=[str(venv)]):
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(environment):
                continue
            have = installed.get(canonicalize_name(req.name))
            if have is None or not req.specifier.contains(have, prereleases=True):
                problems.append(f"{dist.metadata['Name']} needs {req}, venv has {have}")
    if problems:
        sys.exit("venv is not consistent with requirements.lock:\n  " + "\n  ".join(problems))


def build_venv(target: Target) -> Path:
    """Install requirements.lock for the target (cached by the lock's hash and the target)."""
    key = hashlib.sha256(LOCK.read_bytes() + repr(target).encode()).hexdigest()[:16]
    venv = CACHE / f"venv-{target.name}-py{target.python}-{key}"
    done = venv.with_name(venv.name + ".ok")
    if done.exists() and venv.is_dir():
        print(f"venv: cached {venv}")
        return venv
    tmp = venv.with_name(f"{venv.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run(
        [
            *pip,
            "--no-deps",
            "--no-compile",
            "--target",
            str(tmp),
            "-r",
            str(LOCK),
            *target.pip_args,
        ]
    )
    shutil.rmtree(tmp / "bin", ignore_errors=True)  # console scripts: not part of a charm venv
    missing = set(locked()) - {
        p.name.split("-")[0].lower().replace("_", "-") for p in tmp.glob("*.dist-info")
    }
    markers_skip = {n for n in missing if not _applies(n, target)}
    if missing - markers_skip:
        sys.exit(f"locked but not installed: {sorted(missing - markers_skip)}")
    check_venv(tmp, target)
    shutil.rmtree(venv, ignore_errors=True)
    os.replace(tmp, venv)
    done.write_text(f"{target}\n")
    return venv


def _applies(name: str, target: Target) -> bool:
    """Whether the lock's line for ``name`` applies to the target (its marker)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = {**default_environment(), **target.markers}
    for line in LOCK.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text and canonicalize_name(Requirement(text).name) == name:
            req = Requirement(text)
            return req.marker is None or req.marker.evaluate(environment)
    return False


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (the cached venv into prime: nothing writes there); copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_project(prime: Path) -> None:
    """Copy the project's files into prime, filtered by charmcraft's JujuIgnore."""
    from charmcraft.jujuignore import JujuIgnore, default_juju_ignore

    with contextlib.redirect_stdout(io.StringIO()):  # it prints every translated pattern
        ignore = JujuIgnore(default_juju_ignore)
        ignore.extend_patterns((ROOT / ".jujuignore").read_text().splitlines(keepends=True))
    for base, dirs, files in os.walk(ROOT):
        rel = Path(base).relative_to(ROOT)
        dirs[:] = [d for d in dirs if not ignore.match(str(rel / d), is_dir=True)]
        (prime / rel).mkdir(exist_ok=True)
        for name in files:
            if not ignore.match(str(rel / name), is_dir=False):
                # Copies, never hard links: prime files are chmod'ed and (re)written.
                shutil.copy2(ROOT / rel / name, prime / rel / name, follow_symlinks=False)
    (prime / ENTRYPOINT).chmod(0o755)


def write_charm_files(prime: Path, target: Target) -> None:
    """Dispatch, hook links and the metadata files Juju reads, as charmcraft writes them."""
    import yaml
    from charmcraft import const, linters, utils
    from charmcraft.models.charmcraft import Base
    from charmcraft.models.manifest import Attribute, Manifest
    from charmcraft.models.metadata import CharmMetadata
    from charmcraft.models.project import CharmcraftProject
    from charmcraft.parts import setup_parts

    def write(name: str, text: str) -> Path:
        path = prime / name
        path.unlink(missing_ok=True)  # a new file, whatever was copied there
        path.write_text(text)
        return path

    dispatch = write(
        const.DISPATCH_FILENAME, const.DISPATCH_CONTENT.format(entrypoint_relative_path=ENTRYPOINT)
    )
    dispatch.chmod(0o755)
    (prime / const.HOOKS_DIRNAME).mkdir()
    for hook in sorted(const.MANDATORY_HOOK_NAMES):
        (prime / const.HOOKS_DIRNAME / hook).symlink_to(f"../{const.DISPATCH_FILENAME}")
    setup_parts()  # registers the charm plugin the parts name
    project = CharmcraftProject.unmarshal(yaml.safe_load((ROOT / "charmcraft.yaml").read_text()))
    marshalled = project.marshal()
    metadata = CharmMetadata.from_charm(project).marshal()  # type: ignore[arg-type]
    write(const.METADATA_FILENAME, yaml.safe_dump(metadata, sort_keys=True))
    for key, filename in (
        ("config", const.JUJU_CONFIG_FILENAME),
        ("actions", const.JUJU_ACTIONS_FILENAME),
    ):
        if marshalled.get(key):
            write(filename, yaml.safe_dump(marshalled[key], sort_keys=True))
    attributes = [
        Attribute(name=result.name, result=result.result)
        for checker in linters.CHECKERS
        if issubclass(checker, linters.AttributeChecker)
        for result in [checker().get_result(prime)]
    ]
    base = "ubuntu@24.04" if target.base == "host" else target.base
    manifest = Manifest(
        charmcraft_started_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
        bases=[Base.from_str_and_arch(base, [target.arch])],
        analysis={"attributes": attributes},
    )
    dumped = manifest.model_dump(
        mode="json", by_alias=True, exclude_unset=False, exclude_none=True
    )
    write(const.MANIFEST_FILENAME, utils.dump_yaml(dumped))


# charmcraft 4.5's pydeps linter looks for venv/lib/python*/site-packages, which the charm
# plugin's flat venv/ does not have, and crashes ("fatal"); check_pydeps does its check instead.
ANALYSE_IGNORED = ("pydeps",)


def check_pydeps(prime: Path, target: Target) -> None:
    """Every PYDEPS of the charm libraries in lib/ is installed in venv/ at a version it allows."""
    from importlib.metadata import distributions

    from charmcraft.utils import collect_charmlib_pydeps
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in distributions(path=[str(prime / "venv")])
    }
    for text in sorted(collect_charmlib_pydeps(prime)):
        req = Requirement(text)
        have = installed.get(canonicalize_name(req.name))
        if have is None or not req.specifier.contains(have, prereleases=True):
            sys.exit(f"a charm library needs {req}; venv/ has {have}")
        print(f"pydeps: {req} (venv: {have})")


def analyse(charm: Path) -> dict[str, str]:
    """Run ``charmcraft analyse``; exit when a check reports an error or charmcraft fails.

    (Its ``--format=json`` mode does not apply ``--ignore``: the text mode is parsed.)

    Returns:
        Each check's name -> its result (``OK``, ``NONAPPLICABLE``, ``python``...).
    """
    ignore = f"--ignore={','.join(ANALYSE_IGNORED)}"
    out = subprocess.run(
        [str(TOOLS / "bin/charmcraft"), "analyse", ignore, str(charm)],
        check=False, capture_output=True, text=True, timeout=300, cwd=charm.parent,
    )  # fmt: skip
    text = out.stdout + out.stderr
    checks = dict(re.findall(r"^([a-z][a-z-]*): \[([A-Za-z]+)\]", text, flags=re.MULTILINE))
    for name, result in checks.items():
        print(f"analyse: {name}: {result}")
    bad = {n: r for n, r in checks.items() if r.upper() in {"ERRORS", "ERROR", "FATAL"}}
    if out.returncode != 0 or bad or len(checks) < 8:
        sys.exit(f"charmcraft analyse failed (rc {out.returncode}, {bad}):\n{text}")
    return checks


def pack(target: Target, output: Path | None) -> Path:
    """Build the prime directory and zip it into the charm file."""
    from charmcraft import utils

    started = time.monotonic()
    venv = build_venv(target)
    print(f"venv ready in {time.monotonic() - started:.1f} s")
    prime = ROOT / "build" / f"prime-{target.name}"
    shutil.rmtree(prime, ignore_errors=True)
    prime.mkdir(parents=True)
    copy_project(prime)
    shutil.copytree(venv, prime / "venv", copy_function=_link_or_copy)
    write_charm_files(prime, target)
    check_pydeps(prime, target)
    if output is None:
        where = ROOT if target.base != "host" else ROOT / "build" / "charm-host"
        output = where / f"github-runner_{target.name}.charm"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)
    utils.build_zip(output, prime)
    analyse(output)
    size = output.stat().st_size / 1e6
    print(f"packed {output} ({size:.1f} MB) in {time.monotonic() - started:.1f} s")
    return output


def main() -> None:
    """Parse the arguments; pack or lock."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base", default="ubuntu@24.04", help="ubuntu@24.04 or host")
    parser.add_argument("--arch", default="amd64", choices=sorted(MACHINES))
    parser.add_argument("--output", type=Path, help="the .charm file to write")
    parser.add_argument("--lock", action="store_true", help="regenerate requirements.lock")
    args = parser.parse_args()
    ensure_tools()
    if args.lock:
        lock()
        return
    pack(target_for(args.base, args.arch), args.output)


if __name__ == "__main__":
    main()
