"""The reconcile timer: rendered units pass systemd-analyze verify; systemctl through a seam."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import errors
from juju.event_timer import EventTimer
from tests.unit.fakes_systemd import FakeSystemctl
from tests.unit.systemd_verify import findings

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
UNIT = "github-runner/0"
BASE = "ghr-github-runner-0-reconcile-runners"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root for systemd-analyze: the system's target units and stub binaries."""
    for binary in ("flock", "timeout", "juju-exec"):
        path = tmp_path / "usr" / "bin" / binary
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n")
        path.chmod(0o755)
    if SYSTEM_UNITS.is_dir():
        shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    return tmp_path


def make_timer(root: Path, systemctl: FakeSystemctl) -> EventTimer:
    return EventTimer(UNIT, unit_dir=root / "etc/systemd/system", systemctl=systemctl)


def verify(root: Path, *names: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [
            SYSTEMD_ANALYZE,
            "verify",
            f"--root={root}",
            *(f"/etc/systemd/system/{n}" for n in names),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(("interval", "timeout"), [(2, 15), (10, 30), (120, 360)])
def test_rendered_units_pass_systemd_analyze_verify(
    root: Path, interval: int, timeout: int
) -> None:
    timer = make_timer(root, FakeSystemctl())
    timer.ensure_event_timer("reconcile-runners", interval, timeout)
    result = verify(root, f"{BASE}.service", f"{BASE}.timer")
    checked = (f"{BASE}.service", f"{BASE}.timer")
    assert (result.returncode, result.stdout, findings(result.stderr, checked)) == (0, "", [])


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_broken_unit(root: Path) -> None:
    # The check is meaningful: a typo'd key is reported (with rc 0, hence "any output fails").
    timer = make_timer(root, FakeSystemctl())
    timer.ensure_event_timer("reconcile-runners", 10, 30)
    service = root / "etc/systemd/system" / f"{BASE}.service"
    service.write_text(service.read_text().replace("TimeoutStopSec", "TimeoutStopSecs"))
    result = verify(root, f"{BASE}.service", f"{BASE}.timer")
    assert result.stdout or result.stderr


def test_rendered_content(root: Path) -> None:
    units = make_timer(root, FakeSystemctl()).render("reconcile-runners", 10, 30)
    service, timer = units[f"{BASE}.service"], units[f"{BASE}.timer"]
    assert "Type=oneshot" in service
    assert (
        "ExecStart=/usr/bin/flock --nonblock --conflict-exit-code 0 "
        f'"/run/lock/{BASE}.lock" /usr/bin/timeout --kill-after=30s 30m '
        '/usr/bin/juju-exec "github-runner/0" "JUJU_DISPATCH_PATH=hooks/reconcile-runners '
        './dispatch"'
    ) in service
    assert "TimeoutStartSec=1860" in service
    assert "OnUnitActiveSec=10min" in timer
    assert "RandomizedDelaySec=60s" in timer
    assert f"Unit={BASE}.service" in timer
    assert "WantedBy=timers.target" in timer


def test_random_delay_scales_with_short_intervals(root: Path) -> None:
    units = make_timer(root, FakeSystemctl()).render("reconcile-runners", 2, 15)
    assert "RandomizedDelaySec=12s" in units[f"{BASE}.timer"]


def test_render_rejects_nonsense(root: Path) -> None:
    with pytest.raises(ValueError, match="at least one minute"):
        make_timer(root, FakeSystemctl()).render("reconcile-runners", 0, 30)


def test_ensure_installs_once_then_only_checks(root: Path) -> None:
    systemctl = FakeSystemctl()
    timer = make_timer(root, systemctl)
    assert timer.ensure_event_timer("reconcile-runners", 10, 30) is True
    assert systemctl.calls == [
        ["daemon-reload"],
        ["enable", f"{BASE}.timer"],
        ["restart", f"{BASE}.timer"],
    ]
    systemctl.calls.clear()
    assert timer.ensure_event_timer("reconcile-runners", 10, 30) is False
    assert systemctl.calls == [["is-active", "--quiet", f"{BASE}.timer"]]


def test_ensure_rewrites_on_a_new_interval(root: Path) -> None:
    systemctl = FakeSystemctl()
    timer = make_timer(root, systemctl)
    timer.ensure_event_timer("reconcile-runners", 10, 30)
    systemctl.calls.clear()
    assert timer.ensure_event_timer("reconcile-runners", 20, 60) is True
    assert systemctl.calls[0] == ["daemon-reload"]
    assert "OnUnitActiveSec=20min" in (root / f"etc/systemd/system/{BASE}.timer").read_text()


def test_ensure_restarts_an_inactive_timer(root: Path) -> None:
    timer = make_timer(root, FakeSystemctl())
    timer.ensure_event_timer("reconcile-runners", 10, 30)
    systemctl = FakeSystemctl({"is-active": 3})
    timer = make_timer(root, systemctl)
    assert timer.ensure_event_timer("reconcile-runners", 10, 30) is True
    assert systemctl.calls[-1] == ["enable", "--now", f"{BASE}.timer"]
    assert timer.is_active("reconcile-runners") is False


def test_ensure_fails_when_systemctl_fails(root: Path) -> None:
    timer = make_timer(root, FakeSystemctl({"daemon-reload": 1}))
    with pytest.raises(errors.SubprocessError) as info:
        timer.ensure_event_timer("reconcile-runners", 10, 30)
    assert info.value.cmd == ["systemctl", "daemon-reload"]


def test_disable_removes_the_units(root: Path) -> None:
    systemctl = FakeSystemctl()
    timer = make_timer(root, systemctl)
    timer.ensure_event_timer("reconcile-runners", 10, 30)
    systemctl.calls.clear()
    timer.disable_event_timer("reconcile-runners")
    assert systemctl.calls == [["disable", "--now", f"{BASE}.timer"], ["daemon-reload"]]
    assert list((root / "etc/systemd/system").iterdir()) == []
    systemctl.calls.clear()
    timer.disable_event_timer("reconcile-runners")  # idempotent
    assert systemctl.calls == []


def test_verify_findings_about_other_units_are_dropped() -> None:
    out = (
        "keystone.service: Dependency After=keystone.service is dropped.\n"
        "/tmp/x/a.service:3: Unknown key name 'Foo' in section 'Service', ignoring.\n"
        "a.service: Command /bin/nope is not executable: No such file or directory\n"
        "Failed to load something.\n"
    )
    assert findings(out, ("a.service",)) == out.splitlines()[1:]
