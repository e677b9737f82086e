"""Track reactive consumer processes by pid files, safe against pid reuse.

A pid file ``<pid_dir>/<pid>.json`` records the pid of a consumer (its ``timeout`` process) and
its start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot). A process counts as
alive only when ``/proc/<pid>/stat`` exists, is not a zombie and shows the recorded start time,
so a dead consumer whose pid the kernel gave to another process is never counted nor signalled.
Nothing here parses ``ps`` output.

A consumer asked to drain (``reactive.runner_manager``) has ``drain_since`` in its pid file: the
``time.monotonic()`` of the request (CLOCK_MONOTONIC is system-wide on Linux, and a process
alive now was started in this boot, so the value compares across the hooks' processes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from errors import ReactiveRunnerError

logger = logging.getLogger(__name__)

_LOCK_FILE = ".lock"
_LOCK_TIMEOUT = 120.0

# Popen objects of the children this process started, so they are reaped (no zombies) while a
# long-lived caller (tests, a demo) keeps running. A hook process exits and init reaps them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ConsumerProcess:
    """A consumer process as its pid file records it.

    Attributes:
        pid: The pid of the process started (``timeout``); also its process group id.
        start_time: Its start time in clock ticks since boot (``/proc/<pid>/stat`` field 22).
        pid_file: The pid file.
        config_digest: SHA-256 of the config file the process was started with.
        drain_since: When it was asked to drain (``time.monotonic()``), or None: it takes jobs.
    """

    pid: int
    start_time: int
    pid_file: Path
    config_digest: str = ""
    drain_since: float | None = None


def track_child(proc: subprocess.Popen[bytes]) -> None:
    """Remember a child this process started, so that it is reaped once it exits.

    Args:
        proc: The child.
    """
    _CHILDREN[proc.pid] = proc


def proc_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, start time) of a process from ``/proc/<pid>/stat``, or None if gone.

    Args:
        pid: The process id.

    Returns:
        The one-letter state and field 22 (start time), or None when there is no such process.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the
    # last ')'. What follows starts at field 3 (state); field 22 is then index 19.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def is_alive(pid: int, start_time: int) -> bool:
    """Return whether the process with this pid is still the one that started at start_time.

    Args:
        pid: The process id.
        start_time: The recorded start time.

    Returns:
        True when it runs (not a zombie) and its start time matches.
    """
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]  # reaped now
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == start_time


def children(pid: int) -> list[int]:
    """Return the pids of the running children of a process (its ``timeout``'s consumer).

    Args:
        pid: The parent.

    Returns:
        Its children that are not zombies, from ``/proc`` (none when it is gone).
    """
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()  # field 3 (state) on, field 4 is the ppid
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(stat_file.parent.name))
    return sorted(found)


def _read_pid_file(path: Path) -> ConsumerProcess | None:
    """Read a pid file.

    Args:
        path: The pid file.

    Returns:
        The record, or None if it is unreadable or malformed.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pid, start_time = data["pid"], data["start_time"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or not isinstance(start_time, int) or pid <= 1:
        return None
    if path.name != f"{pid}.json":
        return None
    digest = data.get("config_digest", "")
    since = data.get("drain_since")
    return ConsumerProcess(
        pid=pid,
        start_time=start_time,
        pid_file=path,
        config_digest=digest if isinstance(digest, str) else "",
        drain_since=float(since)
        if isinstance(since, int | float) and not isinstance(since, bool)
        else None,
    )


def list_processes(pid_dir: Path) -> list[ConsumerProcess]:
    """Return the live consumer processes; delete stale pid files on the way.

    A pid file is stale when it is malformed, its pid is dead or a zombie, or its pid now
    belongs to a process with another start time (pid reuse).

    Args:
        pid_dir: The pid file directory.

    Returns:
        The live processes, oldest first.
    """
    alive = []
    for path in sorted(pid_dir.glob("*.json")):
        record = _read_pid_file(path)
        if record is not None and is_alive(record.pid, record.start_time):
            alive.append(record)
            continue
        logger.info("Removing stale reactive runner pid file %s", path.name)
        path.unlink(missing_ok=True)
    for tmp in pid_dir.glob("*.json.tmp"):
        tmp.unlink(missing_ok=True)
    return sorted(alive, key=lambda p: (p.start_time, p.pid))


def write_pid_file(
    pid_dir: Path, pid: int, start_time: int, queue_name: str, config_digest: str
) -> Path:
    """Write a pid file atomically.

    Args:
        pid_dir: The pid file directory.
        pid: The process id.
        start_time: Its start time.
        queue_name: The queue it consumes (informational).
        config_digest: SHA-256 of the config file it was started with.

    Returns:
        The pid file.
    """
    path = pid_dir / f"{pid}.json"
    record = {
        "pid": pid,
        "start_time": start_time,
        "queue": queue_name,
        "config_digest": config_digest,
    }
    _write_atomically(path, record)
    return path


def mark_draining(process: ConsumerProcess, since: float) -> ConsumerProcess:
    """Record in its pid file (atomically) that a consumer was asked to drain.

    Args:
        process: The consumer.
        since: When it was asked (``time.monotonic()``).

    Returns:
        The record, draining.
    """
    try:
        record = json.loads(process.pid_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    record.update(pid=process.pid, start_time=process.start_time, drain_since=since)
    record.setdefault("config_digest", process.config_digest)
    _write_atomically(process.pid_file, record)
    return replace(process, drain_since=since)


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    """Write a pid file's JSON through a temporary file and a rename.

    Args:
        path: The pid file.
        record: Its content.
    """
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(path)


@contextlib.contextmanager
def locked(pid_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the pid directory (no two reconciles at once).

    Args:
        pid_dir: The pid file directory.

    Yields:
        Nothing, with the lock held.

    Raises:
        ReactiveRunnerError: The lock was not obtained in time.
    """
    with (pid_dir / _LOCK_FILE).open("a") as lock:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ReactiveRunnerError(
                        "another reactive reconcile holds the lock"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
