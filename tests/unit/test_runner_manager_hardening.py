"""RunnerManager hardening against fakes: expiring idle runners, create cleanup, check waits.

Idle runners are replaced before their credentials expire, a creation is cleaned up whatever
fails, and a flush waits for policy checks on what the job cannot forge.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.settings import RunnerManagerSettings
from manager.idle_limit import max_idle_age
from repo_policy.config import DEFAULT_TOKEN_TTL
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.test_runner_manager import RES, go_online, make_manager

POLICY_URL = "http://127.0.0.1:9/"


@pytest.fixture
def lxd() -> FakeLxd:
    return FakeLxd()


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub()


@pytest.fixture
def settings(tmp_path: Path) -> RunnerManagerSettings:
    return RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron" / "github-runner-image",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
        busy_delete_wait=0.2,
        repo_check_wait=0.5,
        lock_timeout=0.2,
    )


def test_idle_runner_past_its_token_is_replaced_busy_kept(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings, repo_policy_url=POLICY_URL)
    lxd.add_instance("gh-0-idle0000", age=timedelta(hours=25))  # token minted 25 h ago
    lxd.add_instance("gh-0-busy0000", age=timedelta(hours=25))
    lxd.add_instance("gh-0-fresh000", age=timedelta(hours=2))
    github.add_record("gh-0-idle0000")
    github.add_record("gh-0-busy0000", busy=True)
    github.add_record("gh-0-fresh000")
    assert manager.reconcile(3, RES) == 0
    assert manager.last_report.deleted == {"gh-0-idle0000": "expiring"}
    assert len(manager.last_report.created) == 1, "replaced in the same reconcile"
    assert "gh-0-idle0000" not in lxd.instances
    assert github.by_name("gh-0-idle0000") is None
    assert {"gh-0-busy0000", "gh-0-fresh000"} < set(lxd.instances)
    assert len(lxd.instances) == 3
    (new,) = set(lxd.instances) - {"gh-0-busy0000", "gh-0-fresh000"}
    assert ".repo-policy-token" in " ".join(lxd.instances[new].files_pushed)
    go_online(github, busy={"gh-0-busy0000"})
    assert manager.reconcile(3, RES) == 0
    assert manager.last_report.deleted == {}, "the replacement and the busy one stay"


def test_no_policy_service_no_expiry(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.add_instance("gh-0-idle0000", age=timedelta(hours=25))
    github.add_record("gh-0-idle0000")
    assert manager.reconcile(1, RES) == 0
    assert manager.last_report.deleted == {}


def test_idle_limit_keeps_a_margin_and_an_interval(settings) -> None:
    ttl = timedelta(seconds=DEFAULT_TOKEN_TTL)
    with_policy = RunnerManagerSettings(**{**settings.__dict__, "repo_policy_url": POLICY_URL})
    limit = max_idle_age(with_policy, reconcile_interval=10)
    assert limit == ttl - with_policy.credential_margin - timedelta(minutes=10)
    assert limit is not None and limit < ttl - timedelta(minutes=10)
    assert max_idle_age(settings, reconcile_interval=10) is None
    assert max_idle_age(with_policy, reconcile_interval=100_000) == ttl / 2
