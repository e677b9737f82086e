"""The charm's actions: structured results, progress logs and actionable failures."""

from __future__ import annotations

import pytest
from ops import testing

import errors
from charm import GithubRunnerCharm
from runner_manager_type import FLUSH_MODE_BY_ACTION_PARAM, LXDFlushMode
from tests.unit.fakes_charm import (
    FakeRunnerManager,
    FakeSystem,
    application,
    base_state,
)


@pytest.fixture
def manager() -> FakeRunnerManager:
    fake = FakeRunnerManager()
    fake.with_runners(idle=2, busy=1, offline=1)
    return fake


@pytest.fixture
def installed(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> testing.State:
    out = ctx.run(ctx.on.config_changed(), base_state())
    manager.calls.clear()
    return out


def test_check_runners(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    system: FakeSystem,
    installed: testing.State,
) -> None:
    system.calls.clear()
    out = ctx.run(ctx.on.action("check-runners"), installed)
    assert ctx.action_results == {
        "online": 3,
        "offline": 1,
        "unknown": 0,
        "busy": 1,
        "idle": 2,
        "runners": "busy-0,idle-0,idle-1,off-0",
    }
    assert manager.names() == ["get_github_info"]
    assert system.calls == [], "a read-only action touches nothing on the host"
    assert out.unit_status == testing.ActiveStatus("4 runners: 2 idle, 1 busy")


def test_reconcile_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    manager.reconcile_delta = 2
    ctx.run(ctx.on.action("reconcile-runners"), installed)
    assert ctx.action_results == {
        "delta": 2,
        "online": 3,
        "offline": 1,
        "unknown": 0,
        "busy": 1,
        "idle": 2,
        "runners": "busy-0,idle-0,idle-1,off-0",
    }
    assert ctx.action_logs == ["Reconciling runners"]
    assert "reconcile" in manager.names()


def test_flush_runners_default_mode(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    manager.flushed = 3
    manager.reconcile_delta = 3
    ctx.run(ctx.on.action("flush-runners"), installed)
    assert ctx.action_results is not None
    assert ctx.action_results["flushed"] == 3
    assert ctx.action_results["delta"] == 3
    flush = next(c for c in manager.calls if c.name == "flush")
    assert flush.args == (LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,)
    assert manager.names().index("flush") < manager.names().index("reconcile")
    assert ctx.action_logs == [
        "Flushing runners (FLUSH_BUSY_WAIT_REPO_CHECK)",
        "Flushed 3 runners; reconciling",
    ]


@pytest.mark.parametrize(("param", "mode"), sorted(FLUSH_MODE_BY_ACTION_PARAM.items()))
def test_flush_runners_modes(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    installed: testing.State,
    param: str,
    mode: LXDFlushMode,
) -> None:
    ctx.run(ctx.on.action("flush-runners", params={"mode": param}), installed)
    assert [c.args for c in manager.calls if c.name == "flush"] == [(mode,)]


def test_update_runner_bin_when_newer(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    manager.latest = application("2.301.0")
    ctx.run(ctx.on.action("update-runner-bin"), installed)
    assert ctx.action_results == {
        "previous-version": "2.300.0",
        "version": "2.301.0",
        "changed": True,
    }
    update = next(c for c in manager.calls if c.name == "update_runner_bin")
    assert update.args == (manager.latest,)
    assert [c.args for c in manager.calls if c.name == "flush"] == [(LXDFlushMode.FLUSH_IDLE,)]
    assert "reconcile" in manager.names()
    assert ctx.action_logs == [
        "Updating the runner binary from 2.300.0 to 2.301.0",
        "Replacing idle runners",
    ]


def test_update_runner_bin_when_current(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    ctx.run(ctx.on.action("update-runner-bin"), installed)
    assert ctx.action_results == {
        "previous-version": "2.300.0",
        "version": "2.300.0",
        "changed": False,
    }
    assert "update_runner_bin" not in manager.names()
    assert "flush" not in manager.names()


def test_update_dependencies_with_a_new_binary_rebuilds_and_flushes(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    manager.latest = application("2.301.0")
    ctx.run(ctx.on.action("update-dependencies"), installed)
    assert ctx.action_results == {"flush": True}
    names = manager.names()
    assert names.index("update_runner_bin") < names.index("build_runner_image")
    assert names.index("build_runner_image") < names.index("flush") < names.index("reconcile")
    assert ctx.action_logs == [
        "Updating the runner binary from 2.300.0 to 2.301.0",
        "Rebuilding the runner image",
        "Replacing idle runners",
    ]


def test_update_dependencies_up_to_date(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    ctx.run(ctx.on.action("update-dependencies"), installed)
    assert ctx.action_results == {"flush": False}
    assert "build_runner_image" not in manager.names()
    assert "flush" not in manager.names()


@pytest.mark.parametrize(
    ("action", "method"),
    [
        ("check-runners", "get_github_info"),
        ("reconcile-runners", "reconcile"),
        ("flush-runners", "flush"),
        ("update-runner-bin", "get_latest_runner_bin_url"),
        ("update-dependencies", "get_latest_runner_bin_url"),
    ],
)
def test_actions_fail_with_the_status_message(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    installed: testing.State,
    action: str,
    method: str,
) -> None:
    manager.fail[method] = errors.GithubTokenError()
    with pytest.raises(testing.ActionFailed) as info:
        ctx.run(ctx.on.action(action), installed)
    assert info.value.message == "the token is invalid"
    assert info.value.state is not None
    assert info.value.state.unit_status == testing.BlockedStatus("the token is invalid")


def test_action_fails_on_bad_config(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    with pytest.raises(testing.ActionFailed) as info:
        ctx.run(ctx.on.action("reconcile-runners"), base_state(config={"vm-memory": "7GB"}))
    assert info.value.message == "vm-memory: '7GB' is not a size like 7GiB"
    assert manager.calls == []


def test_action_rate_limited(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, installed: testing.State
) -> None:
    manager.fail["get_github_info"] = errors.GithubRateLimitError(None, status=429)
    with pytest.raises(testing.ActionFailed) as info:
        ctx.run(ctx.on.action("check-runners"), installed)
    assert info.value.message == "GitHub rate limit reached, resets at unknown"
