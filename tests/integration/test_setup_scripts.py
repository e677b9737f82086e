"""The LXD setup scripts are idempotent: a second run changes nothing and says so."""

from __future__ import annotations

import os
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
