"""Command line of the runner app: configure, remove, run (the listener loop), --version.

Exit codes follow actions/runner: 0 success (an ephemeral runner ran its job, or it was stopped),
1 terminated with an error (not configured, bad arguments, registration gone), 2 retryable error
(the server could not be reached for too long).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from . import client, settings
from .client import ProtocolError, RunnerClient
from .worker import JobRunner

EXIT_SUCCESS = 0
EXIT_TERMINATED = 1
EXIT_RETRYABLE = 2
REGISTER_TIMEOUT = 30.0
RESULTS = {"success": "Succeeded", "failure": "Failed", "cancelled": "Canceled"}
INPUT_PREFIX = "ACTIONS_RUNNER_INPUT_"
CONFIGURE_OPTIONS = (
    "--url",
    "--token",
    "--name",
    "--labels",
    "--runnergroup",
    "--work",
    "--ephemeral",
    "--unattended",
    "--replace",
    "--disableupdate",
    "--no-default-labels",
)
FLAGS = ("--ephemeral", "--unattended", "--replace", "--disableupdate", "--no-default-labels")


def with_env_inputs(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """Add options given as ``ACTIONS_RUNNER_INPUT_<NAME>`` variables, as actions/runner does.

    ``ACTIONS_RUNNER_INPUT_JITCONFIG`` keeps the JIT config out of the process arguments;
    flags are set by "true".

    Args:
        argv: the command line arguments.
        options: the options the command accepts (e.g. "--token").

    Returns:
        The arguments with the missing options filled from the environment.
    """
    args = list(argv)
    for option in options:
        if option in args:
            continue
        value = os.environ.get(INPUT_PREFIX + option.lstrip("-").replace("-", "").upper())
        if value is None or value == "":
            continue
        if option in FLAGS:
            if value.lower() == "true":
                args.append(option)
        else:
            args += [option, value]
    return args


log = logging.getLogger("sandbox_runner")


def _diag_dir() -> Path:
    path = settings.root_dir() / "_diag"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _setup_logging(kind: str) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    handler = logging.FileHandler(str(_diag_dir() / f"{kind}_{stamp}-utc.log"))
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s"))
    log.addHandler(handler)
    console = logging.StreamHandler(sys.stdout)
    # Like actions/runner's console: "2026-11-23 07:52:24Z: Listening for Jobs"
    formatter = logging.Formatter("%(asctime)sZ: %(message)s", "%Y-%m-%d %H:%M:%S")
    formatter.converter = time.gmtime
    console.setFormatter(formatter)
    log.addHandler(console)
    log.setLevel(logging.INFO)


def _configure_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="config.sh", description="Register this runner.")
    parser.add_argument("--url", required=True, help="https://host/owner/repo or https://host/org")
    parser.add_argument("--token", required=True, help="registration token")
    parser.add_argument("--name", default=None)
    parser.add_argument("--labels", default="")
    parser.add_argument("--runnergroup", default="")
    parser.add_argument("--work", default="_work")
    parser.add_argument("--ephemeral", action="store_true")
    parser.add_argument("--unattended", action="store_true")
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--disableupdate", action="store_true")
    parser.add_argument("--no-default-labels", action="store_true")
    return parser


def configure(argv: list[str]) -> int:
    """``config.sh --url ... --token ...``: register and write the settings files.

    Args:
        argv: arguments after "configure".

    Returns:
        The exit code.
    """
    args = _configure_parser().parse_args(with_env_inputs(argv, CONFIGURE_OPTIONS))
    root = settings.root_dir()
    if (root / settings.RUNNER_FILE).exists():
        log.error(
            "Cannot configure the runner because it is already configured. "
            "Remove it first with config.sh remove."
        )
        return EXIT_TERMINATED
    parsed = urlparse(args.url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or not parsed.path.strip("/"):
        log.error("Invalid --url %r: expected <github-url>/<owner>/<repo> or /<org>", args.url)
        return EXIT_TERMINATED
    server_url = f"{parsed.scheme}://{parsed.netloc}"
    name = args.name or settings.root_dir().name
    body = {
        "url_path": parsed.path,
        "name": name,
        "labels": [x.strip() for x in args.labels.split(",") if x.strip()],
        "runner_group": args.runnergroup,
        "ephemeral": args.ephemeral,
        "work_folder": args.work,
        "replace": args.replace,
        "no_default_labels": args.no_default_labels,
        "arch": settings.arch(),
    }
    try:
        target = os.environ.get(settings.ENV_SERVER_URL) or server_url
        answer = client.register(target, args.token, body, REGISTER_TIMEOUT)
    except ProtocolError as exc:
        log.error("Registration failed: %s", exc)
        return EXIT_TERMINATED
    runner, credentials = answer.get(settings.RUNNER_FILE), answer.get(settings.CREDENTIALS_FILE)
    if not isinstance(runner, dict) or not isinstance(credentials, dict):
        log.error("Registration answer is malformed")
        return EXIT_TERMINATED
    runner["arch"] = settings.arch()
    settings.save(runner, credentials, root)
    log.info("Runner successfully added: %s (id %s)", name, runner.get("agentId"))
    log.info("Settings Saved.")
    return EXIT_SUCCESS


def remove(argv: list[str]) -> int:
    """``config.sh remove --token ...``: deregister and delete the settings files.

    Args:
        argv: arguments after "remove".

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="config.sh remove")
    parser.add_argument("--token", required=True, help="remove token")
    parser.add_argument("--unattended", action="store_true")
    args = parser.parse_args(with_env_inputs(argv, ("--token", "--unattended")))
    root = settings.root_dir()
    try:
        current = settings.load(root)
    except settings.SettingsError as exc:
        log.error("%s", exc)
        return EXIT_TERMINATED
    try:
        client.deregister(current.server_url, args.token, current.runner_id, REGISTER_TIMEOUT)
    except ProtocolError as exc:
        if exc.status != 404:
            log.error("Removal failed: %s", exc)
            return EXIT_TERMINATED
    settings.remove(root)
    log.info("Runner removed successfully")
    return EXIT_SUCCESS


class Listener:
    """The run loop: connect, long-poll for a job, run it, repeat unless ephemeral."""

    def __init__(self, config: settings.Settings, tuning: settings.Tuning):
        self.config = config
        self.tuning = tuning
        self.client = RunnerClient(config.server_url, config.credential, tuning.http_timeout)
        self.stop = threading.Event()

    def _retry(self, what: str, failing_since: float | None, exc: ProtocolError) -> float:
        now = time.monotonic()
        since = failing_since if failing_since is not None else now
        log.warning("%s failed: %s", what, exc)
        if now - since > self.tuning.unreachable_timeout:
            raise exc
        self.stop.wait(min(5.0, 0.5 + (now - since) / 4))
        return since

    def _connect(self) -> int | None:
        failing: float | None = None
        while not self.stop.is_set():
            try:
                self.client.connect(settings.version(), settings.arch())
                return None
            except ProtocolError as exc:
                if exc.status in (401, 403, 404):
                    log.error("The runner registration was refused: %s", exc)
                    return EXIT_TERMINATED
                try:
                    failing = self._retry("connect", failing, exc)
                except ProtocolError:
                    return EXIT_RETRYABLE
        return EXIT_SUCCESS

    def run(self) -> int:
        """Serve until the ephemeral job is done, the idle limit passes or a signal comes.

        Returns:
            The exit code.
        """
        code = self._connect()
        if code is not None:
            return code
        log.info("Connected to GitHub (runner %s, id %s)", self.config.name, self.config.runner_id)
        log.info("Current runner version: '%s'", settings.version())
        log.info("Listening for Jobs")
        idle_since = time.monotonic()
        failing = None
        while not self.stop.is_set():
            if self.tuning.max_idle and time.monotonic() - idle_since > self.tuning.max_idle:
                log.info("No job for %.0f s: exiting", self.tuning.max_idle)
                return EXIT_SUCCESS
            try:
                job = self.client.poll(self.tuning.poll_wait)
                failing = None
            except ProtocolError as exc:
                if exc.status == 401:
                    log.error("Runner registration has been deleted from the server: %s", exc)
                    return EXIT_TERMINATED
                try:
                    failing = self._retry("poll", failing, exc)
                except ProtocolError:
                    return EXIT_RETRYABLE
                continue
            if job is None:
                continue
            log.info("Running job: %s", job.get("name"))
            conclusion = JobRunner(
                self.client,
                self.config,
                tuning=self.tuning,
                job=job,
                diag_dir=_diag_dir(),
                cancel=self.stop,
            ).run()
            result = RESULTS.get(conclusion, conclusion)
            log.info("Job %s completed with result: %s", job.get("name"), result)
            if self.config.ephemeral:
                return EXIT_SUCCESS
            idle_since = time.monotonic()
        return EXIT_SUCCESS


def run(argv: list[str]) -> int:
    """``run.sh [--jitconfig X]``.

    Args:
        argv: arguments after "run".

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="run.sh")
    parser.add_argument("--jitconfig", default=None)
    parser.add_argument("--once", action="store_true", help="take one job (ephemeral)")
    args = parser.parse_args(with_env_inputs(argv, ("--jitconfig",)))
    try:
        config = settings.from_jitconfig(args.jitconfig) if args.jitconfig else settings.load()
        tuning = settings.Tuning.load(config.runner)
    except settings.SettingsError as exc:
        log.error("%s", exc)
        return EXIT_TERMINATED
    if args.once:
        config.runner["ephemeral"] = True
    listener = Listener(config, tuning)

    def _stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("Received signal %s: stopping", signum)
        listener.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return listener.run()


def main(argv: list[str]) -> int:
    """Dispatch ``configure``, ``remove``, ``run`` or ``--version``.

    Args:
        argv: command line arguments.

    Returns:
        The exit code.
    """
    if argv[:1] in (["--version"], ["-v"]):
        print(settings.version())
        return EXIT_SUCCESS
    if argv[:1] == ["--commit"]:
        print("sandbox")
        return EXIT_SUCCESS
    commands = {"configure": configure, "remove": remove, "run": run}
    if not argv or argv[0] not in commands:
        print(
            "usage: Runner.Listener {configure,remove,run} [options] | --version", file=sys.stderr
        )
        return EXIT_TERMINATED
    _setup_logging("Runner")
    try:
        return commands[argv[0]](argv[1:])
    except SystemExit as exc:  # argparse: 0 for --help, 2 for bad arguments
        return EXIT_SUCCESS if exc.code == 0 else EXIT_TERMINATED
