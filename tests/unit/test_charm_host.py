"""HostSystem: the real host seam, with subprocess and the filesystem faked."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import charm
import errors
from juju import host as juju_host
from juju.event_timer import EventTimer
from juju.host import LOGROTATE_TEMPLATE, HostSystem, run
from juju.policy_host import RepoPolicyService
from lxd.network import unit_resource_name
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.fakes_systemd import FakeSystemctl


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, cmd: list[str], timeout: int = 60) -> None:
        self.commands.append(cmd)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    fake = Recorder()
    monkeypatch.setattr(juju_host, "run", fake)
    return fake


def host(tmp_path: Path, systemctl_codes: dict[str, int] | None = None) -> HostSystem:
    systemctl = FakeSystemctl(systemctl_codes)
    timer = EventTimer("app/0", unit_dir=tmp_path / "units", systemctl=systemctl)
    policy = RepoPolicyService(
        "app/0",
        config_dir=tmp_path / "policy",
        unit_dir=tmp_path / "units",
        systemctl=systemctl,
        port_free=lambda host, port: True,
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16000000 kB\nMemAvailable:    8000000 kB\n")
    return HostSystem(
        "app/0",
        timer=timer,
        meminfo=meminfo,
        logrotate=tmp_path / "logrotate",
        repo_policy=policy,
    )


def test_setup_lxd_puts_the_units_pool_on_the_runner_storage(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = host(tmp_path)
    monkeypatch.setattr(system, "disk_space", lambda path: 100 << 30)
    system.setup_lxd(tmp_path)
    pool = unit_resource_name("app", 0)
    script = str(juju_host.SETUP_LXD_SCRIPT)
    assert recorder.commands == [
        [script, "--source", str(tmp_path), "--pool", pool, "--size", "90GiB"]
    ]
    assert juju_host.SETUP_LXD_SCRIPT.name == "setup-lxd.sh"
    monkeypatch.setattr(system, "disk_space", lambda path: 100 << 20)  # tiny: 1 GiB at least
    system.setup_lxd(tmp_path)
    assert recorder.commands[-1][-1] == "1GiB"


def test_disk_space_is_the_filesystems_size(tmp_path: Path) -> None:
    stat = os.statvfs(tmp_path)
    assert host(tmp_path).disk_space(tmp_path) == stat.f_blocks * stat.f_frsize


def test_ram_disk_mounted_then_resized(
    tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = tmp_path / "ram"
    system = host(tmp_path)
    monkeypatch.setattr(os.path, "ismount", lambda path: False)
    system.ensure_ram_disk(disk, 1 << 30)
    assert disk.is_dir()
    assert recorder.commands == [
        ["mount", "-t", "tmpfs", "-o", "size=1073741824", "tmpfs", str(disk)]
    ]
    recorder.commands.clear()
    monkeypatch.setattr(os.path, "ismount", lambda path: True)
    system.ensure_ram_disk(disk, 1 << 40)  # the tmp dir is far smaller than 1 TiB: remount
    assert recorder.commands == [["mount", "-o", f"remount,size={1 << 40}", str(disk)]]
    recorder.commands.clear()
    stat = os.statvfs(disk)
    system.ensure_ram_disk(disk, stat.f_blocks * stat.f_frsize)  # same size: nothing to do
    assert recorder.commands == []


def test_available_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = host(tmp_path)
    monkeypatch.setattr(os.path, "ismount", lambda path: False)
    assert system.available_memory(tmp_path) == 8000000 * 1024
    monkeypatch.setattr(os.path, "ismount", lambda path: True)
    stat = os.statvfs(tmp_path)
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    assert system.available_memory(tmp_path) == 8000000 * 1024 + used


def test_logrotate(tmp_path: Path) -> None:
    host(tmp_path).configure_logrotate()
    written = (tmp_path / "logrotate").read_text()
    assert written == LOGROTATE_TEMPLATE.read_text()
    assert "/var/log/github-runner-metrics.log {" in written


def test_timer_delegates_to_event_timer(tmp_path: Path) -> None:
    system = host(tmp_path)
    system.ensure_timer("reconcile-runners", 10, 30)
    assert (tmp_path / "units" / "ghr-app-0-reconcile-runners.timer").exists()
    assert system.timer_active("reconcile-runners") is True
    system.disable_timer("reconcile-runners")
    assert not (tmp_path / "units" / "ghr-app-0-reconcile-runners.timer").exists()
    assert host(tmp_path, {"is-active": 3}).timer_active("reconcile-runners") is False


def test_policy_service_is_installed_then_removed(tmp_path: Path) -> None:
    system = host(tmp_path)
    policy = {"default": "deny"}
    endpoint = system.ensure_repo_policy("ghp_x", "https://api.github.com", policy, "10.9.8.1")
    assert endpoint.url == "http://10.9.8.1:8567"  # the host's address on the runner network
    assert (tmp_path / "policy" / "github-token").read_text() == "ghp_x"
    assert (tmp_path / "units" / "github-runner-repo-policy-app-0.service").exists()
    system.remove_repo_policy()
    assert not (tmp_path / "policy" / "github-token").exists()
    assert not (tmp_path / "units" / "github-runner-repo-policy-app-0.service").exists()


def test_run() -> None:
    run(["true"])
    with pytest.raises(errors.SubprocessError) as info:
        run(["sh", "-c", "echo boom >&2; exit 3"])
    assert (info.value.returncode, info.value.stderr) == (3, "boom\n")
    with pytest.raises(errors.SubprocessError):
        run(["/nonexistent/binary"])


def test_run_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*args: Any, **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(["x"], 1)

    monkeypatch.setattr(subprocess, "run", slow)
    with pytest.raises(errors.SubprocessError) as info:
        run(["x"], timeout=1)
    assert info.value.returncode == -1


def test_real_manager_factory_builds_runner_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[str, int, object]] = []

    class RunnerManager:
        def __init__(self, app_name: str, unit: int, config: object) -> None:
            built.append((app_name, unit, config))

    module = types.ModuleType("runner_manager")
    module.RunnerManager = RunnerManager  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "runner_manager", module)
    config = object()
    manager = charm.create_runner_manager("app", 3, config)  # type: ignore[arg-type]
    assert isinstance(manager, RunnerManager)
    assert built == [("app", 3, config)]
    assert LXDRunnerManagerConfig is not None
