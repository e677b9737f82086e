"""Two applications on one machine: their paths, units and ports apart (issue 15, item 4).

Both share the machine's LXD and GitHub (the fakes); each reconciles, flushes and keeps its
metrics stores without touching the other's.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from ops import testing
from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import ReactiveConfig
from juju.event_timer import EventTimer
from juju.host import HostSystem
from juju.metrics_service import MetricsExporterService
from juju.policy_host import RepoPolicyService
from juju.runner_network import RunnerNetwork
from metrics.storage import DirectoryStorageManager
from reactive.pool import reactive_runner_config
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDFlushMode, LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import VirtualMachineResources
from tests.unit.fakes_charm import (
    FakeRunnerManager,
    base_state,
    charm_actions,
    charm_config,
    charm_metadata,
)
from tests.unit.fakes_core import FakeRepoPolicy, make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.fakes_systemd import FakeSystemctl

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB")
APPS = ("ci-a", "ci-b")


def _settings(root: Path, app: str) -> RunnerManagerSettings:
    return RunnerManagerSettings.for_unit(
        app,
        0,
        state_root=root / "lib",
        log_root=root / "log",
        cron_dir=root / "cron",
        busy_delete_wait=0.2,
        repo_check_wait=0.2,
        lock_timeout=0.2,
    )


def _config(app: str, reactive: bool = False) -> LXDRunnerManagerConfig:
    mq = ReactiveConfig(mq_uri=SecretStr("amqp://u:p@127.0.0.1//"), queue_name=app)
    state = make_state(
        app_name=app, is_metrics_enabled=True, reactive_config=mq if reactive else None
    )
    return LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="service-token",
        token=state.token.get_secret_value(),
        reactive_config=state.reactive_config,
    )


def test_every_path_of_two_applications_differs(tmp_path: Path) -> None:
    one, other = (_settings(tmp_path, app) for app in APPS)
    for item in fields(RunnerManagerSettings):
        if isinstance(getattr(one, item.name), Path):
            assert getattr(one, item.name) != getattr(other, item.name), item.name
    assert one.runner_bin_path != other.runner_bin_path
    assert one.state_dir == tmp_path / "lib" / "ci-a-0"
    assert one.cron_path == tmp_path / "cron" / "github-runner-image-ci-a-0"
    consumers = [
        reactive_runner_config(_config(app, True), s)
        for app, s in zip(APPS, (one, other), strict=True)
    ]
    assert consumers[0] and consumers[1]
    assert consumers[0].config_path != consumers[1].config_path  # holds the token
    assert consumers[0].pid_dir != consumers[1].pid_dir
    assert consumers[0].log_dir != consumers[1].log_dir


def test_production_paths_are_per_unit() -> None:
    settings = RunnerManagerSettings.for_unit("ci-a", 3)
    assert settings.state_dir == Path("/var/lib/github-runner/ci-a-3")
    assert settings.metrics_storage_dir == Path("/var/lib/github-runner/ci-a-3/metrics-stores")
    assert settings.cron_path == Path("/etc/cron.d/github-runner-image-ci-a-3")
    assert settings.runner_log_dir.name == "ci-a-3"


def test_the_manager_defaults_to_its_units_paths() -> None:
    clients = RunnerManagerClients(
        github=FakeGithub(), jinja=template_environment(), lxd=FakeLxd(), repo=FakeRepoPolicy()
    )
    config = _config("ci-b")
    config = LXDRunnerManagerConfig(**{**config.__dict__, "charm_state":
                                       config.charm_state.model_copy(
                                           update={"is_metrics_enabled": False})})  # fmt: skip
    manager = RunnerManager("ci-b", 1, config, clients=clients)
    assert manager.settings.state_dir == Path("/var/lib/github-runner/ci-b-1")
    assert manager.cron_path == Path("/etc/cron.d/github-runner-image-ci-b-1")


def _manager(root: Path, app: str, lxd: FakeLxd, github: FakeGithub) -> RunnerManager:
    settings = _settings(root, app)
    clients = RunnerManagerClients(
        github=github, jinja=template_environment(), lxd=lxd, repo=FakeRepoPolicy()
    )
    storage = DirectoryStorageManager(settings.metrics_storage_dir, settings.quarantine_dir)
    return RunnerManager(
        app, 0, _config(app), clients=clients, settings=settings, metrics_storage=storage
    )


def _stores(manager: RunnerManager) -> set[str]:
    base = manager.settings.metrics_storage_dir
    return {p.name for p in base.iterdir()} if base.exists() else set()


def test_one_applications_reconcile_never_touches_the_others(tmp_path: Path) -> None:
    lxd, github = FakeLxd(), FakeGithub()
    one, other = (_manager(tmp_path, app, lxd, github) for app in APPS)
    one.reconcile(2, RES)
    other.reconcile(2, RES)
    others = _stores(other)
    assert len(others) == 2 and all(name.startswith("ci-b-0-") for name in others)
    assert all(name.startswith("ci-a-0-") for name in _stores(one))
    one.flush(LXDFlushMode.FLUSH_BUSY)
    one.reconcile(0, RES)
    assert _stores(one) == set()
    assert _stores(other) == others, "the other application's stores are untouched"
    assert {name for name in lxd.instances if name.startswith("ci-b-0-")} == others


class _Host(HostSystem):
    """The real host seam over scratch directories; LXD setup does nothing."""

    def setup_lxd(self, storage: Path) -> None:
        del storage

    def ensure_runner_network(self, network: str) -> RunnerNetwork:
        """Not under test here: the host's address on the runner network is loopback."""
        return RunnerNetwork(network or "ghr-test", "127.0.0.1", own=not network)

    def apply_network_policy(self, *args: Any) -> None:
        """Not under test here (the host's nftables stay untouched; nft may not be installed)."""

    def remove_network_policy(self) -> None:
        """Not under test here."""

    def ensure_metrics_exporter(self) -> None:
        """Not under test here."""

    def remove_metrics_exporter(self) -> None:
        """Not under test here."""


def _charm_context(root: Path, manager: FakeRunnerManager, app: str) -> testing.Context[Any]:
    from charm import GithubRunnerCharm

    systemctl = FakeSystemctl()

    def host(unit_name: str) -> HostSystem:
        units = root / "systemd"
        timer = EventTimer(unit_name, unit_dir=units, lock_dir=root / "lock", systemctl=systemctl)
        policy = RepoPolicyService(
            unit_name,
            config_root=root / "etc",
            unit_dir=units,
            systemctl=systemctl,
            port_free=lambda host, port: True,
        )
        exporter = MetricsExporterService(
            unit_name,
            config_root=root / "etc",
            unit_dir=units,
            systemctl=systemctl,
            port_free=lambda host, port: True,
        )
        return _Host(
            unit_name,
            timer=timer,
            repo_policy=policy,
            metrics_exporter=exporter,
            logrotate=root / "logrotate",
        )

    class TwoAppCharm(GithubRunnerCharm):
        manager_factory = manager.factory
        system_factory = staticmethod(host)

    return testing.Context(
        TwoAppCharm,
        meta=charm_metadata(),
        config=charm_config(),
        actions=charm_actions(),
        app_name=app,
    )


@pytest.mark.parametrize("order", [APPS, APPS[::-1]])
def test_two_charms_on_one_machine_have_their_own_units_and_ports(
    tmp_path: Path, order: tuple[str, str]
) -> None:
    manager = FakeRunnerManager()
    urls = {}
    for app in order:
        ctx = _charm_context(tmp_path, manager, app)
        ctx.run(ctx.on.config_changed(), base_state(config={"test-mode": "insecure"}))
        assert manager.configs[-1][0] == app
        urls[app] = manager.configs[-1][2].repo_policy_url
    units = {p.name for p in (tmp_path / "systemd").iterdir()}
    for app in APPS:
        assert f"github-runner-repo-policy-{app}-0.service" in units
        assert f"ghr-{app}-0-reconcile-runners.timer" in units
        assert (tmp_path / "etc" / f"{app}-0" / "repo-policy" / "github-token").exists()
    assert urls[order[0]] == "http://127.0.0.1:8567"
    assert urls[order[1]] == "http://127.0.0.1:8568"
