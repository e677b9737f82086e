"""Reactive mode on OpenStack: a job message on the real RabbitMQ gets a server on the test cloud.

The OpenstackRunnerManager's reconcile keeps consumer processes (``reactive.runner``, started by
``reactive.pool``); a consumer rebuilds the manager from its config file (which names the unit's
clouds.yaml), takes the message, registers a JIT runner with the sandbox GitHub (on 127.0.0.1)
and asks Nova for its server. Nova's fake driver runs nothing, so the runner never comes online:
what is asserted is what the unit controls. The server is the unit's (name, metadata, tags), its
user data (read back as the cloud's admin) carries that runner's JIT config and no token, the
consumer holds the message unacked while the job waits, acks it once GitHub shows the job
completed (the test cancels it: GitHub's cancel is a completion), and the reconcile keeps
``ceiling - runners alive`` consumers, draining (not stopping) the surplus: one server per job.

Needs the test OpenStack (``make setup-openstack``) and RabbitMQ (``scripts/setup-rabbitmq.sh``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import OpenstackSettings, ReactiveConfig
from github_api.types import GitHubRepo
from harness.local import local_charm_state
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.observe import APP_KEY, UNIT_KEY
from reactive import runner_manager as reactive_processes
from reactive.consumer import publish_job, queue_size
from reactive.pool import reactive_runner_config
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from sandbox.server import SandboxServer

pytestmark = [pytest.mark.broker, pytest.mark.usefixtures("broker")]

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="1GiB")
TOKEN = f"ghp_{secrets.token_hex(16)}"
REPO = "octo/osrx"


def wait_for(check: Callable[[], Any], what: str, deadline: float = 90.0) -> Any:
    """Poll ``check`` until it returns something true (bounded); return that."""
    end = time.monotonic() + deadline
    delay = 0.2
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > end:
            pytest.fail(f"{what} not reached in {deadline:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


@dataclass
class Unit:
    """One reactive unit on OpenStack, with its sandbox GitHub."""

    manager: OpenstackRunnerManager
    client: OpenstackClient
    sandbox: SandboxServer
    queue: str

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the sandbox on 127.0.0.1
            f"{self.sandbox.base_url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def servers(self) -> list[Any]:
        return self.client.list_servers(self.manager.prefix)

    def consumers(self) -> list[Any]:
        """The consumers that take jobs (not those draining)."""
        config = reactive_runner_config(self.manager.config, self.manager.settings)
        assert config is not None
        return [
            p for p in reactive_processes.list_processes(config.pid_dir) if p.drain_since is None
        ]

    def consumer_logs(self) -> str:
        config = reactive_runner_config(self.manager.config, self.manager.settings)
        assert config is not None
        return "".join(p.read_text(errors="replace") for p in config.log_dir.glob("*.log"))


@pytest.fixture
def unit(test_cloud: Any, broker: str, tmp_path: Path) -> Iterator[Unit]:
    app = f"osrx{secrets.token_hex(3)}"
    queue = f"{app}-q"
    sandbox = SandboxServer(token=TOKEN, host="127.0.0.1").start()
    settings = RunnerManagerSettings.for_unit(
        app, 0, state_root=tmp_path / "state", log_root=tmp_path / "logs", cron_dir=tmp_path
    )
    settings.state_dir.mkdir(parents=True)
    clouds_yaml = settings.state_dir / "clouds.yaml"  # as juju.runner_managers writes it
    shutil.copyfile(test_cloud.clouds_yaml, clouds_yaml)
    os.chmod(clouds_yaml, 0o600)
    cloud = OpenstackSettings(
        cloud=test_cloud.cloud,
        clouds_yaml=SecretStr(clouds_yaml.read_text()),
        auth_url="http://127.0.0.1:5000/v3",
        flavor=test_cloud.flavor,
        image=test_cloud.image,
        network=test_cloud.network,
    )
    state = local_charm_state(
        token=SecretStr(TOKEN),
        path=GitHubRepo(*REPO.split("/")),
        github_url=sandbox.base_url,
        api_url=sandbox.api_url,
        labels=("osrx",),
        app_name=app,
        unit_number=0,
        test_mode=False,
        openstack=cloud,
        reactive_config=ReactiveConfig(mq_uri=SecretStr(broker), queue_name=queue),
    )
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=(),
        token=TOKEN,
        flavor=test_cloud.flavor,
        image=test_cloud.image,
        network=test_cloud.network,
        dockerhub_mirror=None,
        reactive_config=state.reactive_config,
    )
    client = OpenstackClient(clouds_yaml, test_cloud.cloud, timeout=60)
    manager = OpenstackRunnerManager(
        app, 0, config, settings=settings, clouds_yaml=clouds_yaml, cloud_name=test_cloud.cloud
    )
    env = Unit(manager, client, sandbox, queue)
    try:
        yield env
    finally:
        processes = reactive_runner_config(config, settings)
        assert processes is not None
        reactive_processes.reconcile(0, processes, drain=False)
        try:
            manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
        finally:
            for server in client.list_servers(f"{app}-"):
                client.delete_server(server.id)
            sandbox.stop()


def test_a_job_message_gets_an_owned_server_with_its_jit_config(
    unit: Unit, broker: str, os_admin: Any
) -> None:
    # Reactive, no warm floor: nothing is created, one consumer per slot of the ceiling.
    assert unit.manager.reconcile(2, RES) == 0
    assert unit.servers() == []
    assert len(unit.consumers()) == 2
    job = unit.control(
        "POST", "/jobs", {"repository": REPO, "labels": ["self-hosted", "osrx"], "steps": []}
    )
    publish_job(broker, unit.queue, json.dumps({"labels": job["labels"], "url": job["url"]}))

    (server,) = wait_for(unit.servers, "a server for the job")
    assert server.name.startswith(unit.manager.prefix)
    assert server.metadata.get(APP_KEY) == unit.manager.app_name
    assert server.metadata.get(UNIT_KEY) == "0"
    assert "github-runner" in server.tags
    registered = [r.name for r in unit.manager.get_github_info()]
    assert registered == [server.name], "one JIT runner, registered under the server's name"
    user_data = base64.b64decode(os_admin.compute.get_server(server.id).user_data).decode()
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG=" in user_data
    assert TOKEN not in user_data, "the unit's GitHub token never reaches the server"

    # The consumer holds the message while the job waits for its runner: the queue looks empty.
    assert queue_size(broker, unit.queue) == 0
    # Consumers = ceiling - runners alive: the server (starting) takes one slot.
    assert unit.manager.reconcile(2, RES) == 0, "a runner made for a job is not scaled down"
    assert [s.name for s in unit.servers()] == [server.name]
    assert len(unit.consumers()) == 1
    # A ceiling of 1 leaves no slot: the consumer holding the message is drained too. It keeps
    # waiting for the job to be taken (stopped, it would requeue the message and the next
    # consumer, seeing no idle runner, would make a second server for the job).
    assert unit.manager.reconcile(1, RES) == 0
    assert unit.consumers() == []
    assert unit.manager.reconcile(2, RES) == 0
    assert len(unit.consumers()) == 1, "the draining consumer is not counted"

    # GitHub cancels the job (a completion): the consumer acks the message.
    unit.control("POST", f"/jobs/{job['id']}/cancel")
    wait_for(lambda: "acking" in unit.consumer_logs(), "the consumer's ack", deadline=120)
    config = reactive_runner_config(unit.manager.config, unit.manager.settings)
    assert config is not None
    # stopped consumers requeue what they still hold
    reactive_processes.reconcile(0, config, drain=False)
    assert queue_size(broker, unit.queue) == 0, "the message was acked, not held"
    assert [s.name for s in unit.servers()] == [server.name], "one server for the job"
    assert unit.consumer_logs().count("Spawned runner") == 1
    assert "draining" in unit.consumer_logs()

    # The flush removes the server and its GitHub record; the next reconcile restores consumers.
    assert unit.manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    wait_for(lambda: unit.servers() == [], "the server deleted")
    assert list(unit.manager.get_github_info()) == []
    assert unit.manager.reconcile(2, RES) == 0
    assert len(unit.consumers()) == 2


def test_a_job_asking_for_a_label_the_unit_lacks_gets_no_server(unit: Unit, broker: str) -> None:
    unit.manager.reconcile(1, RES)
    job = unit.control(
        "POST", "/jobs", {"repository": REPO, "labels": ["self-hosted", "noble"], "steps": []}
    )
    publish_job(broker, unit.queue, json.dumps({"labels": job["labels"], "url": job["url"]}))
    wait_for(lambda: "unsupported" in unit.consumer_logs().lower(), "the consumer's verdict")
    assert queue_size(broker, unit.queue) == 0, "rejected: dropped, not requeued"
    assert unit.servers() == []
    assert len(unit.consumers()) == 1, "no consumer crashed"
