"""The LXD setup scripts are idempotent: a second run changes nothing and says so."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.lxd

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/setup-lxd.sh", "scripts/build-lxd-image.sh"]


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _need_root_and_lxd(lxd_client: object) -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the setup scripts must be tested as root in CI", pytrace=False)
        pytest.skip("the setup scripts need root")


def test_setup_lxd_second_run_changes_nothing(lxd_client: object):
    _need_root_and_lxd(lxd_client)
    result = _run("scripts/setup-lxd.sh")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout, result.stdout
    assert "setup-lxd: installed" not in result.stdout
    assert "daemon started" not in result.stdout


def test_build_test_image_second_run_changes_nothing(lxd_client: object):
    _need_root_and_lxd(lxd_client)
    result = _run("scripts/build-lxd-image.sh", "--test")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout, result.stdout


def test_vm_image_build_fails_early_without_image_server(lxd_client: object):
    _need_root_and_lxd(lxd_client)
    result = _run(
        "scripts/build-lxd-image.sh", "--base", "noble", "--remote", "nowhere", timeout=60
    )
    assert result.returncode != 0
    assert "use --test" in result.stderr


def test_scripts_reject_bad_arguments():
    for script in SCRIPTS:
        result = _run(script, "--no-such-flag", timeout=30)
        assert result.returncode != 0
        assert "unknown argument" in result.stderr or "must run as root" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck():
    result = _run("shellcheck", *SCRIPTS, timeout=60)
    assert result.returncode == 0, result.stdout


# LXD's production table (doc/reference/server_settings.md of LXD): key -> suggested value.
LXD_PRODUCTION_LIMITS = {
    "fs.aio-max-nr": 524288,
    "fs.inotify.max_queued_events": 1048576,
    "fs.inotify.max_user_instances": 1048576,
    "fs.inotify.max_user_watches": 1048576,
    "kernel.dmesg_restrict": 1,
    "kernel.keys.maxbytes": 2000000,
    "kernel.keys.maxkeys": 2000,
    "net.core.bpf_jit_limit": 1000000000,
    "net.ipv4.neigh.default.gc_thresh3": 8192,
    "net.ipv6.neigh.default.gc_thresh3": 8192,
    "vm.max_map_count": 262144,
}
SYSCTL_FILE = Path("/etc/sysctl.d/60-github-runner-lxd.conf")


def _proc_sys(key: str) -> int:
    return int(Path("/proc/sys", *key.split(".")).read_text())


def _sysctl_file(path: Path) -> dict[str, int]:
    entries = (line.split("=") for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): int(value) for key, value in entries}


def test_setup_lxd_sets_lxd_production_limits_now_and_at_boot(lxd_client: object) -> None:
    _need_root_and_lxd(lxd_client)
    result = _run("scripts/setup-lxd.sh")
    assert result.returncode == 0, result.stderr
    persisted = _sysctl_file(SYSCTL_FILE)
    for key, value in LXD_PRODUCTION_LIMITS.items():
        assert _proc_sys(key) >= value, key
        assert persisted[key] >= value, key
        assert persisted[key] == max(value, _proc_sys(key)), key


def test_setup_lxd_never_lowers_a_higher_limit(lxd_client: object, tmp_path: Path) -> None:
    _need_root_and_lxd(lxd_client)
    key, path = "vm.max_map_count", Path("/proc/sys/vm/max_map_count")
    before = _proc_sys(key)
    higher = max(before, LXD_PRODUCTION_LIMITS[key]) + 4096
    path.write_text(str(higher))
    try:
        target = tmp_path / "limits.conf"
        result = subprocess.run(
            ["scripts/setup-lxd.sh"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "SYSCTL_FILE": str(target)},
        )
        assert result.returncode == 0, result.stderr
        assert _proc_sys(key) == higher
        assert _sysctl_file(target)[key] == higher
        assert f"raised {key}" not in result.stdout
    finally:
        path.write_text(str(before))


@pytest.mark.parametrize(("driver", "layout"), [("btrfs", "{pool}.img"), ("dir", "{pool}")])
def test_setup_lxd_puts_a_pool_under_source(
    lxd_client: object, tmp_path: Path, driver: str, layout: str
) -> None:
    _need_root_and_lxd(lxd_client)
    pool = f"tnp{secrets.token_hex(3)}"
    source, elsewhere = tmp_path / "runner-storage", tmp_path / "elsewhere"
    source.mkdir()
    elsewhere.mkdir()
    args = ["scripts/setup-lxd.sh", "--driver", driver, "--pool", pool, "--size", "1GiB"]
    try:
        result = _run(*args, "--source", str(source))
        assert result.returncode == 0, result.stderr
        assert f"created storage pool {pool}" in result.stdout
        where = _run("lxc", "storage", "get", pool, "source").stdout.strip()
        assert Path(where).resolve() == source / layout.format(pool=pool)
        assert (source / layout.format(pool=pool)).exists()

        again = _run(*args, "--source", str(source))
        assert again.returncode == 0, again.stderr
        assert "nothing to do" in again.stdout, again.stdout

        refused = _run(*args, "--source", str(elsewhere))
        assert refused.returncode != 0
        assert "refusing to move it" in refused.stderr
        assert not list(elsewhere.iterdir())
        # The pool other tests use stays as it is.
        assert _run(
            "lxc", "profile", "device", "get", "default", "root", "pool"
        ).stdout.strip() == ("default")
    finally:
        _run("lxc", "storage", "delete", pool)


def test_setup_lxd_refuses_a_missing_source(lxd_client: object, tmp_path: Path) -> None:
    _need_root_and_lxd(lxd_client)
    result = _run("scripts/setup-lxd.sh", "--source", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
