"""Sessions of the closed test network: ownership, leftovers and their cleanup.

Each :class:`harness.testnet.TestNet` session keeps its files in ``RUN_DIR/<session>/`` and
holds an flock on ``RUN_DIR/<session>/lock`` for as long as it lives. A session whose lock nobody
holds (its process died) is stale: :func:`cleanup_stale` removes its namespaces (killing their
processes), host interfaces, routes and LXD network. Everything it touches is named ``tn`` + 4
hex digits (+ ``-<host>``, ``h<n>`` or ``l<n>``), so nothing else is ever removed. Allocation and
cleanup hold ``RUN_DIR/.alloc.lock``, so a session being created is never taken for a stale one.

``python -m harness.testnet cleanup`` removes stale sessions; ``list`` shows all.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
from ipaddress import IPv4Network
from pathlib import Path
from typing import IO

from harness.netns import IP, NetnsError, delete_link, delete_namespace, links, namespaces, run

RUN_DIR = Path(os.environ.get("GITHUB_RUNNER_TESTNET_DIR", "/run/github-runner-testnet"))
SESSION_INDEXES = range(64)
SESSION_RE = re.compile(r"^tn([0-9a-f]{4})$")
OWNED_RE = re.compile(r"^tn([0-9a-f]{4})(?:-[a-z0-9-]+|[hl][0-9]{1,3})$")


def bridge_subnet(index: int) -> IPv4Network:
    """The bridge subnet of session index N: 198.18.4N.0/22 (N < 64; 1022 addresses)."""
    return IPv4Network(f"198.18.{4 * index}.0/22")


def link_subnet(index: int) -> IPv4Network:
    """The manager links of session index N: 198.19.N.0/24 (a /30 each)."""
    return IPv4Network(f"198.19.{index}.0/24")


def lxd_network_names() -> list[str]:
    """Names of the LXD networks (managed or not)."""
    return [url.rsplit("/", 1)[-1] for url in json.loads(run(["lxc", "query", "/1.0/networks"]))]


def lock(path: Path, blocking: bool) -> IO[str] | None:
    """Open and flock ``path``; None when another holder has it (non-blocking)."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        return None
    return handle


def session_index(state_dir: Path) -> int | None:
    """The subnet index N recorded for a session (None when unknown)."""
    try:
        return int(json.loads((state_dir / "session.json").read_text())["index"])
    except (OSError, ValueError, KeyError):
        return None


def remove_state_dir(state_dir: Path) -> None:
    """Delete a session's files."""
    for child in state_dir.iterdir():
        child.unlink()
    state_dir.rmdir()


def teardown(session: str, index: int | None) -> list[str]:
    """Remove what a session made; return what could not be removed."""
    problems = []
    for namespace in namespaces():
        if namespace.startswith(f"{session}-"):
            delete_namespace(namespace)
    for link in links():
        if OWNED_RE.match(link) and link.startswith(session) and link != session:
            delete_link(link)
    if index is not None:
        for net in (bridge_subnet(index), link_subnet(index)):
            with contextlib.suppress(NetnsError):
                run([IP, "route", "del", "unreachable", str(net)])
    if session in lxd_network_names():
        problems += _delete_profiles_on(session)
        try:
            run(["lxc", "network", "delete", session], timeout=60)
        except NetnsError as exc:
            problems.append(f"LXD network {session}: {exc}")
    return problems


def _delete_profiles_on(network: str) -> list[str]:
    """Delete the unused profiles giving a NIC on ``network`` (e.g. the runner profile).

    LXD refuses to delete a network a profile still names; profiles instances use are left.
    """
    problems = []
    for profile in json.loads(run(["lxc", "query", "/1.0/profiles?recursion=1"])):
        devices = (profile.get("devices") or {}).values()
        if profile.get("used_by") or not any(d.get("network") == network for d in devices):
            continue
        try:
            run(["lxc", "profile", "delete", profile["name"]], timeout=60)
        except NetnsError as exc:
            problems.append(f"LXD profile {profile['name']}: {exc}")
    return problems


def sessions(run_dir: Path = RUN_DIR) -> dict[str, bool]:
    """Every test network session found on the host, and whether its owner is alive."""
    found: dict[str, bool] = {}
    names = lxd_network_names() + namespaces() + links()
    if run_dir.is_dir():
        names += [d.name for d in run_dir.iterdir()]
    for name in names:
        match = OWNED_RE.match(name) or SESSION_RE.match(name)
        if match:
            found.setdefault(f"tn{match.group(1)}", False)
    for session in found:
        lock_path = run_dir / session / "lock"
        if lock_path.exists():
            handle = lock(lock_path, blocking=False)
            found[session] = handle is None
            if handle is not None:
                handle.close()
    return found


def cleanup_stale(run_dir: Path = RUN_DIR, *, locked: bool = False) -> list[str]:
    """Tear down the sessions whose owner is gone; return their ids.

    Args:
        run_dir: the state directory.
        locked: the caller already holds the allocation lock.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    alloc = None if locked else lock(run_dir / ".alloc.lock", blocking=True)
    try:
        removed = []
        for session, live in sessions(run_dir).items():
            if live:
                continue
            state_dir = run_dir / session
            index = session_index(state_dir) if state_dir.is_dir() else None
            if not teardown(session, index):
                if state_dir.is_dir():
                    remove_state_dir(state_dir)
                removed.append(session)
        return removed
    finally:
        if alloc is not None:
            alloc.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.testnet cleanup|list``."""
    parser = argparse.ArgumentParser(
        prog="python -m harness.testnet",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["cleanup", "list"])
    args = parser.parse_args(argv)
    if args.command == "cleanup":
        removed = cleanup_stale()
        print(f"removed {len(removed)} stale test network(s): {' '.join(removed) or '-'}")
        return 0
    for session, live in sorted(sessions().items()):
        index = session_index(RUN_DIR / session)
        subnet = "?" if index is None else bridge_subnet(index)
        print(f"{session} {'live' if live else 'stale'} {subnet}")
    return 0
