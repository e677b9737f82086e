"""The packed charm on a real Juju controller (jubilant): deploy, configure, act."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jubilant
import pytest

pytestmark = pytest.mark.skipif(
    shutil.which("juju") is None, reason="no juju on PATH: needs a bootstrapped controller"
)

APP = "github-runner"


def unit_message(status: jubilant.Status) -> str:
    return status.apps[APP].units[f"{APP}/0"].workload_status.message


def test_deploy_without_token_is_blocked_naming_the_option(
    juju: jubilant.Juju, charm: Path
) -> None:
    juju.deploy(charm, APP, config={"path": "octo/repo"}, storage={"runner": "10G"})
    status = juju.wait(lambda s: jubilant.all_blocked(s, APP))
    assert unit_message(status) == "Missing required configuration: token"


def test_bad_value_is_blocked_naming_the_option(juju: jubilant.Juju) -> None:
    juju.config(APP, {"token": "ghp_placeholder", "vm-memory": "7GB"})
    status = juju.wait(lambda s: jubilant.all_blocked(s, APP))
    assert unit_message(status).startswith("vm-memory: '7GB' is not a size like 7GiB")


def test_runners_come_up_and_flush(juju: jubilant.Juju) -> None:
    token, path = (
        os.environ.get("GITHUB_RUNNER_TEST_TOKEN"),
        os.environ.get("GITHUB_RUNNER_TEST_PATH"),
    )
    if not token or not path:
        pytest.skip("set GITHUB_RUNNER_TEST_TOKEN and GITHUB_RUNNER_TEST_PATH for runner tests")
    juju.config(APP, {"token": token, "path": path, "vm-memory": "2GiB", "virtual-machines": 1})
    juju.wait(lambda s: jubilant.all_active(s, APP))
    task = juju.run(f"{APP}/0", "reconcile-runners")
    assert task.status == "completed"
    checked = juju.run(f"{APP}/0", "check-runners")
    assert int(checked.results["online"]) + int(checked.results["offline"]) >= 1
    flushed = juju.run(f"{APP}/0", "flush-runners", {"mode": "idle"})
    assert "flushed" in flushed.results
