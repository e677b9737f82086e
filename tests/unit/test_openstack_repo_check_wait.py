"""The ``*_WAIT_REPO_CHECK`` flushes on OpenStack: a server inside its pre-job check is waited for.

A server's metadata holds the digest of its runner's one-time token (written by the manager at
creation); the policy fake says which digests are in flight, as the real service's
``GET /checks-in-flight`` does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from config.settings import RunnerManagerSettings
from errors import RepoPolicyError
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.policy_checks import servers_in_check
from openstack_backend.runners import POLICY_DIGEST_KEY
from openstack_backend.seam import ServerView
from repo_policy.in_flight import token_digest
from runner_manager_type import LXDFlushMode
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_openstack import FakeOpenstack
from tests.unit.test_openstack_manager import come_online, make_config

RES = VirtualMachineResources(cpu=1, memory="1GiB", disk="10GiB")
URL = "http://198.18.0.1:8080"


class BrokenPolicy(FakeRepoPolicy):
    def checks_in_flight(self) -> frozenset[str]:
        self.in_flight_calls += 1
        raise RepoPolicyError("policy service unreachable")


def build(
    tmp_path: Path, policy: FakeRepoPolicy, wait: float = 30.0, url: str | None = URL
) -> tuple[OpenstackRunnerManager, FakeOpenstack, FakeGithub]:
    settings = RunnerManagerSettings.for_unit(
        "gh",
        0,
        state_root=tmp_path / "state",
        log_root=tmp_path / "logs",
        lock_timeout=0.2,
        create_parallelism=1,
        repo_check_wait=wait,
    )
    cloud, github = FakeOpenstack(), FakeGithub()
    config = make_config(repo_policy_url=url, service_token="svc")
    manager = OpenstackRunnerManager(
        "gh", 0, config, cloud, github, settings=settings, policy=policy
    )
    return manager, cloud, github


def test_each_server_carries_its_tokens_digest(tmp_path: Path) -> None:
    policy = FakeRepoPolicy()
    manager, cloud, _ = build(tmp_path, policy)
    manager.reconcile(2, RES)
    digests = sorted(s.metadata[POLICY_DIGEST_KEY] for s in cloud.servers.values())
    assert digests == sorted(token_digest(f"one-time-{n}") for n in (1, 2))
    for server in cloud.servers.values():  # the digest, never the token
        assert "one-time-" not in server.metadata[POLICY_DIGEST_KEY]


@pytest.mark.parametrize(
    "mode",
    [
        LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK,
        LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
        LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
    ],
)
def test_a_wait_flush_waits_until_the_check_is_answered(tmp_path: Path, mode) -> None:
    policy = FakeRepoPolicy()
    manager, cloud, github = build(tmp_path, policy)
    manager.reconcile(1, RES)
    come_online(cloud, github)
    (server,) = cloud.servers.values()
    policy.in_flight = {server.metadata[POLICY_DIGEST_KEY]}
    policy.in_flight_polls = 3  # the check is answered after the third look
    assert manager.flush(mode) == 1
    assert policy.in_flight_calls == 4, "looked until the check was no longer in flight"
    assert cloud.servers == {}


def test_other_checks_in_flight_do_not_hold_the_flush(tmp_path: Path) -> None:
    policy = FakeRepoPolicy()
    manager, cloud, github = build(tmp_path, policy)
    manager.reconcile(1, RES)
    come_online(cloud, github)
    policy.in_flight = {token_digest("another unit's runner")}
    assert manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert policy.in_flight_calls == 1
    assert cloud.servers == {}


def test_the_wait_is_bounded(tmp_path: Path) -> None:
    policy = FakeRepoPolicy()
    manager, cloud, github = build(tmp_path, policy, wait=0.3)
    manager.reconcile(1, RES)
    come_online(cloud, github)
    (server,) = cloud.servers.values()
    policy.in_flight = {server.metadata[POLICY_DIGEST_KEY]}  # never answered
    assert manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert policy.in_flight_calls >= 2
    assert cloud.servers == {}


def test_modes_without_the_wait_and_units_without_a_service_do_not_ask(tmp_path: Path) -> None:
    policy = FakeRepoPolicy()
    manager, cloud, github = build(tmp_path, policy)
    manager.reconcile(1, RES)
    come_online(cloud, github)
    (server,) = cloud.servers.values()
    policy.in_flight = {server.metadata[POLICY_DIGEST_KEY]}
    assert manager.flush(LXDFlushMode.FLUSH_BUSY) == 1
    assert policy.in_flight_calls == 0
    unchecked, cloud, github = build(tmp_path / "none", policy, url=None)
    unchecked.reconcile(1, RES)
    come_online(cloud, github)
    assert unchecked.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert policy.in_flight_calls == 0


def test_a_service_that_cannot_tell_is_not_waited_for(tmp_path: Path) -> None:
    policy = BrokenPolicy()
    manager, cloud, github = build(tmp_path, policy)
    manager.reconcile(1, RES)
    come_online(cloud, github)
    assert manager.flush(LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK) == 1
    assert policy.in_flight_calls == 1


def test_servers_in_check_matches_only_recorded_digests() -> None:
    digest = token_digest("t")
    servers = [
        ServerView(name="a", id="1", status="ACTIVE", metadata={POLICY_DIGEST_KEY: digest}),
        ServerView(name="b", id="2", status="ACTIVE", metadata={}),
        ServerView(name="c", id="3", status="ACTIVE", metadata={POLICY_DIGEST_KEY: "x" * 64}),
    ]
    assert servers_in_check(servers, {digest}) == ["a"]
    assert servers_in_check(servers, set()) == []
    assert servers_in_check([replace(servers[1])], {digest}) == []
