"""RunnerManager hardening against fakes: expiring idle runners, create cleanup, check waits.

Idle runners are replaced before their credentials expire, a creation is cleaned up whatever
fails, and a flush waits for policy checks on what the job cannot forge.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import errors
from config.settings import RunnerManagerSettings
from manager.idle_limit import max_idle_age
from metrics.storage import DirectoryStorageManager
from repo_policy.config import DEFAULT_TOKEN_TTL
from runner import CreateRunnerConfig, Runner
from runner_type import RunnerStatus
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
