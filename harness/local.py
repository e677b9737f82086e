"""A local environment: the sandbox GitHub, real LXD, and the charm's real RunnerManager.

The demo, the integration tests and the benchmarks use it. Runners are LXD containers (the
charm's test mode) with a real NIC on the closed test network (:mod:`harness.testnet`): the
manager's ``runner_network`` is the test bridge (what the charm's ``network`` option would name),
the sandbox GitHub serves in a test host of its own (in this process, inside the host's
namespace), reached by runners over the bridge and by the manager over its link, at the same
URL. Give the environment a :class:`TestNet` (the integration tests' session ``testnet``); without
one it starts its own and tears it down on exit (the demo and the benchmarks).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import BaseImage, CharmState, RunnerStorage
from github_api.types import GitHubRepo
from harness.netns import NamespaceProcess, entered
from harness.testnet import TestHost, TestNet
from harness.testnet_serve import PublicSandbox
from metrics.storage import DirectoryStorageManager, StorageManager
from repo_policy.service import BackgroundServer
from runner_manager import RunnerManager
from runner_manager_type import LXDFlushMode, LXDRunnerManagerConfig
from runner_type import Arch, ProxySetting, VirtualMachineResources

logger = logging.getLogger(__name__)

TEST_IMAGE = "github-runner-test"
RESOURCES = VirtualMachineResources(cpu=1, memory="1GiB", disk="4GiB")


@dataclass
class LocalOptions:
    """How to set the environment up.

    Attributes:
        app_name: Application name (runner names start with ``<app>-<unit>-``).
        unit: Unit number.
        repo: The repository runners register to.
        labels: Custom labels.
        image: LXD image alias.
        metrics: Whether metrics are enabled (directory stores unless ``storage`` is given).
        storage: The metrics store manager to use.
        settings: Overrides of the manager settings.
        sandbox_process: Run the sandbox in a process of its own (its CPU and memory apart from
            the manager's: ``LocalEnvironment.sandbox_pid``) instead of this process's threads.
    """

    app_name: str = "demo"
    unit: int = 0
    repo: str = "octo/demo"
    labels: tuple[str, ...] = ("local",)
    image: str = TEST_IMAGE
    metrics: bool = False
    storage: StorageManager | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    sandbox_process: bool = False


def local_charm_state(**overrides: Any) -> CharmState:
    """A valid CharmState in test mode (containers), for the demo, tests and benchmarks."""
    values: dict[str, Any] = {
        "token": SecretStr("ghp_local_token"),
        "path": GitHubRepo("octo", "repo"),
        "github_url": "http://127.0.0.1:1",
        "api_url": "http://127.0.0.1:1/api/v3",
        "runner_group": "default",
        "labels": ("local",),
        "virtual_machines": 1,
        "vm_resources": RESOURCES,
        "reconcile_interval": 10,
        "runner_storage": RunnerStorage.JUJU_STORAGE,
        "base_image": BaseImage.NOBLE,
        "dockerhub_mirror": None,
        "denylist": (),
        "aproxy": False,
        "test_mode": True,
        "proxy": ProxySetting(),
        "is_metrics_enabled": False,
        "reactive_config": None,
        "ssh_debug_connections": (),
        "arch": Arch.X64,
        "app_name": "local",
        "unit_number": 0,
    }
    return CharmState(**{**values, **overrides})


@dataclass(frozen=True)
class SandboxAddress:
    """Where a sandbox another process started listens.

    Attributes:
        base_url: Its "github-url".
        api_url: Its REST API root.
        port: Its port.
    """

    base_url: str
    api_url: str
    port: int


class WsgiApp(Protocol):
    """A WSGI application."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Answer one request."""


class LocalEnvironment:
    """Context manager: sandbox + RunnerManager on real LXD; cleans every runner on exit."""

    def __init__(self, options: LocalOptions | None = None, *, testnet: TestNet | None = None):
        """Prepare (nothing runs before ``__enter__``).

        Args:
            options: How to set the environment up.
            testnet: The closed test network runners go on; None: the environment starts its
                own at ``__enter__`` and closes it at ``__exit__``.
        """
        self.options = options or LocalOptions()
        self.token = f"ghp_{secrets.token_hex(16)}"
        self.testnet = testnet
        self._own_testnet = testnet is None
        self.network = testnet.bridge if testnet is not None else ""
        self.sandbox: PublicSandbox | SandboxAddress
        self.servers: list[BackgroundServer] = []
        self.sandbox_pid: int | None = None  # with ``sandbox_process``
        self._sandbox_process: NamespaceProcess | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="github-runner-local-"))
        self.manager: RunnerManager
        self.state: CharmState

    def attach_spec(self) -> dict[str, Any]:
        """What another process needs to drive this environment (see :meth:`attach`)."""
        options = {
            k: v for k, v in self.options.__dict__.items() if k not in ("storage", "settings")
        }
        plain = (str, int, float, bool, type(None))  # settings that survive JSON as they are
        settings = {k: v for k, v in self.options.settings.items() if isinstance(v, plain)}
        return {
            "options": {**options, "labels": list(self.options.labels), "settings": settings},
            "token": self.token,
            "workdir": str(self.workdir),
            "sandbox": [self.sandbox.base_url, self.sandbox.api_url, self.sandbox.port],
            "network": self.network,
        }

    @classmethod
    def attach(cls, spec: dict[str, Any]) -> LocalEnvironment:
        """Join, from another process, an environment started elsewhere (same sandbox, lock).

        Args:
            spec: What :meth:`attach_spec` returned.

        Returns:
            An environment whose manager shares the other's state directory and sandbox.
        """
        env = cls.__new__(cls)
        options = dict(spec["options"])
        options["labels"] = tuple(options["labels"])
        env.options = LocalOptions(**options)
        env.token = spec["token"]
        env.workdir = Path(spec["workdir"])
        env.sandbox = SandboxAddress(*spec["sandbox"])
        env.network = spec["network"]
        env.testnet, env._own_testnet, env.servers = None, False, []
        env.manager = env.build_manager()
        return env

    def __enter__(self) -> LocalEnvironment:
        """Start the test network (unless given), the sandbox in a test host, the manager."""
        try:
            if self.testnet is None:
                self.testnet = TestNet().start()
            self.network = self.testnet.bridge
            host = self.add_host("github", manager_link=True)
            readonly = "readonly-token"  # sandbox-only
            if self.options.sandbox_process:
                service = self.testnet.start_sandbox(
                    host, token=self.token, args=("--readonly-token", readonly)
                )
                self.sandbox = SandboxAddress(service.url, service.api_url, service.port)
                self._sandbox_process = service.process
                self.sandbox_pid = service.process.pid
            else:
                self.sandbox = self.testnet.start_sandbox_in_process(
                    host, token=self.token, readonly_token=readonly
                )
            self.manager = self.build_manager()
            app = self.manager.get_latest_runner_bin_url()
            self.manager.update_runner_bin(app)
        except BaseException:
            self._close_network()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Flush every runner (force), stop the servers, remove the work directory."""
        try:
            self.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        except Exception:
            logger.exception("cleanup flush failed")
        for server in self.servers:
            server.stop()
        if isinstance(self.sandbox, PublicSandbox):
            self.sandbox.stop()
        if self._sandbox_process is not None:
            self._sandbox_process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._close_network()

    def _close_network(self) -> None:
        if self._own_testnet and self.testnet is not None:
            net, self.testnet = self.testnet, None
            net.close()

    # --- test hosts -----------------------------------------------------------------------------

    def add_host(self, role: str, *, manager_link: bool = False) -> TestHost:
        """Add a test host ``<role>-<hex>`` (unique in the test network) for this environment."""
        assert self.testnet is not None  # noqa: S101 - only the owner adds hosts
        return self.testnet.add_host(f"{role}-{secrets.token_hex(3)}", manager_link=manager_link)

    def serve(
        self,
        app: WsgiApp,
        *,
        role: str = "policy",
        port: int = 8567,
        threads: int = 6,
        host: TestHost | None = None,
    ) -> BackgroundServer:
        """Serve a WSGI app (e.g. the policy service) in a test host of its own; stopped at exit.

        Runners reach it over the bridge (by address or ``<host>.test``), the manager over the
        host's link, at the returned server's ``url`` (by address).
        """
        host = host or self.add_host(role, manager_link=True)
        with entered(host.namespace):  # its socket and threads live in the test host
            server = BackgroundServer(app, host=str(host.address), port=port, threads=threads)
            server.start()
        self.servers.append(server)
        return server

    # --- construction ---------------------------------------------------------------------------

    def charm_state(self, **overrides: Any) -> CharmState:
        """A CharmState pointing at the sandbox, in test mode."""
        owner, repo = self.options.repo.split("/")
        values: dict[str, Any] = {
            "token": SecretStr(self.token),
            "path": GitHubRepo(owner, repo),
            "github_url": self.sandbox.base_url,
            "api_url": self.sandbox.api_url,
            "labels": self.options.labels,
            "vm_resources": RESOURCES,
            "is_metrics_enabled": self.options.metrics,
            "app_name": self.options.app_name,
            "unit_number": self.options.unit,
        }
        return local_charm_state(**{**values, **overrides})

    def settings(self) -> RunnerManagerSettings:
        """Manager settings rooted in the work directory, runners on the test network."""
        base = RunnerManagerSettings.for_unit(
            self.options.app_name,
            self.options.unit,
            state_root=self.workdir / "state",
            log_root=self.workdir / "logs",
            cron_dir=self.workdir / "cron",
            runner_network=self.network,
            storage_pool="default",  # scripts/setup-lxd.sh's pool
            bootstrap_timeout=RunnerManagerSettings().bootstrap_timeout,
        )
        return replace(base, **self.options.settings)

    def build_manager(self, **state_overrides: Any) -> RunnerManager:
        """A RunnerManager with the given CharmState overrides (e.g. another token)."""
        self.state = self.charm_state(**state_overrides)
        config = LXDRunnerManagerConfig(
            charm_state=self.state,
            image=self.options.image,
            lxd_storage_path=Path("/var/lib/lxd"),
            path=self.state.path,
            service_token="local-service-token",  # noqa: S106 - local policy service token
            token=self.state.token.get_secret_value(),
            reactive_config=self.state.reactive_config,
        )
        settings = self.settings()
        storage = self.options.storage
        if self.options.metrics and storage is None:
            storage = DirectoryStorageManager(
                settings.metrics_storage_dir, settings.quarantine_dir
            )
        return RunnerManager(
            self.options.app_name,
            self.options.unit,
            config,
            settings=settings,
            metrics_storage=storage,
        )

    # --- sandbox control ------------------------------------------------------------------------

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call the sandbox control API and return the decoded answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the sandbox's test host
            f"{self.sandbox.base_url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def queue_job(
        self, steps: list[str], labels: tuple[str, ...] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """Queue a job in the sandbox; returns the job object."""
        body = {
            "repository": self.options.repo,
            "labels": list(labels or ("self-hosted", *self.options.labels)),
            "steps": steps,
            **extra,
        }
        job: dict[str, Any] = self.control("POST", "/jobs", body)
        return job

    def job(self, job_id: int) -> dict[str, Any]:
        """The sandbox's view of a job (with its log)."""
        job: dict[str, Any] = self.control("GET", f"/jobs/{job_id}")
        return job

    def wait_jobs(self, job_ids: list[int], timeout: float) -> list[dict[str, Any]]:
        """Wait until every job completed (bounded); return their final views."""
        deadline = time.monotonic() + timeout
        while True:
            jobs = [self.job(i) for i in job_ids]
            if all(j["status"] == "completed" for j in jobs) or time.monotonic() > deadline:
                return jobs
            time.sleep(0.25)

    def wait_online(self, count: int, timeout: float) -> float:
        """Wait until ``count`` runners of this unit are online; return the seconds waited."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            online = [r for r in self.manager.get_github_info() if r.status.value == "online"]
            if len(online) >= count:
                return time.monotonic() - start
            time.sleep(0.2)
        raise TimeoutError(f"{count} runners not online within {timeout} s")

    def instances(self) -> list[str]:
        """Names of this unit's LXD instances."""
        return [i.name for i in self.manager._clients.lxd.list(prefix=self.manager.prefix)]

    def registrations(self) -> list[str]:
        """Names of this unit's GitHub runner records."""
        return [r.name for r in self.manager.get_github_info()]
