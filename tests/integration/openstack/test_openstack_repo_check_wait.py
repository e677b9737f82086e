"""A ``*_WAIT_REPO_CHECK`` flush on OpenStack waits for a server's pre-job check in flight.

Real pieces: the test OpenStack (Nova keeps the token digest the manager writes in the server's
metadata), the unit's policy service (``PolicyApp`` served by waitress on 127.0.0.1, with a gate
that holds a check inside it) and its client in the manager. The check is made, as the runner's
hook makes it, with the one-time token the server's user data holds (read back as the cloud's
admin). The flush is seen waiting (it asked the service twice while the check was held, and the
server was still there), then removes the server once the check is answered. No timing is
asserted.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from config.settings import RunnerManagerSettings
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.runners import POLICY_DIGEST_KEY
from repo_policy.app import PolicyApp
from repo_policy.config import PolicyConfig
from repo_policy.in_flight import token_digest
from repo_policy.policy import CheckRequest
from repo_policy.service import BackgroundServer
from repo_policy.tokens import OneTimeTokenStore
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from tests.integration.openstack.test_openstack_backend import wait_for
from tests.unit.fakes_core import make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.test_repo_policy_decision import FakeGithub as PolicyGithub

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="1GiB")
SERVICE_TOKEN = f"svc-{secrets.token_hex(12)}"
BODY = {"repository": "octo/app", "event": "push", "ref": "refs/heads/main", "payload": {}}
_TOKEN = re.compile(r"printf '%s' '?([^' \\]+)'? \\\n[^\n]*\.repo-policy-token\"")


class Gate:
    """Holds every check inside the service until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, check: CheckRequest) -> None:
        self.entered.set()
        assert self.release.wait(60)


class CountingApp:
    """The policy app, counting the ``GET /checks-in-flight`` it answers."""

    def __init__(self, app: PolicyApp) -> None:
        self.app = app
        self.in_flight_asked = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/checks-in-flight":
            with self.lock:
                self.in_flight_asked += 1
        return self.app(environ, start_response)


@pytest.fixture
def service() -> Iterator[tuple[str, Gate, CountingApp]]:
    gate = Gate()
    app = CountingApp(
        PolicyApp(
            lambda: SERVICE_TOKEN,
            OneTimeTokenStore(),
            PolicyGithub,
            PolicyConfig,
            before_check=gate,
        )
    )
    with BackgroundServer(app, threads=4) as server:
        yield server.url, gate, app
    gate.release.set()


@pytest.fixture
def manager(
    test_cloud: Any, tmp_path: Path, service: tuple[str, Gate, CountingApp]
) -> Iterator[tuple[OpenstackRunnerManager, OpenstackClient]]:
    app_name = f"osw{secrets.token_hex(3)}"
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
        repo_policy_url=service[0],
        service_token=SERVICE_TOKEN,
    )
    settings = RunnerManagerSettings.for_unit(
        app_name, 0, state_root=tmp_path, cron_dir=tmp_path, log_root=tmp_path, lock_timeout=5
    )
    client = OpenstackClient(test_cloud.clouds_yaml, test_cloud.cloud, timeout=60)
    yield (
        OpenstackRunnerManager(app_name, 0, config, client, FakeGithub(), settings=settings),
        client,
    )
    for server in client.list_servers(f"{app_name}-"):
        client.delete_server(server.id)


def test_a_wait_flush_waits_for_the_servers_check_in_flight(
    manager: tuple[OpenstackRunnerManager, OpenstackClient],
    service: tuple[str, Gate, CountingApp],
    os_admin: Any,
) -> None:
    mgr, client = manager
    url, gate, app = service
    mgr.reconcile(1, RES)
    (server,) = client.list_servers(mgr.prefix)
    user_data = base64.b64decode(os_admin.compute.get_server(server.id).user_data).decode()
    match = _TOKEN.search(user_data)
    assert match, "the user data writes the runner's one-time token"
    token = match.group(1)
    assert server.metadata.get(POLICY_DIGEST_KEY) == token_digest(token), "kept by Nova"

    reply: dict[str, Any] = {}

    def check() -> None:  # what the runner's pre-job hook does
        reply["check"] = requests.post(
            f"{url}/check", json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    checker = threading.Thread(target=check, daemon=True)
    checker.start()
    assert gate.entered.wait(30), "the check is inside the service"
    asked_before = app.in_flight_asked
    result: dict[str, Any] = {}
    flusher = threading.Thread(
        target=lambda: result.setdefault(
            "flushed", mgr.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK)
        ),
        daemon=True,
    )
    flusher.start()
    wait_for(lambda: app.in_flight_asked >= asked_before + 2, "the flush asking twice", 60)
    assert flusher.is_alive(), "the flush waits while the check is in flight"
    assert [s.name for s in client.list_servers(mgr.prefix)] == [server.name]
    gate.release.set()
    checker.join(60)
    flusher.join(120)
    assert not flusher.is_alive()
    assert result["flushed"] == 1
    assert "check" in reply
    wait_for(lambda: client.list_servers(mgr.prefix) == [], "the server deleted")
