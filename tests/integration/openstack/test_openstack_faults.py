"""Faults of the OpenStack backend on the real test OpenStack (``scripts/setup-openstack.sh``).

``OpenstackRunnerManager`` on the charm's non-admin user, its GitHub the sandbox on loopback
(over HTTP: a manager in another process shares it). Nova runs the fake driver: servers go
ACTIVE and run nothing, so runners never come online; the bootstrap timeout is long enough
that no server is judged for that in these tests (except where a test sets it short).

- a server in ERROR (a flavor no host can hold: nova's "No valid host was found") is deleted at
  the next reconcile, its fault logged, and replaced;
- kill -9 of a process mid-``reconcile()`` (0.1-1.5 s in, as ``benchmarks/soak.py`` does for
  LXD), 6 times, leaves nothing the next reconcile does not converge;
- orphans on either side are cleaned (a GitHub record with no server, a server of the unit
  with no record past the bootstrap timeout), a server with the prefix but not the unit's
  metadata is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from github_api.types import GitHubRepo
from harness.local import local_charm_state
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.seam import ServerView
from paths import REPO_ROOT
from runner_manager_type import OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from sandbox.server import SandboxServer

RESOURCES = VirtualMachineResources(cpu=1, memory="512MiB", disk="1GiB")
ADMIN = "ghp_faults-sandbox-admin-0001"  # the loopback sandbox's token
DEADLINE = 120.0
KILL_SEED = int(os.environ.get("OPENSTACK_KILL_SEED", "21"))
CHILD = """
import json, sys
from tests.integration.openstack.test_openstack_faults import Spec, build_manager
manager = build_manager(Spec(**json.loads(sys.argv[1])))
while True:
    print("begin", flush=True)
    manager.reconcile(int(sys.argv[2]), None)
    print("end", flush=True)
"""


@dataclass(frozen=True)
class Spec:
    """What a manager of the unit is built from (in this process or a child)."""

    app: str
    state_root: str
    clouds_yaml: str
    cloud: str
    api_url: str
    base_url: str
    repo: str
    flavor: str
    image: str
    network: str


def build_manager(spec: Spec, **settings: Any) -> OpenstackRunnerManager:
    """The unit's manager: the real OpenStack client, the sandbox through the metered client."""
    owner, repo = spec.repo.split("/")
    path = GitHubRepo(owner, repo)
    state = local_charm_state(
        token=SecretStr(ADMIN),
        path=path,
        github_url=spec.base_url,
        api_url=spec.api_url,
        labels=("faults",),
        app_name=spec.app,
    )
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=path,
        labels=(),
        token=ADMIN,
        flavor=spec.flavor,
        image=spec.image,
        network=spec.network,
        dockerhub_mirror=None,
    )
    root = Path(spec.state_root)
    unit = RunnerManagerSettings.for_unit(
        spec.app, 0, state_root=root, cron_dir=root, log_root=root, lock_timeout=60
    )
    unit = replace(unit, **{"bootstrap_timeout": timedelta(minutes=30), **settings})
    client = OpenstackClient(Path(spec.clouds_yaml), spec.cloud, timeout=60)
    return OpenstackRunnerManager(spec.app, 0, config, client, settings=unit)


def wait_for(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"{what} not reached in {deadline}s")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(token=ADMIN, port=0) as server:
        yield server


@pytest.fixture
def spec(test_cloud: Any, sandbox: SandboxServer, tmp_path: Path) -> Spec:
    return Spec(
        app=f"osf{secrets.token_hex(3)}",
        state_root=str(tmp_path),
        clouds_yaml=str(test_cloud.clouds_yaml),
        cloud=test_cloud.cloud,
        api_url=sandbox.api_url,
        base_url=sandbox.base_url,
        repo=f"octo/faults-{secrets.token_hex(3)}",
        flavor=test_cloud.flavor,
        image=test_cloud.image,
        network=test_cloud.network,
    )


@pytest.fixture
def client(test_cloud: Any, spec: Spec) -> Iterator[OpenstackClient]:
    """The test's own view of the cloud; deletes the unit's servers at teardown."""
    cloud = OpenstackClient(test_cloud.clouds_yaml, test_cloud.cloud, timeout=60)
    yield cloud
    for server in cloud.list_servers(f"{spec.app}-"):
        cloud.delete_server(server.id)
    wait_for(lambda: not cloud.list_servers(f"{spec.app}-"), "teardown: servers deleted")


def records(manager: OpenstackRunnerManager) -> list[str]:
    """Names of the unit's GitHub records (sandbox), duplicates kept."""
    return [r.name for r in manager.get_github_info()]


def settled(os_conn: Any, prefix: str) -> Callable[[], bool]:
    """No server with the prefix is building or being deleted (nova's task state is empty)."""

    def check() -> bool:
        servers = [s for s in os_conn.compute.servers(details=True) if s.name.startswith(prefix)]
        return all(s.task_state is None and s.status in ("ACTIVE", "ERROR") for s in servers)

    return check


# --- ERROR ---------------------------------------------------------------------------------------


@pytest.fixture
def no_host_flavor(os_admin: Any) -> Iterator[str]:
    """A public flavor no compute host can hold (1 PB of disk: placement finds no host)."""
    flavor = os_admin.compute.create_flavor(
        name=f"ostest-nohost-{secrets.token_hex(3)}", ram=256, vcpus=1, disk=10**6, is_public=True
    )
    yield flavor.name
    os_admin.compute.delete_flavor(flavor.id, ignore_missing=True)


def test_error_server_is_deleted_with_its_fault_logged_and_replaced(
    spec: Spec,
    client: OpenstackClient,
    no_host_flavor: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"{spec.app}-0-"
    # The unit's manager once had a flavor no host could hold (as a host failure would do).
    build_manager(replace(spec, flavor=no_host_flavor)).reconcile(1, RESOURCES)
    wait_for(lambda: [s.status for s in client.list_servers(prefix)] == ["ERROR"], "ERROR")
    (broken,) = client.list_servers(prefix)
    assert broken.fault and "No valid host was found" in broken.fault
    manager = build_manager(spec)
    assert records(manager) == [broken.name]

    with caplog.at_level(logging.WARNING, logger="openstack_backend"):
        assert manager.reconcile(1, RESOURCES) == 1

    report = manager.last_report
    assert report.deleted == {broken.name: "unhealthy"}
    assert len(report.created) == 1 and not report.failed
    logged = [r.getMessage() for r in caplog.records if broken.name in r.getMessage()]
    assert any("No valid host was found" in line for line in logged), logged
    wait_for(lambda: broken.name not in {s.name for s in client.list_servers(prefix)}, "gone")
    wait_for(lambda: [s.status for s in client.list_servers(prefix)] == ["ACTIVE"], "replacement")
    (replacement,) = client.list_servers(prefix)
    assert replacement.name == report.created[0]
    assert records(manager) == [replacement.name]


# --- kill -9 mid-reconcile -----------------------------------------------------------------------


def reconcile_then_kill(spec: Spec, quantity: int, delay: float) -> list[str]:
    """Run ``reconcile(quantity)`` in a child process, kill -9 it ``delay`` s after it began.

    Returns:
        The child's lines before the kill (``begin`` / ``end`` of each reconcile).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(spec.__dict__), str(quantity)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        first = child.stdout.readline()  # "begin": the manager is built, the reconcile starts
        assert first.strip() == "begin", f"child did not start: {first!r}"
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        return [first.strip(), *(line.strip() for line in child.stdout)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        child.stdout.close()


def test_kill_9_mid_reconcile_leaves_what_the_next_reconcile_converges(
    spec: Spec, client: OpenstackClient, os_conn: Any
) -> None:
    prefix = f"{spec.app}-0-"
    rng = random.Random(KILL_SEED)
    mid = 0
    # Creations and deletions both get interrupted: 5 -> 0 killed mid-way typically leaves
    # servers whose records are already gone (deregistration goes first), 0 -> 5 records
    # whose servers Nova never got.
    for quantity in (5, 1, 5, 0, 4, 2):
        lines = reconcile_then_kill(spec, quantity, rng.uniform(0.1, 1.5))
        mid += lines[:2] == ["begin"]  # killed in the first reconcile, before it ended
    assert mid, f"no kill landed mid-reconcile (seed {KILL_SEED})"
    wait_for(settled(os_conn, prefix), "servers settled")

    manager = build_manager(spec)
    manager.reconcile(2, RESOURCES)
    assert not manager.last_report.failed, manager.last_report
    wait_for(settled(os_conn, prefix), "servers settled after the reconcile")

    servers: list[ServerView] = client.list_servers(prefix)
    names = records(manager)
    assert len(servers) == 2, [(s.name, s.status) for s in servers]
    assert all(s.status == "ACTIVE" for s in servers), [(s.name, s.status) for s in servers]
    assert len(names) == len(set(names)), f"duplicate GitHub registrations: {names}"
    assert sorted(names) == sorted(s.name for s in servers), "orphans on one side"
    manager.reconcile(2, RESOURCES)  # converged: nothing more to do
    done = manager.last_report
    assert not done.created and not done.deleted and not done.failed, done


def test_server_left_by_a_kill_between_deregistration_and_deletion_is_replaced_at_once(
    spec: Spec, client: OpenstackClient
) -> None:
    manager = build_manager(spec)
    manager.reconcile(1, RESOURCES)
    (name,) = manager.last_report.created
    (record,) = manager.github.list_runners(manager.config.path, manager.prefix)
    manager.github.delete_runner(manager.config.path, record.id, name)  # the kill's window

    manager.reconcile(1, RESOURCES)

    assert name in manager.last_report.deleted, manager.last_report
    wait_for(lambda: name not in {s.name for s in client.list_servers(manager.prefix)}, "gone")
    servers = [s.name for s in client.list_servers(manager.prefix)]
    assert len(servers) == 1 and sorted(records(manager)) == servers


# --- orphans -------------------------------------------------------------------------------------


def test_orphan_record_is_deleted_and_the_runner_replaced(
    spec: Spec, client: OpenstackClient
) -> None:
    manager = build_manager(spec)
    orphan = f"{manager.prefix}{secrets.token_hex(4)}"
    manager.github.get_jit_config(manager.config.path, orphan, ("self-hosted", "faults"))
    assert records(manager) == [orphan]

    manager.reconcile(1, RESOURCES)

    report = manager.last_report
    assert report.deleted == {orphan: "orphan-record"}
    assert len(report.created) == 1
    assert records(manager) == report.created
    assert [s.name for s in client.list_servers(manager.prefix)] == report.created


def test_orphan_server_is_deleted_and_a_foreign_one_left_alone(
    spec: Spec, client: OpenstackClient, test_cloud: Any
) -> None:
    # Short bootstrap timeout: a server of the unit with no record is judged at once.
    manager = build_manager(spec, bootstrap_timeout=timedelta(seconds=1))
    image, flavor, network = (
        client.image_id(test_cloud.image),
        client.flavor_id(test_cloud.flavor),
        client.network_id(test_cloud.network),
    )
    orphan = client.create_server(
        f"{manager.prefix}{secrets.token_hex(4)}",
        image=image,
        flavor=flavor,
        network=network,
        user_data="#!/bin/sh\n",
        metadata=manager.owner.metadata(),
        tags=manager.owner.tags(),
    )
    foreign = client.create_server(
        f"{manager.prefix}{secrets.token_hex(4)}",
        image=image,
        flavor=flavor,
        network=network,
        user_data="#!/bin/sh\n",
        metadata={"github-runner-app": "someone-else", "github-runner-unit": "0"},
        tags=(),
    )

    def old_and_active() -> bool:  # past the bootstrap timeout (nova's times are to the second)
        now = datetime.now(timezone.utc)
        servers = client.list_servers(manager.prefix)
        return len(servers) == 2 and all(
            s.status == "ACTIVE" and s.created_at and now - s.created_at > timedelta(seconds=2)
            for s in servers
        )

    wait_for(old_and_active, "both servers ACTIVE and past the bootstrap timeout")

    manager.reconcile(0, RESOURCES)

    assert manager.last_report.deleted == {orphan.name: "orphan-instance"}
    wait_for(
        lambda: [s.name for s in client.list_servers(manager.prefix)] == [foreign.name],
        "orphan gone, foreign server kept",
    )
