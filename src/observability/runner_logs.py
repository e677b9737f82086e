"""Logs of unhealthy runners, kept as plain bounded ``*.log`` files where the agents collect them.

Before an unhealthy runner goes, its logs (the runner application's ``_diag/*.log``, syslog and
``/var/log/github-runner.log``) are gathered inside the instance into one text file, each source
under a ``==> path <==`` header and cut to its last ``PER_SOURCE_BYTES``. The manager pulls that
file (capped) and keeps it as ``<log dir>/<runner>.log``: the grafana-agent collects
``/var/log/**/*log``, so the lines reach Loki labelled with the ``filename``.

Bounds: each kept file holds at most ``MAX_LOG_BYTES`` (the end of what was pulled), and at most
``MAX_LOG_FILES`` files are kept (the oldest go first). Files are written through a temporary
file in the same directory and renamed, never following a symlink planted in its place.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

DEFAULT_LOG_DIR = Path("/var/log/github-runner")
PER_SOURCE_BYTES = 256 << 10
MAX_LOG_BYTES = 1 << 20
MAX_LOG_FILES = 50
INSTANCE_LOG_PATH = "/tmp/github-runner-logs.log"  # noqa: S108 - inside the runner instance


def collect_command(runner_dir: str, out: str = INSTANCE_LOG_PATH) -> list[str]:
    """Return the command that gathers a runner's logs into one text file inside the instance.

    Args:
        runner_dir: The runner application directory inside the instance.
        out: Where to write the gathered text.

    Returns:
        The command (bash), for ``instance.execute``.
    """
    diag = shlex.quote(f"{runner_dir.rstrip('/')}/_diag")
    script = (
        f"for f in {diag}/*.log /var/log/syslog /var/log/github-runner.log; do "
        '[ -f "$f" ] || continue; printf "==> %s <==\\n" "$f"; '
        f'tail -c {PER_SOURCE_BYTES} "$f"; echo; done > {shlex.quote(out)}'
    )
    return ["bash", "-c", script]


def keep_log(
    log_dir: Path,
    runner_name: str,
    data: bytes,
    *,
    max_bytes: int = MAX_LOG_BYTES,
    max_files: int = MAX_LOG_FILES,
) -> Path:
    """Write a runner's logs as ``<log_dir>/<runner_name>.log``, then rotate old ones out.

    Args:
        log_dir: The directory the agents collect (created if missing).
        runner_name: The runner (a file name: no ``/``).
        data: The gathered log text.
        max_bytes: Largest file kept: only the end of ``data`` is kept beyond it.
        max_files: Most files kept in ``log_dir``: the oldest go first.

    Returns:
        The file written.

    Raises:
        ValueError: If the runner name is not a plain file name.
        OSError: If the file cannot be written.
    """
    if not runner_name or "/" in runner_name or runner_name.startswith("."):
        raise ValueError(f"not a runner name: {runner_name!r}")
    log_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    if len(data) > max_bytes:
        cut = data[-max_bytes:]
        newline = cut.find(b"\n")
        data = b"[... earlier lines cut ...]\n" + (cut[newline + 1 :] if newline >= 0 else cut)
    target = log_dir / f"{runner_name}.log"
    tmp = log_dir / f".{runner_name}.log.tmp"
    tmp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, target)
    rotate(log_dir, max_files)
    return target


def rotate(log_dir: Path, max_files: int) -> list[Path]:
    """Delete the oldest regular ``*.log`` files of ``log_dir`` beyond ``max_files``.

    Args:
        log_dir: The directory.
        max_files: How many to keep.

    Returns:
        The files deleted.
    """
    files: list[tuple[float, str, Path]] = []
    with os.scandir(log_dir) as entries:
        for entry in entries:
            if not entry.name.endswith(".log") or entry.name.startswith("."):
                continue
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode):
                files.append((info.st_mtime, entry.name, Path(entry.path)))
    files.sort()
    doomed = [path for _, _, path in files[: max(len(files) - max_files, 0)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed
