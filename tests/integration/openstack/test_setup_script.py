"""scripts/setup-openstack.sh: arguments, and a second run when the control plane is up."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

SCRIPT = "scripts/setup-openstack.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_unknown_argument_is_refused() -> None:
    result = _run("--no-such-flag")

    assert result.returncode != 0
    assert "unknown argument: --no-such-flag" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="setup-openstack.sh runs as root")
def test_second_run_when_up_changes_nothing(test_cloud: Any) -> None:
    before = test_cloud.clouds_yaml.read_text()

    result = _run()

    assert result.returncode == 0, result.stderr
    assert "already up" in result.stdout
    assert test_cloud.clouds_yaml.read_text() == before
