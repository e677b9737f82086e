"""RunnerManager hardening against fakes: expiring idle runners, create cleanup, check waits.

Idle runners are replaced before their credentials expire, a creation is cleaned up whatever
fails, and a flush waits for policy checks on what the job cannot forge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

import errors
from config.settings import RunnerManagerSettings
from manager import removal
from manager.idle_limit import max_idle_age
from metrics.storage import DirectoryStorageManager
from repo_policy.app import PolicyApp
from repo_policy.client import RepoPolicyComplianceClient
from repo_policy.config import DEFAULT_TOKEN_TTL, PolicyConfig
from repo_policy.in_flight import token_digest
from repo_policy.service import BackgroundServer
from repo_policy.tokens import OneTimeTokenStore
from runner import POLICY_TOKEN_KEY, CreateRunnerConfig, Runner
from runner_manager_type import LXDFlushMode
from runner_type import RunnerStatus
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.test_repo_policy_decision import FakeGithub as PolicyGithub
from tests.unit.test_repo_policy_in_flight import BODY, Gate
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
        clone_from_template=False,  # runners counted alone: see test_runner_template
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


@pytest.mark.parametrize(
    "error",
    [KeyError("jit"), OSError(28, "No space left on device"), ValueError("bad value")],
    ids=["KeyError", "OSError", "ValueError"],
)
def test_create_cleans_up_on_any_exception(lxd, github, settings, tmp_path, error) -> None:
    storage = DirectoryStorageManager(tmp_path / "stores", tmp_path / "quarantine")
    manager = make_manager(lxd, github, settings, metrics_enabled=True, storage=storage)
    lxd.fail_exec_with = error  # the start command fails after the JIT registration
    manager.reconcile(1, RES)
    assert lxd.instances == {}, "the instance is deleted"
    assert github.records == {}, "the registration is deleted"
    assert list((tmp_path / "stores").iterdir()) == [], "the metrics store is deleted"
    (name,) = manager.last_report.failed
    assert name.startswith("gh-0-"), "the error names the runner"


def test_create_error_carries_the_cause(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.fail_exec_with = KeyError("jit")
    runner = Runner(
        manager._clients,
        manager._runner_config("gh-0-cause000", ""),
        RunnerStatus(),
        settings=manager.settings,
    )
    with pytest.raises(errors.RunnerCreateError, match="KeyError") as caught:
        runner.create(
            CreateRunnerConfig(
                image="github-runner-test",
                resources=RES,
                binary_path=manager.runner_bin_path,
                registration_token="",
                instance_type="container",
            )
        )
    assert isinstance(caught.value.__cause__, KeyError)
    assert caught.value.runner_name == "gh-0-cause000"
    assert lxd.instances == {} and github.records == {}


def test_a_failing_cleanup_step_does_not_skip_the_others(lxd, github, settings, tmp_path) -> None:
    storage = DirectoryStorageManager(tmp_path / "stores", tmp_path / "quarantine")
    manager = make_manager(lxd, github, settings, metrics_enabled=True, storage=storage)
    lxd.fail_exec_with = OSError(5, "Input/output error")

    def broken_delete(*args: object, **kwargs: object) -> None:
        raise RuntimeError("GitHub client bug")

    github.delete_runner = broken_delete  # type: ignore[method-assign]
    manager.reconcile(1, RES)
    assert lxd.instances == {}
    assert list((tmp_path / "stores").iterdir()) == []
    assert len(github.records) == 1, "left for the next reconcile (an orphan record)"


# --- wait-repo-check flushes: decided on the manager's side -------------------------------------

SERVICE_TOKEN = "svc-token-0123456789"
APP = "/home/ubuntu/actions-runner"


@pytest.fixture
def policy() -> Iterator[tuple[str, Gate]]:
    """The real policy service on 127.0.0.1; every check waits at a gate."""
    gate = Gate()
    app = PolicyApp(
        lambda: SERVICE_TOKEN, OneTimeTokenStore(), PolicyGithub, PolicyConfig, before_check=gate
    )
    with BackgroundServer(app, threads=3) as server:
        yield server.url, gate
    gate.release.set()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep of the wait loop (still slept): the flush waited iff this is not empty."""
    seen: list[float] = []
    real = time.sleep

    def sleep(seconds: float) -> None:
        seen.append(seconds)
        real(seconds)

    monkeypatch.setattr(removal.time, "sleep", sleep)
    return seen


def policy_manager(lxd, github, settings, url: str, wait: float = 0.5):
    settings = replace(settings, repo_check_wait=wait)
    manager = make_manager(lxd, github, settings, repo_policy_url=url)
    manager._clients.repo = RepoPolicyComplianceClient(url, SERVICE_TOKEN)
    manager.reconcile(1, RES)
    go_online(github)
    (inst,) = lxd.instances.values()
    return manager, inst


def test_a_flag_file_made_by_the_job_no_longer_delays_a_flush(
    lxd, github, settings, policy, sleeps
) -> None:
    manager, inst = policy_manager(lxd, github, settings, policy[0], wait=30)
    inst.pre_job_running = True  # the job ran `touch .pre-job-running` (or faked the process)
    assert manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert sleeps == [], "the flush did not wait"
    assert not any(c[:2] == ["test", "-e"] for c in inst.commands), "nothing inside is asked"


def test_a_check_in_flight_still_delays_a_flush(lxd, github, settings, policy, sleeps) -> None:
    url, gate = policy
    manager, inst = policy_manager(lxd, github, settings, url, wait=30)
    assert inst.config[POLICY_TOKEN_KEY] == token_digest(
        inst.files_pushed[f"{APP}/.repo-policy-token"][0].decode()
    )
    token = inst.files_pushed[f"{APP}/.repo-policy-token"][0].decode()
    out: dict[str, Any] = {}
    requests_thread = threading.Thread(
        target=lambda: out.setdefault(
            "reply",
            requests.post(
                f"{url}/check", json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ),
        ),
        daemon=True,
    )
    requests_thread.start()
    assert gate.entered.wait(10), "the runner's check reached the service"
    flushed: dict[str, int] = {}
    flusher = threading.Thread(
        target=lambda: flushed.setdefault(
            "n", manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK)
        )
    )
    flusher.start()
    deadline = time.monotonic() + 10
    while not sleeps and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sleeps, "the flush waits for the check"
    assert inst.name in lxd.instances and flusher.is_alive()
    gate.release.set()
    flusher.join(30)
    requests_thread.join(30)
    assert flushed == {"n": 1}
    assert lxd.instances == {}


def test_an_endless_check_delays_a_flush_only_its_bound(
    lxd, github, settings, policy, sleeps
) -> None:
    url, gate = policy
    manager, inst = policy_manager(lxd, github, settings, url, wait=0.3)
    token = inst.files_pushed[f"{APP}/.repo-policy-token"][0].decode()
    poster = threading.Thread(
        target=requests.post,
        args=(f"{url}/check",),
        kwargs={"json": BODY, "headers": {"Authorization": f"Bearer {token}"}, "timeout": 30},
        daemon=True,
    )
    poster.start()
    assert gate.entered.wait(10)
    assert manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert sleeps and lxd.instances == {}
    gate.release.set()
    poster.join(30)


def test_an_unreachable_service_is_not_waited_for(
    lxd, github, settings, policy, sleeps, caplog
) -> None:
    manager, inst = policy_manager(lxd, github, settings, policy[0], wait=30)
    manager._clients.repo = RepoPolicyComplianceClient("http://127.0.0.1:9", SERVICE_TOKEN)
    inst.pre_job_running = True
    assert manager.flush(LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK) == 1
    assert sleeps == []
    assert "checks in flight unknown" in caplog.text
