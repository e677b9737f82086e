"""The soak's manager process (a reconcile loop in a child) and its LXD daemon restart.

The child reconciles as the charm's timer does; the parent can SIGKILL it mid-reconcile and
start another. Its metric events go to its own log (``GITHUB_RUNNER_METRICS_LOG``) and its
warnings to ``manager.log`` in the work directory, so that creations, reconciles and template
fallbacks can be placed in time after the run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any

from metrics.events import METRICS_LOG_PATH_ENV
from paths import REPO_ROOT

CHILD = textwrap.dedent(
    """
    import json, logging, os, sys, time
    from errors import GithubRunnerError
    from harness.local import RESOURCES, LocalEnvironment
    from metrics.shared_fs import SharedFilesystemManager
    logging.basicConfig(level=logging.WARNING,
                        format="%(created).3f %(levelname)s %(name)s: %(message)s")
    env = LocalEnvironment.attach(json.loads(sys.argv[1]))
    s = env.settings()
    env.options.storage = SharedFilesystemManager(s.metrics_storage_dir, s.quarantine_dir)
    env.manager = env.build_manager()
    size, stop = int(sys.argv[2]), sys.argv[3]
    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    n = 0
    while not os.path.exists(stop):
        n += 1
        print(json.dumps({"begin": n}), flush=True)
        began, error = time.monotonic(), None
        try:
            env.manager.reconcile(size, RESOURCES)
        except GithubRunnerError as exc:
            error = "handled " + type(exc).__name__
        except Exception as exc:
            error = f"uncaught {type(exc).__name__}: {exc}"[:300]
        print(json.dumps({"end": n, "s": round(time.monotonic() - began, 2), "error": error,
                          "t": time.time(), "rss_kib": rss(),
                          "fds": len(os.listdir("/proc/self/fd"))}), flush=True)
        time.sleep(1.0)
    """
)


class ManagerProcess:
    """The reconcile loop in a child process; its lines are collected by a reader thread."""

    def __init__(self, spec: str, size: int, workdir: Path):
        self.spec, self.size = spec, size
        self.stop_file = workdir / "stop"
        self.metrics_log = workdir / "metrics.log"
        self.log = workdir / "manager.log"
        self.records: list[dict[str, Any]] = []  # every line, with the child's pid
        self.began = threading.Event()
        self.proc: subprocess.Popen[str] | None = None
        self.pids: list[int] = []
        self._log: IO[str] | None = None

    def start(self) -> None:
        """Start a new child (after the first, or after a kill)."""
        path = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "lib"), str(REPO_ROOT)])
        if self._log is None:
            self._log = self.log.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, self.spec, str(self.size), str(self.stop_file)],
            env={**os.environ, "PYTHONPATH": path, METRICS_LOG_PATH_ENV: str(self.metrics_log)},
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.pids.append(self.proc.pid)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = {**json.loads(line), "pid": proc.pid}
            except ValueError:
                continue
            self.records.append(record)
            if "begin" in record:
                self.began.set()

    def kill_mid_reconcile(self, rng: random.Random) -> float:
        """SIGKILL the child at a random moment of its next reconcile; start a new one."""
        assert self.proc is not None
        self.began.clear()
        self.began.wait(60)
        delay = rng.uniform(0.1, 1.5)
        time.sleep(delay)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.start()
        return delay

    def stop(self) -> None:
        """Let the child finish its reconcile and exit (bounded), else kill it."""
        self.stop_file.touch()
        if self.proc is not None:
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def ends(self) -> list[dict[str, Any]]:
        """The finished reconciles."""
        return [r for r in self.records if "end" in r]

    def events(self) -> list[dict[str, Any]]:
        """The metric events the children wrote (one JSON object a line)."""
        if not self.metrics_log.exists():
            return []
        lines = self.metrics_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def warnings(self) -> list[tuple[float, str]]:
        """``(unix time, message)`` of the children's WARNING and ERROR lines."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            try:
                found.append((float(stamp), rest))
            except ValueError:
                continue  # a traceback's continuation line
        return found


def _is_daemon(pid: int) -> bool:
    """Whether a process named lxd is the daemon (``lxd --group root ...``: no subcommand).

    Not an instance's ``[lxc monitor]``, nor a helper (``lxd forkfile``, ``lxd waitready``).
    """
    try:
        argv = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"/lxd") and (len(argv) == 1 or argv[1][:1] == b"-")


def lxd_daemons() -> list[int]:
    """The pids of the running LXD daemons (one, normally)."""
    pids = subprocess.run(["pgrep", "-x", "lxd"], capture_output=True, text=True, check=False)
    return [int(p) for p in pids.stdout.split() if _is_daemon(int(p))]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def restart_lxd() -> dict[str, Any]:
    """SIGTERM the LXD daemon (instances keep running), then start it with setup-lxd.sh."""
    began = time.monotonic()
    daemons = lxd_daemons()
    for pid in daemons:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in daemons):
        time.sleep(0.2)
    start = subprocess.run(
        [str(REPO_ROOT / "scripts" / "setup-lxd.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return {
        "pids": daemons,
        "rc": start.returncode,
        "s": round(time.monotonic() - began, 1),
        "t": time.time(),
    }
