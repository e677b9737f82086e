"""Keep a number of reactive consumer processes alive, tracked by pid files.

Each consumer is ``timeout <REACTIVE_RUNNER_TIMEOUT_STR> python3 -m reactive.runner ...`` started
in its own session (so its process group id is its pid), as the unprivileged :data:`UBUNTU_USER`
when this runs as root and that user exists. The broker URI (it holds a password) goes to the
child in the environment variable :data:`MQ_URI_ENV`, never in its arguments.

Each consumer has a pid file (``reactive.pid_files``: pid, start time, safe against pid reuse);
stale pid files are deleted by every :func:`reconcile`. Nothing here parses ``ps`` output. The
pid file also records the SHA-256 of the consumers' config file at start: consumers started with
an older config (a rotated token, new labels) are replaced by the next :func:`reconcile`.

Consumers the reconcile has too many of are drained, not stopped: SIGUSR1 to the consumer
(``reactive.settling``) and ``drain_since`` in its pid file. One that holds a message whose
runner is booting sees it through (a SIGTERM would requeue it, and the consumer the broker then
gave it to, seeing no idle runner, would spawn a second runner for the job); an idle one exits
within a second. A draining consumer takes no job: it no longer counts toward the quantity, is
not signalled again, and is stopped the old way (SIGTERM, then SIGKILL) once its drain outlasts
``pickup_timeout + kill_grace + drain_margin``. ``reconcile(..., drain=False)`` (teardown) stops
every consumer not kept at once.

The charm writes that config file with :func:`write_runner_config` (format: reactive.runner).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errors import ReactiveError, ReactiveRunnerError  # the seed API names the latter here
from paths import SRC_DIR
from reactive.pid_files import (
    ConsumerProcess,
    children,
    is_alive,
    list_processes,
    locked,
    mark_draining,
    proc_stat,
    track_child,
    write_pid_file,
)
from reactive.types import ConsumerSettings

logger = logging.getLogger(__name__)

__all__ = [
    "MQ_URI_ENV",
    "PS_COMMAND_LINE_LIST",
    "PYTHON_BIN",
    "REACTIVE_RUNNER_LOG_PATH",
    "REACTIVE_RUNNER_SCRIPT_FILE",
    "REACTIVE_RUNNER_TIMEOUT_STR",
    "REMOVED_RUNNER_LOG_STR",
    "RUNNER_INSTALLED_TS_FILE_NAME",
    "TIMEOUT_COMMAND",
    "UBUNTU_USER",
    "ConsumerProcess",
    "ReactiveRunnerConfig",
    "ReactiveRunnerError",
    "config_digest",
    "list_processes",
    "reconcile",
    "write_runner_config",
]

RUNNER_INSTALLED_TS_FILE_NAME = "runner-installed.timestamp"
REMOVED_RUNNER_LOG_STR = "Removed reactive runner process: %s"
REACTIVE_RUNNER_LOG_PATH = Path("/var/log/reactive_runner")
# The entry's source; it is started as ``-m reactive.runner`` with the code root as working
# directory, so that ``src/`` (not ``src/reactive/``, whose module names would shadow the
# top-level runner.py and runner_manager.py) is first on the child's sys.path.
REACTIVE_RUNNER_SCRIPT_FILE = Path(__file__).with_name("runner.py")
REACTIVE_RUNNER_MODULE = "reactive.runner"
REACTIVE_RUNNER_TIMEOUT_STR = "1h"
# The interpreter running the charm; its sys.path is handed to the child as PYTHONPATH.
PYTHON_BIN = sys.executable or "/usr/bin/python3"
# Named by the seed API; NOT used for tracking (pid files with start times are): kept only so
# that an operator can list the consumers by hand with the same command line.
PS_COMMAND_LINE_LIST = ["ps", "axo", "pid,lstart,cmd", "--no-headers"]
TIMEOUT_COMMAND = "/usr/bin/timeout"
UBUNTU_USER = "ubuntu"

MQ_URI_ENV = "GITHUB_RUNNER_REACTIVE_MQ_URI"
DEFAULT_PID_DIR = Path("/run/github-runner/reactive")
DEFAULT_CONFIG_PATH = Path("/etc/github-runner/reactive-runner.json")
LOG_RETENTION_SECONDS = 7 * 24 * 3600
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_STDERR_LOG = "reactive-runner.stderr.log"


@dataclass(frozen=True)
class ReactiveRunnerConfig:
    """How to run the reactive consumer processes.

    Attributes:
        mq_uri: The broker URI. Secret: not in ``repr``, never logged, never in arguments.
        queue_name: The queue (the application name).
        config_path: The JSON file the charm writes for the consumers (see reactive.runner).
        pid_dir: Where the pid files live.
        log_dir: Where each consumer writes ``<pid>.log``.
        timeout: Lifetime of a consumer process (``timeout`` duration, e.g. ``1h``).
        kill_grace: Seconds between SIGTERM and SIGKILL when terminating consumers.
        drain_margin: Seconds a drain may last beyond the consumers' ``pickup_timeout`` plus
            ``kill_grace`` (a runner being created when it was asked) before it is stopped.
        user: Run consumers as this user when running as root and it exists; None: as the caller.
        entry_module: The module a consumer runs (``python3 -m``): :mod:`reactive.runner`, or a
            module that calls its ``main`` with another factory (tests).
    """

    mq_uri: str = field(repr=False)
    queue_name: str
    config_path: Path = field(default=DEFAULT_CONFIG_PATH, kw_only=True)
    pid_dir: Path = field(default=DEFAULT_PID_DIR, kw_only=True)
    log_dir: Path = field(default=REACTIVE_RUNNER_LOG_PATH, kw_only=True)
    timeout: str = field(default=REACTIVE_RUNNER_TIMEOUT_STR, kw_only=True)
    kill_grace: float = field(default=30.0, kw_only=True)
    drain_margin: float = field(default=120.0, kw_only=True)
    user: str | None = field(default=UBUNTU_USER, kw_only=True)
    entry_module: str = field(default=REACTIVE_RUNNER_MODULE, kw_only=True)

    def __post_init__(self) -> None:
        """Validate the fields that end up in a command line.

        Raises:
            ReactiveRunnerError: A field is unusable.
        """
        if not _QUEUE_NAME.match(self.queue_name):
            raise ReactiveRunnerError(f"invalid queue name {self.queue_name!r}")
        if not re.match(r"^\d+(\.\d+)?[smhd]?$", self.timeout):
            raise ReactiveRunnerError(f"invalid timeout {self.timeout!r}")
        if not self.mq_uri:
            raise ReactiveRunnerError("empty message queue URI")
        if self.kill_grace < 0 or self.drain_margin < 0:
            raise ReactiveRunnerError("kill_grace and drain_margin must not be negative")
        if not _MODULE_NAME.match(self.entry_module):
            raise ReactiveRunnerError(f"invalid entry module {self.entry_module!r}")


def _run_as(user: str | None) -> pwd.struct_passwd | None:
    """Return the account to run consumers as, or None to run as the caller.

    Args:
        user: The wanted user.

    Returns:
        Its passwd entry when running as root and the user exists, else None.
    """
    if user is None or os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(user)
    except KeyError:
        logger.warning("User %s does not exist; running reactive runners as root", user)
        return None


def _prepare_dirs(config: ReactiveRunnerConfig, account: pwd.struct_passwd | None) -> None:
    """Create the pid and log directories; the log directory belongs to the consumers' user.

    Args:
        config: The configuration.
        account: The consumers' account, if not the caller.
    """
    config.pid_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    config.log_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    if account is not None:
        os.chown(config.log_dir, account.pw_uid, account.pw_gid)
    now = time.time()
    for log in config.log_dir.glob("*.log"):
        with contextlib.suppress(OSError):
            if now - log.stat().st_mtime > LOG_RETENTION_SECONDS:
                log.unlink()


def _command(config: ReactiveRunnerConfig) -> list[str]:
    """Return the consumer command line (no secret in it).

    The consumer's lifetime (``timeout``) ends in a drain, as a scale-down does: SIGUSR1 to the
    consumer alone (``--foreground``: not to the ``mount`` or ``losetup`` it may be running for
    a runner's metrics store), then SIGKILL if it still runs when a drain may have ended. A
    SIGTERM there would requeue a message whose runner is booting, and the consumer it went to
    would make the job a second runner.

    Args:
        config: The configuration.

    Returns:
        The argument list.
    """
    return [
        TIMEOUT_COMMAND,
        "--foreground",
        "--signal=USR1",
        f"--kill-after={max(int(_drain_limit(config)), 1)}s",
        config.timeout,
        PYTHON_BIN,
        "-m",
        config.entry_module,
        "--config",
        str(config.config_path),
        "--log-dir",
        str(config.log_dir),
        "--",
        config.queue_name,
    ]


def config_digest(config_path: Path) -> str:
    """Return the SHA-256 of the consumers' config file ("" when it cannot be read).

    Args:
        config_path: The config file.

    Returns:
        The hex digest.
    """
    try:
        return hashlib.sha256(config_path.read_bytes()).hexdigest()
    except OSError:
        return ""


def write_runner_config(
    config: ReactiveRunnerConfig,
    runner_manager: Mapping[str, Any],
    consumer: Mapping[str, Any] | None = None,
) -> bool:
    """Write the consumers' config file atomically, readable only by the consumers' user.

    Args:
        config: The reactive configuration (its ``config_path`` and ``user``).
        runner_manager: The object the consumers' factory receives (holds the GitHub token:
            secret).
        consumer: ConsumerSettings fields (``supported_labels``, durations), JSON types.

    Returns:
        Whether the content changed (the next reconcile then restarts the consumers).

    Raises:
        ReactiveRunnerError: The file cannot be written or the data is not JSON-serialisable.
    """
    try:
        content = json.dumps(
            {
                "consumer": dict(consumer or {}),
                "runner_manager": dict(runner_manager),
            },
            sort_keys=True,
            indent=1,
        ).encode()
    except (TypeError, ValueError) as exc:
        raise ReactiveRunnerError(f"reactive config is not JSON-serialisable: {exc}") from exc
    path = config.config_path
    if config_digest(path) == hashlib.sha256(content).hexdigest():
        return False
    account = _run_as(config.user)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if account is not None:
                os.fchown(fd, account.pw_uid, account.pw_gid)
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError as exc:
        raise ReactiveRunnerError(f"cannot write {path}: {exc.strerror}") from exc
    logger.info("Wrote the reactive runner config %s", path)
    return True


def _spawn(config: ReactiveRunnerConfig, account: pwd.struct_passwd | None, digest: str) -> int:
    """Start one consumer process and record it.

    Args:
        config: The configuration.
        account: The account to run it as, or None for the caller's.
        digest: The config file's digest, recorded in the pid file.

    Returns:
        The pid of the started process.

    Raises:
        ReactiveRunnerError: It could not be started.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env[MQ_URI_ENV] = config.mq_uri
    env["PYTHONUNBUFFERED"] = "1"
    uid = gid = None
    groups: list[int] | None = None
    if account is not None:
        env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
        uid, gid = account.pw_uid, account.pw_gid
        groups = os.getgrouplist(account.pw_name, account.pw_gid)
    code_root = SRC_DIR
    try:
        with (config.log_dir / _STDERR_LOG).open("ab") as stderr:
            proc = subprocess.Popen(
                _command(config),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                env=env,
                cwd=code_root,
                start_new_session=True,
                close_fds=True,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ReactiveRunnerError(f"cannot start a reactive runner: {exc}") from exc
    track_child(proc)
    stat = proc_stat(proc.pid)
    if stat is None or stat[0] in ("Z", "X"):
        raise ReactiveRunnerError(f"reactive runner {proc.pid} exited at once")
    write_pid_file(config.pid_dir, proc.pid, stat[1], config.queue_name, digest)
    logger.info("Started reactive runner process %s for queue %s", proc.pid, config.queue_name)
    return proc.pid


def _signal_group(process: ConsumerProcess, sig: signal.Signals) -> None:
    """Signal a consumer's process group, only if the recorded process is still the same.

    Args:
        process: The consumer.
        sig: The signal.
    """
    if not is_alive(process.pid, process.start_time):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)


def _terminate(processes: list[ConsumerProcess], grace: float) -> None:
    """Stop consumers: SIGTERM to each process group, SIGKILL to those alive after the grace.

    Args:
        processes: The consumers to stop.
        grace: Seconds to wait before SIGKILL.
    """
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = list(processes)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in remaining if is_alive(p.pid, p.start_time)]
    for process in remaining:
        logger.warning("Reactive runner %s ignored SIGTERM for %.0fs; killing", process.pid, grace)
        _signal_group(process, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [p for p in remaining if is_alive(p.pid, p.start_time)]
    for process in processes:
        process.pid_file.unlink(missing_ok=True)
        logger.info(REMOVED_RUNNER_LOG_STR, process.pid)


def _drain_limit(config: ReactiveRunnerConfig) -> float:
    """Return how long a drain may last: ``pickup_timeout + kill_grace + drain_margin``.

    Args:
        config: The configuration (the consumers' config file holds ``pickup_timeout``).

    Returns:
        Seconds.
    """
    try:
        section = json.loads(config.config_path.read_bytes()).get("consumer", {})
        pickup = ConsumerSettings.from_mapping(config.queue_name, section).pickup_timeout
    except (OSError, ValueError, AttributeError, TypeError, ReactiveError):
        pickup = ConsumerSettings(config.queue_name).pickup_timeout
    return pickup + config.kill_grace + config.drain_margin


def _ask_to_drain(process: ConsumerProcess) -> bool:
    """Send SIGUSR1 to the consumer under a ``timeout`` process (not to ``timeout``: it dies).

    Args:
        process: The consumer.

    Returns:
        Whether a consumer process was signalled (none while it starts or ends: it holds
        nothing then).
    """
    if not is_alive(process.pid, process.start_time):
        return False
    asked = False
    for child in children(process.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGUSR1)
            asked = True
    return asked


def reconcile(quantity: int, config: ReactiveRunnerConfig, *, drain: bool = True) -> int:
    """Keep exactly ``quantity`` consumer processes taking jobs for the queue.

    Consumers started with another version of the config file (a new token, new labels...)
    are replaced: stopped (they requeue what they hold) and started again. Surplus consumers
    (the newest) are drained; draining ones are not counted (see the module docstring).

    Args:
        quantity: The number of consumer processes wanted.
        config: The configuration for the reactive runner.
        drain: False stops surplus and draining consumers at once (teardown): SIGTERM, a held
            message requeued.

    Returns:
        The difference applied to the consumers that take jobs (draining ones not counted):
        positive when processes were started, negative when consumers were stopped or asked to
        drain.

    Raises:
        ReactiveRunnerError: If the quantity is negative or a process fails to spawn.
    """
    if quantity < 0:
        raise ReactiveRunnerError(f"negative reactive runner quantity {quantity}")
    account = _run_as(config.user)
    try:
        _prepare_dirs(config, account)
    except OSError as exc:
        raise ReactiveRunnerError(f"cannot prepare reactive runner directories: {exc}") from exc
    with locked(config.pid_dir):
        alive = list_processes(config.pid_dir)
        digest = config_digest(config.config_path)
        outdated = [p for p in alive if p.config_digest != digest]
        draining = [p for p in alive if p.config_digest == digest and p.drain_since is not None]
        serving = [p for p in alive if p.config_digest == digest and p.drain_since is None]
        delta = quantity - sum(1 for p in alive if p.drain_since is None)
        newest_first = sorted(serving, key=lambda p: (p.start_time, p.pid), reverse=True)
        surplus = newest_first[: max(len(serving) - quantity, 0)]
        logger.info(
            "Reactive runners: %d alive (%d with an outdated config, %d draining), %d wanted",
            len(alive),
            len(outdated),
            len(draining),
            quantity,
        )
        now, limit = time.monotonic(), _drain_limit(config)
        overdue = [p for p in draining if not drain or now - (p.drain_since or 0.0) > limit]
        for process in overdue if drain else []:
            logger.warning(
                "Reactive runner %s drained for over %.0fs; stopping", process.pid, limit
            )
        stopping = outdated + overdue
        for process in surplus:
            if drain and _ask_to_drain(process):
                mark_draining(process, now)
                logger.info("Asked reactive runner %s to drain", process.pid)
            else:
                stopping.append(process)
        if stopping:
            _terminate(stopping, config.kill_grace)
        for _ in range(quantity - (len(serving) - len(surplus))):
            _spawn(config, account, digest)
    return delta
