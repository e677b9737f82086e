"""Fakes of the charm's seams (runner manager, host) and a Context factory for charm tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ops import testing
from scenario.state import _Event

from charm import GithubRunnerCharm
from config.state import CharmState
from github_api.types import GitHubRunnerStatus, RunnerApplication
from juju.host import SystemPort
from juju.intake_host import IntakeSettings
from juju.manager_port import ManagerConfig, RunnerManagerPort
from juju.policy_host import RepoPolicyEndpoint
from juju.runner_network import RunnerNetwork
from paths import REPO_ROOT
from runner_manager_type import LXDFlushMode, RunnerInfo
from runner_type import VirtualMachineResources

ROOT = REPO_ROOT
TOKEN = "ghp_" + "a" * 36
GIB = 1 << 30


def load_yaml(name: str) -> dict[str, Any]:
    """Load a YAML file of the repository."""
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def charm_metadata() -> dict[str, Any]:
    """charmcraft.yaml without its config and actions: what ops.testing takes as ``meta``."""
    return {
        key: value
        for key, value in load_yaml("charmcraft.yaml").items()
        if key not in {"config", "actions"}
    }


def charm_config() -> dict[str, Any]:
    """The ``config`` section of charmcraft.yaml (``{"options": {...}}``)."""
    config: dict[str, Any] = load_yaml("charmcraft.yaml")["config"]
    return config


def charm_actions() -> dict[str, Any]:
    """The ``actions`` section of charmcraft.yaml."""
    actions: dict[str, Any] = load_yaml("charmcraft.yaml")["actions"]
    return actions


def application(version: str, arch: str = "x64") -> RunnerApplication:
    """Return a runner application download of ``version``."""
    filename = f"actions-runner-linux-{arch}-{version}.tar.gz"
    return RunnerApplication(
        os="linux",
        architecture=arch,
        download_url=f"https://example.invalid/{filename}",
        filename=filename,
    )


@dataclass
class Call:
    """One call to the fake manager, with the credentials of the manager that got it."""

    name: str
    args: tuple[Any, ...]
    token: str
    path: str


@dataclass
class FakeRunnerManager:
    """A runner manager that records calls and answers from its fields."""

    runners: list[RunnerInfo] = field(default_factory=list)
    reconcile_delta: int = 0
    quota: str | None = None
    flushed: int = 0
    bin_version: str | None = "2.300.0"
    latest: RunnerApplication = field(default_factory=lambda: application("2.300.0"))
    image: bool = True
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    configs: list[tuple[str, int, ManagerConfig]] = field(default_factory=list)
    runner_bin_path: Path = Path("/var/cache/github-runner/runner.tgz")
    cron_path: Path = Path("/etc/cron.d/github-runner-image")

    def factory(self, app_name: str, unit: int, config: ManagerConfig) -> _Bound:
        """Build a manager bound to one configuration (as the real factory does)."""
        self.configs.append((app_name, unit, config))
        return _Bound(self, config)

    def names(self) -> list[str]:
        """Return the names of the calls, in order."""
        return [call.name for call in self.calls]

    def with_runners(self, idle: int = 0, busy: int = 0, offline: int = 0) -> None:
        """Set the runners GitHub reports."""
        self.runners = [
            *(RunnerInfo(f"idle-{i}", GitHubRunnerStatus.ONLINE, False) for i in range(idle)),
            *(RunnerInfo(f"busy-{i}", GitHubRunnerStatus.ONLINE, True) for i in range(busy)),
            *(RunnerInfo(f"off-{i}", GitHubRunnerStatus.OFFLINE, False) for i in range(offline)),
        ]


class _Bound:
    """The fake manager as the charm sees it: one instance per configuration."""

    def __init__(self, fake: FakeRunnerManager, config: ManagerConfig) -> None:
        self.fake = fake
        self.config = config
        self.runner_bin_path = fake.runner_bin_path
        self.cron_path = fake.cron_path

    def _call(self, name: str, *args: Any) -> None:
        self.fake.calls.append(Call(name, args, self.config.token, self.config.path.path()))
        if name in self.fake.fail:
            raise self.fake.fail[name]

    def reconcile(self, quantity: int, resources: VirtualMachineResources) -> int:
        self._call("reconcile", quantity, resources)
        return self.fake.reconcile_delta

    def quota_refusal(self) -> str | None:
        """The cloud's refusal the fake is told to report (``quota``)."""
        return self.fake.quota

    def flush(self, mode: LXDFlushMode = LXDFlushMode.FLUSH_IDLE) -> int:
        self._call("flush", mode)
        return self.fake.flushed

    def get_github_info(self) -> Iterator[RunnerInfo]:
        self._call("get_github_info")
        return iter(list(self.fake.runners))

    def get_latest_runner_bin_url(self, os_name: str = "linux") -> RunnerApplication:
        self._call("get_latest_runner_bin_url", os_name)
        return self.fake.latest

    def update_runner_bin(self, binary: RunnerApplication) -> None:
        self._call("update_runner_bin", binary)
        self.fake.bin_version = binary.version

    def check_runner_bin(self) -> bool:
        self._call("check_runner_bin")
        return self.fake.bin_version is not None

    def runner_bin_version(self) -> str | None:
        self._call("runner_bin_version")
        return self.fake.bin_version

    def has_runner_image(self) -> bool:
        self._call("has_runner_image")
        return self.fake.image

    def build_runner_image(self) -> None:
        self._call("build_runner_image")
        self.fake.image = True

    def schedule_build_runner_image(self) -> None:
        self._call("schedule_build_runner_image")


def _port_check(bound: _Bound) -> RunnerManagerPort:
    """Let mypy check that the fake satisfies the port."""
    return bound


@dataclass(frozen=True)
class FakePolicyService:
    """What the fake host's policy service was last given (it runs with exactly this)."""

    github_token: str
    github_api_url: str
    policy: dict[str, Any]
    listen: str


@dataclass
class FakeSystem:
    """The host, recorded; ``repo_policy`` is the running policy service (None: not running)."""

    memory: int = 64 * GIB
    disk: int = 1024 * GIB  # size of the runner storage's filesystem
    network_address: str = "10.20.30.1"  # the host's address on the runner network
    timer: bool = False
    repo_policy: FakePolicyService | None = None
    network_policy: tuple[str, tuple[str, ...]] | None = None  # (bridge, denylist) enforced
    metrics_exporter: bool = False
    intake: IntakeSettings | None = None  # what the running webhook intake runs with
    intake_port: int = 8580
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def factory(self, unit_name: str) -> FakeSystem:
        """Return this fake for any unit."""
        self.unit_name = unit_name
        return self

    def names(self) -> list[str]:
        """Return the names of the calls, in order."""
        return [call[0] for call in self.calls]

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if call[0] in self.fail:
            raise self.fail[call[0]]

    def setup_lxd(self, storage: Path) -> None:
        self._call("setup_lxd", storage)

    def disk_space(self, path: Path) -> int:
        self._call("disk_space", path)
        return self.disk

    def ensure_runner_network(self, network: str) -> RunnerNetwork:
        self._call("ensure_runner_network", network)
        own = not network
        return RunnerNetwork(network or "ghr-0123456789", self.network_address, own)

    def ensure_ram_disk(self, path: Path, size_bytes: int) -> None:
        self._call("ensure_ram_disk", path, size_bytes)

    def available_memory(self, path: Path) -> int:
        self._call("available_memory", path)
        return self.memory

    def configure_logrotate(self) -> None:
        self._call("configure_logrotate")

    def ensure_timer(self, event_name: str, interval_minutes: int, timeout_minutes: int) -> None:
        self._call("ensure_timer", event_name, interval_minutes, timeout_minutes)
        self.timer = True

    def ensure_repo_policy(
        self, github_token: str, github_api_url: str, policy: dict[str, Any], listen: str
    ) -> RepoPolicyEndpoint:
        self._call("ensure_repo_policy", github_token, github_api_url, policy, listen)
        self.repo_policy = FakePolicyService(github_token, github_api_url, policy, listen)
        return RepoPolicyEndpoint(url=f"http://{listen}:8567", service_token="service-token")

    def remove_repo_policy(self) -> None:
        self._call("remove_repo_policy")
        self.repo_policy = None

    def apply_network_policy(
        self, state: CharmState, network: RunnerNetwork, policy: RepoPolicyEndpoint
    ) -> None:
        self._call("apply_network_policy", state.denylist, network.name, policy.url)
        self.network_policy = (network.name, state.denylist)

    def remove_network_policy(self) -> None:
        self._call("remove_network_policy")
        self.network_policy = None

    def ensure_metrics_exporter(self) -> None:
        self._call("ensure_metrics_exporter")
        self.metrics_exporter = True

    def remove_metrics_exporter(self) -> None:
        self._call("remove_metrics_exporter")
        self.metrics_exporter = False

    def metrics_endpoints(self) -> list[dict[str, object]]:
        return [{"path": "/metrics", "port": 9464}]

    def ensure_intake(self, settings: IntakeSettings) -> int:
        self._call("ensure_intake", settings)
        self.intake = settings
        return self.intake_port

    def remove_intake(self, keep_port: bool = True) -> None:
        self._call("remove_intake", keep_port)
        self.intake = None

    def disable_timer(self, event_name: str) -> None:
        self._call("disable_timer", event_name)
        self.timer = False

    def timer_active(self, event_name: str) -> bool:
        self._call("timer_active", event_name)
        return self.timer


def _system_check(system: FakeSystem) -> SystemPort:
    """Let mypy check that the fake satisfies the host seam."""
    return system


def make_context(
    manager: FakeRunnerManager, system: FakeSystem, **kwargs: Any
) -> testing.Context[GithubRunnerCharm]:
    """Return a Context running the charm with the fakes at its seams.

    The test subclass lives in tests/, so charmcraft.yaml's sections are passed explicitly.
    """

    class TestCharm(GithubRunnerCharm):
        manager_factory = manager.factory
        system_factory = system.factory

    return testing.Context(
        TestCharm,
        meta=charm_metadata(),
        config=charm_config(),
        actions=charm_actions(),
        **kwargs,
    )


def reconcile_event() -> Any:
    """Return the custom event the timer dispatches (JUJU_DISPATCH_PATH=hooks/reconcile-runners).

    ``ctx.on.custom`` only finds event sources on attributes of the charm, not on ``charm.on``
    where ops' dispatch looks them up; a named event reproduces the real dispatch.
    """
    return _Event("reconcile_runners")


def base_state(**kwargs: Any) -> testing.State:
    """Return a valid state: token and path set, the runner storage attached, leader."""
    config = {"token": TOKEN, "path": "canonical/repo", **kwargs.pop("config", {})}
    storages = kwargs.pop("storages", [testing.Storage("runner")])
    return testing.State(config=config, storages=storages, **kwargs)
