"""Jobs end to end through OpenStack: a job queued in the sandbox runs on a server nova made.

The charm's ``OpenstackRunnerManager`` (production code) on the test OpenStack, GitHub being
the sandbox on the closed test network. Nova's compute is the test driver of
``scripts/openstack/lxd_virt_driver.py`` (TEST INFRASTRUCTURE, installed by
``scripts/setup-openstack.sh``): the server of a Glance image with the ``github_runner_lxd``
property runs as an LXD container from the test image, with a NIC on the test network and its
user data (the manager's start script with the JIT config) run as root at boot, as cloud-init
would. The unit's real policy service (with the metrics push route) serves in a test host.

reconcile -> nova creates a server -> its container runs the user data -> the runner (JIT)
comes online in the sandbox and takes the queued job -> the job completes and the runner powers
off -> nova shows SHUTOFF -> the next reconcile deletes the server (and the container goes) and
turns the metrics the runner pushed to the unit into events. A busy flush removes a server
whose runner is running a job, and its container goes with it; servers of other images keep
nova's fake behaviour (no container).

What the test setup cannot show: a real hypervisor, cloud-init, the metadata service or a
Neutron data path (the container's address comes from the test network's DHCP, not from the
Neutron port); the runner application is fetched from the sandbox (the LXD test image has none).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.local import LocalEnvironment, LocalOptions
from harness.openstack_lxd import (
    TestCloud,
    container_log,
    containers_of,
    driver_problem,
    lxd_glance_image,
    openstack_manager,
    openstack_settings,
    remove_containers,
)
from harness.testnet import TestNet
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.metrics_push import push_key_path, stores_dir
from repo_policy.service import ServiceFiles, build_app
from runner_manager_type import LXDFlushMode
from runner_type import VirtualMachineResources

pytestmark = [pytest.mark.lxd, pytest.mark.usefixtures("lxd_client")]

RESOURCES = VirtualMachineResources(cpu=1, memory="512MiB", disk="1GiB")  # unused: the flavor
SERVICE_TOKEN = "os-service-token"
REPO = "octo/osjob"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.fixture(scope="session")
def lxd_driver() -> None:
    """The test compute driver is installed and configured; skips (fails in CI) otherwise."""
    problem = driver_problem()
    if problem is not None:
        reason = f"{problem}; run sudo scripts/setup-openstack.sh"
        if os.environ.get("CI"):
            pytest.fail(f"the LXD compute driver is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)


class World:
    """The sandbox environment, the OpenStack manager and what the test looks at."""

    def __init__(self, env: LocalEnvironment, manager: OpenstackRunnerManager) -> None:
        self.env = env
        self.manager = manager
        self.server_ids: set[str] = set()

    def servers(self) -> list[Any]:
        servers = self.manager.cloud.list_servers(self.manager.prefix)
        self.server_ids.update(s.id for s in servers)
        return servers

    def online(self) -> list[str]:
        return [r.name for r in self.manager.get_github_info() if r.status.value == "online"]


@pytest.fixture
def world(
    test_cloud: Any,
    os_conn: Any,
    testnet: TestNet,
    test_image: str,
    lxd_driver: None,
    tmp_path: Path,
) -> Iterator[World]:
    options = LocalOptions(app_name="osl", repo=REPO, labels=("osjob",), metrics=False)
    cloud = TestCloud(
        test_cloud.clouds_yaml, test_cloud.cloud, test_cloud.flavor, test_cloud.network
    )
    app = f"osj{secrets.token_hex(2)}"
    with (
        LocalEnvironment(options, testnet=testnet) as env,
        lxd_glance_image(os_conn, alias=test_image, network=testnet.bridge) as image,
    ):
        state_dir = openstack_settings(env, app).state_dir
        (tmp_path / "service-token").write_text(SERVICE_TOKEN)
        (tmp_path / "github-token").write_text(env.token)
        # The sandbox's branches are unprotected: let push jobs on them pass the check.
        (tmp_path / "policy.json").write_text(json.dumps({"allow_unprotected_branches": True}))
        policy = build_app(
            ServiceFiles(
                token_file=tmp_path / "service-token",
                github_token_file=tmp_path / "github-token",
                github_api_url=env.sandbox.api_url,
                config_file=tmp_path / "policy.json",
                metrics_stores=stores_dir(state_dir),
                metrics_push_key=push_key_path(state_dir),
            )
        )
        server = env.serve(policy, threads=4)  # runners reach it over the test network
        manager = openstack_manager(
            env,
            cloud,
            image.name,
            app_name=app,
            policy_url=server.url,
            service_token=SERVICE_TOKEN,
            metrics=True,
        )
        world = World(env, manager)
        try:
            yield world
        finally:
            _cleanup(world)


def _cleanup(world: World) -> None:
    """Remove every server of the test, then check their containers went with them."""
    try:
        world.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    finally:
        cloud = world.manager.cloud
        for server in world.servers():
            cloud.delete_server(server.id)
        wait_for(lambda: world.servers() == [], 120, "the servers to be deleted")
        left = containers_of(world.server_ids)
        remove_containers(left)
    assert left == [], f"containers outlived their servers: {left}"


def test_a_job_runs_on_a_runner_nova_created(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_log = tmp_path / "metrics.log"
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(metrics_log))
    manager, env = world.manager, world.env

    assert manager.reconcile(1, RESOURCES) == 1
    (server,) = world.servers()
    name = server.name
    try:
        wait_for(lambda: world.online() == [name], 90, "the runner to come online")
    except AssertionError:
        raise AssertionError(f"not online; user data said:\n{container_log(server.id)}") from None
    assert containers_of([server.id]) == [f"nova-{server.id}"]

    job = env.queue_job(["echo marker-$((6 * 7))", "hostname"], labels=("self-hosted", "osjob"))
    (done,) = env.wait_jobs([job["id"]], 90)
    assert done["status"] == "completed", (done, container_log(server.id))
    assert done["conclusion"] == "success", done.get("log")
    assert done["runner_name"] == name
    assert "marker-42" in done["log"]
    assert f"nova-{server.id}" in done["log"]  # the step ran in the server's container

    # The runner powers off after its job: nova shows SHUTOFF; the next reconcile deletes it.
    wait_for(
        lambda: [s.status for s in world.servers()] == ["SHUTOFF"], 60, "the server to power off"
    )
    manager.reconcile(0, RESOURCES)
    assert list(manager.last_report.deleted) == [name]
    wait_for(lambda: world.servers() == [], 60, "the server to be deleted")
    wait_for(lambda: containers_of([server.id]) == [], 30, "the container to be deleted")
    assert world.online() == [] and list(manager.get_github_info()) == []

    # The runner pushed both metrics files to the unit before it powered off; the reconcile
    # that deleted its server turned them into events.
    events = {e["event"]: e for e in map(json.loads, metrics_log.read_text().splitlines())}
    assert {"runner_installed", "runner_start", "runner_stop"} <= set(events), events
    start, stop = events["runner_start"], events["runner_stop"]
    assert (start["repo"], start["github_event"]) == (REPO, "push")
    queued = datetime.fromisoformat(done["created_at"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
    assert start["queue_duration"] == (started - queued).total_seconds()
    assert (stop["status"], stop["job_conclusion"]) == ("normal", "success")
    assert not (stores_dir(manager.settings.state_dir) / name).exists()


def test_a_busy_flush_removes_the_server_running_a_job(world: World) -> None:
    manager, env = world.manager, world.env
    manager.reconcile(1, RESOURCES)
    (server,) = world.servers()
    wait_for(lambda: world.online() == [server.name], 90, "the runner to come online")
    job = env.queue_job(["sleep 120"], labels=("self-hosted", "osjob"))
    wait_for(lambda: env.job(job["id"])["status"] == "in_progress", 60, "the job to start")

    assert manager.flush(LXDFlushMode.FLUSH_IDLE) == 0  # a busy runner stays
    assert [s.id for s in world.servers()] == [server.id]
    assert manager.flush(LXDFlushMode.FLUSH_BUSY) == 1
    wait_for(lambda: world.servers() == [], 60, "the server to be deleted")
    wait_for(lambda: containers_of([server.id]) == [], 30, "the container to be deleted")
    assert list(manager.get_github_info()) == []


def test_servers_of_other_images_keep_the_fake_behaviour(
    make_server: Callable[..., Any], os_conn: Any, lxd_driver: None
) -> None:
    server = os_conn.compute.wait_for_server(make_server("fake"), interval=0.3, wait=120)
    assert server.status == "ACTIVE"
    assert containers_of([server.id]) == []
