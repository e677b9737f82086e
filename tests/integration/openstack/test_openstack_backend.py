"""The OpenStack backend against the real test OpenStack (``scripts/setup-openstack.sh``).

``OpenstackClient`` and ``OpenstackRunnerManager`` on the charm's non-admin user, GitHub being
the unit fake (the runners never come online: the servers boot on Nova's fake driver). The admin
connection only sets and restores the project's instance quota.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from config.settings import RunnerManagerSettings
from errors import OpenstackNotFoundError
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.observe import APP_KEY, UNIT_KEY
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import make_state
from tests.unit.fakes_github import FakeGithub

RESOURCES = VirtualMachineResources(cpu=1, memory="512MiB", disk="1GiB")
DEADLINE = 120.0


def wait_for(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    delay = 0.2
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"{what} not reached in {deadline}s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


@pytest.fixture
def client(test_cloud: Any) -> OpenstackClient:
    return OpenstackClient(test_cloud.clouds_yaml, test_cloud.cloud, timeout=60)


@pytest.fixture
def app_name() -> str:
    return f"ost{secrets.token_hex(3)}"


@pytest.fixture
def manager(
    test_cloud: Any, client: OpenstackClient, app_name: str, tmp_path: Path
) -> Iterator[OpenstackRunnerManager]:
    state = make_state(app_name=app_name)
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=(),
        token=state.token.get_secret_value(),
        flavor=test_cloud.flavor,
        image=test_cloud.image,
        network=test_cloud.network,
        dockerhub_mirror=None,
    )
    settings = RunnerManagerSettings.for_unit(
        app_name, 0, state_root=tmp_path, cron_dir=tmp_path, log_root=tmp_path, lock_timeout=5
    )
    yield OpenstackRunnerManager(app_name, 0, config, client, FakeGithub(), settings=settings)
    for server in client.list_servers(f"{app_name}-"):
        client.delete_server(server.id)


def test_lookups_resolve_and_missing_ones_are_clear(client: OpenstackClient, test_cloud) -> None:
    assert client.image_id(test_cloud.image)
    assert client.flavor_id(test_cloud.flavor)
    assert client.network_id(test_cloud.network)
    with pytest.raises(OpenstackNotFoundError, match="flavor"):
        client.flavor_id(f"no-such-flavor-{secrets.token_hex(3)}")


def test_reconcile_creates_owned_servers_and_flush_removes_them(
    manager: OpenstackRunnerManager, client: OpenstackClient, app_name: str
) -> None:
    assert manager.has_runner_image()
    assert manager.reconcile(2, RESOURCES) == 2
    servers = client.list_servers(f"{app_name}-0-")
    assert len(servers) == 2
    for server in servers:
        assert server.metadata.get(APP_KEY) == app_name
        assert server.metadata.get(UNIT_KEY) == "0"
        assert "github-runner" in server.tags
        assert server.created_at is not None
    wait_for(
        lambda: all(s.status == "ACTIVE" for s in client.list_servers(f"{app_name}-0-")),
        "servers ACTIVE",
    )
    assert manager.flush(LXDFlushMode.FLUSH_BUSY) == 2
    wait_for(lambda: client.list_servers(f"{app_name}-0-") == [], "servers deleted")


def test_delete_is_idempotent(
    manager: OpenstackRunnerManager, client: OpenstackClient, app_name: str
) -> None:
    manager.reconcile(1, RESOURCES)
    (server,) = client.list_servers(f"{app_name}-0-")
    client.delete_server(server.id)
    client.delete_server(server.id)
    wait_for(lambda: client.list_servers(f"{app_name}-0-") == [], "server deleted")
    client.delete_server(server.id)  # gone: still a success
    client.delete_server(server.name)


def test_quota_gives_fewer_servers_and_a_report(
    manager: OpenstackRunnerManager, client: OpenstackClient, app_name: str, os_admin, test_cloud
) -> None:
    before = os_admin.get_compute_quotas(test_cloud.project_id)
    used = len(list(os_admin.compute.servers(all_projects=True, project_id=test_cloud.project_id)))
    os_admin.set_compute_quotas(test_cloud.project_id, instances=used + 1)
    # One creation at a time: Nova's API check is racy (parallel creates can all pass it; its
    # recheck then sends the extras to ERROR, cleaned by the next reconcile).
    manager.settings = replace(manager.settings, create_parallelism=1)
    try:
        manager.reconcile(3, RESOURCES)
    finally:
        os_admin.set_compute_quotas(test_cloud.project_id, instances=before.instances)
    report = manager.last_report
    assert report.quota_exceeded is not None, report
    assert len(report.created) <= 1
    assert report.not_attempted >= 2


def test_racing_creates_past_quota_are_cleaned_next_reconcile(
    manager: OpenstackRunnerManager, client: OpenstackClient, app_name: str, os_admin, test_cloud
) -> None:
    before = os_admin.get_compute_quotas(test_cloud.project_id)
    used = len(list(os_admin.compute.servers(all_projects=True, project_id=test_cloud.project_id)))
    os_admin.set_compute_quotas(test_cloud.project_id, instances=used + 1)
    manager.settings = replace(manager.settings, create_parallelism=4)
    prefix = f"{app_name}-0-"
    try:
        manager.reconcile(4, RESOURCES)  # quota refusals, or extras Nova sends to ERROR
        wait_for(
            lambda: all(s.status in ("ACTIVE", "ERROR") for s in client.list_servers(prefix)),
            "servers settled",
        )
        first = client.list_servers(prefix)
        manager.reconcile(1, RESOURCES)
    finally:
        os_admin.set_compute_quotas(test_cloud.project_id, instances=before.instances)
    errored = {s.name for s in first if s.status == "ERROR"}
    assert len(manager.last_report.deleted) >= len(errored)
    wait_for(
        lambda: not errored & {s.name for s in client.list_servers(prefix)}, "ERROR servers gone"
    )
    assert len([s for s in client.list_servers(prefix) if s.status == "ACTIVE"]) <= 1
