"""The systemctl seam's real runner and the helpers the timer and the policy host share."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import errors
from juju.systemd import activate, render_unit, require, run_systemctl, uninstall
from tests.unit.fakes_systemd import FakeSystemctl


def test_run_systemctl_reports_a_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/usr/bin/systemctl")

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(errors.SubprocessError):
        run_systemctl(["is-active", "x.timer"])


def test_run_systemctl_returns_the_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd == ["/usr/bin/systemctl", "is-active", "x.timer"]
        return subprocess.CompletedProcess(cmd, 3, "", "inactive")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert run_systemctl(["is-active", "x.timer"]) == 3


def test_require_raises_with_the_command() -> None:
    require(FakeSystemctl(), ["daemon-reload"])
    with pytest.raises(errors.SubprocessError) as info:
        require(FakeSystemctl({"enable": 1}), ["enable", "x.service"])
    assert (info.value.cmd, info.value.returncode) == (["systemctl", "enable", "x.service"], 1)


def test_activate_restarts_changed_units_and_starts_dead_ones() -> None:
    systemctl = FakeSystemctl()
    assert activate(systemctl, "x.service", changed=True) is True
    assert systemctl.calls == [
        ["daemon-reload"],
        ["enable", "x.service"],
        ["restart", "x.service"],
    ]
    systemctl.calls.clear()
    assert activate(systemctl, "x.service", changed=False) is False
    assert systemctl.calls == [["is-active", "--quiet", "x.service"]]
    dead = FakeSystemctl({"is-active": 3})
    assert activate(dead, "x.service", changed=False) is True
    assert dead.calls[-1] == ["enable", "--now", "x.service"]


def test_uninstall_only_acts_on_installed_units(tmp_path: Path) -> None:
    systemctl = FakeSystemctl({"disable": 5})  # a unit that is not loaded: still removed
    unit = tmp_path / "x.service"
    assert uninstall(systemctl, "x.service", [unit]) is False
    assert systemctl.calls == []
    unit.write_text("[Unit]\n")
    assert uninstall(systemctl, "x.service", [unit]) is True
    assert not unit.exists()
    assert systemctl.calls == [["disable", "--now", "x.service"], ["daemon-reload"]]


def test_render_unit_requires_every_variable() -> None:
    context = {"event": "e", "unit": "app/0", "interval_minutes": 5}
    with pytest.raises(Exception, match="undefined"):
        render_unit("dispatch-event.timer.j2", context)
