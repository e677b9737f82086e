"""The webhook intake as a real process on the host, fed by the sandbox over its manager link.

GitHub delivers webhooks from outside the unit; here the sandbox plays GitHub from a test host
(a network namespace). The intake runs on the host, as the charm runs it, publishing to the
RabbitMQ on the host's loopback; the sandbox reaches it over the test host's manager link: the
intake listens on the host's end of that link (``198.19.N.(4k+1)``, a /30 on-link for the test
host), the only address it binds. Nothing else is ever addressed.

- :func:`link_host_end`: the host's end of a test host's manager link.
- :class:`IntakeProcess`: writes the intake's config (``intake.config.IntakeConfig``) and secret
  files, starts ``python -m intake --config <file>``, waits for ``/healthz``, SIGKILLs and
  restarts it.
- :func:`point_webhooks`: makes an in-process sandbox deliver ``workflow_job`` webhooks to a URL.
- :func:`webhook_manager`: the environment's RunnerManager in reactive mode with the reconcile's
  safety net (``manager.job_safety_net``) sharing the intake's ledger.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from config.state import ReactiveConfig
from harness.local import LocalEnvironment
from harness.netns import entered
from harness.testnet import TestNet
from harness.testnet_serve import PublicSandbox
from intake.ledger import JobLedger
from intake.publisher import publish_job
from intake.routing import Flavor, route
from manager.job_safety_net import JobSafetyNet, SafetyNetSettings
from reactive.message import build_supported_labels
from runner_manager import RunnerManager

REPO_ROOT = Path(__file__).resolve().parents[1]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def link_host_end(testnet: TestNet, address: str) -> IPv4Address:
    """Return the host's end of the manager link of the test host at ``address``.

    Args:
        testnet: The test network.
        address: The test host's bridge address (e.g. an in-process sandbox's ``public_host``).

    Raises:
        LookupError: No test host with a manager link has that address.
    """
    for host in testnet.hosts.values():
        if str(host.address) == address and host.link_address is not None:
            return host.link_address - 1  # the /30: .1 on the host, .2 in the test host
    raise LookupError(f"no linked test host at {address}")


def namespace_of(testnet: TestNet, address: str) -> str:
    """Return the network namespace of the test host at ``address``."""
    for host in testnet.hosts.values():
        if str(host.address) == address:
            return host.namespace
    raise LookupError(f"no test host at {address}")


def free_port(address: IPv4Address) -> int:
    """A TCP port free on ``address`` now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((str(address), 0))
        return int(probe.getsockname()[1])


@dataclass
class IntakeProcess:
    """One unit's webhook intake, run as ``python -m intake --config <file>``.

    Attributes:
        workdir: Where its config, secret files and log go.
        host: The address it listens on.
        port: Its port.
        secret: The webhook secret (written to a 0600 file, never in arguments).
        mq_uri: The broker URI (written to a 0600 file).
        flavors: ``(queue_name, labels)`` of each flavor.
        ledger: Its sqlite ledger (the safety net shares it).
        api_url: The GitHub API root every job URL must start with.
        process: The running process, if any.
        starts: How many times it was started.
    """

    workdir: Path
    host: IPv4Address
    port: int
    secret: str = field(repr=False)
    mq_uri: str = field(repr=False)
    flavors: Sequence[tuple[str, Sequence[str]]]
    ledger: Path
    api_url: str
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Where GitHub delivers (``/webhook``)."""
        return f"http://{self.host}:{self.port}/webhook"

    @property
    def log_path(self) -> Path:
        """The process's output (every start appends)."""
        return self.workdir / "intake.log"

    def write_config(self) -> Path:
        """Write the config (0600) and the secret files (0600); return the config's path."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        secret_file, mq_file = self.workdir / "webhook-secret", self.workdir / "mq-uri"
        for path, text in ((secret_file, self.secret), (mq_file, self.mq_uri)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
        config = {
            "host": str(self.host),
            "port": self.port,
            "secret_file": str(secret_file),
            "mq_uri_file": str(mq_file),
            "flavors": [{"queue_name": q, "labels": list(labels)} for q, labels in self.flavors],
            "ledger": str(self.ledger),
            "max_body_bytes": 1_048_576,
            "api_url": self.api_url,
        }
        path = self.workdir / "intake.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(config, out, indent=1)
        return path

    def start(self, timeout: float = 30.0) -> float:
        """Start the process and wait until ``/healthz`` answers 200; return the seconds taken.

        Raises:
            RuntimeError: It exited or did not answer in time (with the end of its log).
        """
        config = self.write_config()
        began = time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "intake", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
        self.starts += 1
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.healthy():
                return time.monotonic() - began
            time.sleep(0.05)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the intake did not come up in {timeout:g} s:\n{tail}")

    def healthy(self) -> bool:
        """Whether ``GET /healthz`` answers 200 now."""
        try:
            url = f"http://{self.host}:{self.port}/healthz"
            with _OPENER.open(url, timeout=2) as response:
                return int(response.status) == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the process (no cleanup of any kind runs) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM the process, SIGKILL it after 5 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def point_webhooks(sandbox: PublicSandbox, namespace: str, url: str, secret: str) -> None:
    """Make an in-process sandbox deliver its webhooks to ``url``, signed with ``secret``.

    The sender thread is started inside the sandbox's test host (``namespace``), so deliveries
    leave from there, as GitHub's come from outside the unit.
    """
    sender = sandbox.webhooks
    sender.url, sender.secret = url, secret
    with entered(namespace):
        sender.start(sandbox.ctx.api_url, sandbox.base_url)


def flavor_labels(env: LocalEnvironment) -> tuple[str, ...]:
    """The labels the environment's runners register with (the intake's flavor labels)."""
    state = env.manager.state
    labels = build_supported_labels(
        state.labels, state.app_name, state.base_image.value, state.arch.value
    )
    return tuple(sorted(labels))


def webhook_manager(
    env: LocalEnvironment,
    mq_uri: str,
    queue_name: str,
    *,
    grace: timedelta,
    max_runs: int = 10,
    stale_after: timedelta = timedelta(seconds=20),
    **state_overrides: Any,
) -> RunnerManager:
    """The environment's manager in reactive mode, its reconcile running the safety net.

    The net shares the intake's ledger (``settings.intake_ledger_path``) and its routing rule.

    Args:
        env: The environment (its ``manager`` is replaced).
        mq_uri: The broker.
        queue_name: The flavor's queue.
        grace: Queued jobs younger than this are left to their webhook.
        max_runs: Workflow runs the net reads per sweep.
        stale_after: A claim the killed intake never confirmed is taken again after this
            (the production default, 60 s, would only slow the test down).
        state_overrides: More CharmState fields (e.g. ``base_virtual_machines``).

    Returns:
        The manager (also set as ``env.manager``).
    """
    reactive = ReactiveConfig(mq_uri=SecretStr(mq_uri), queue_name=queue_name)
    base = env.build_manager(reactive_config=reactive, **state_overrides)
    env.manager = base
    flavor = Flavor(queue_name=queue_name, labels=frozenset(flavor_labels(env)))
    net = JobSafetyNet(
        github=base._clients.github,
        path=base.config.path,
        api_url=env.sandbox.api_url,
        ledger=JobLedger(base.settings.intake_ledger_path, stale_after=stale_after),
        publish=publish_job,
        mq_uri=mq_uri,
        queue_name=queue_name,
        routes=lambda labels: route(labels, [flavor]) == flavor,
        settings=SafetyNetSettings(grace=grace, max_runs=max_runs),
    )
    env.manager = RunnerManager(
        base.app_name,
        base.unit,
        base.config,
        clients=base._clients,
        settings=base.settings,
        safety_net=net,
    )
    return env.manager
