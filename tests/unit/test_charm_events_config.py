"""Charm state transitions on config and secret changes (credentials, labels, images, timer).

Fakes at the seams, as in test_charm_events.py; shared helpers in charm_events_helpers.py.
"""

from __future__ import annotations

import pytest
from ops import testing

import errors
from charm import PREVIOUS_CREDENTIALS_LABEL, RECONCILE_EVENT, GithubRunnerCharm
from runner_manager_type import LXDFlushMode
from runner_type import VirtualMachineResources
from tests.unit.charm_events_helpers import (
    ACTIVE,
    NEW_TOKEN,
    deployed,
    flushes,
    with_config,
)
from tests.unit.fakes_charm import (
    TOKEN,
    FakeRunnerManager,
    FakeSystem,
    base_state,
    reconcile_event,
)


def test_token_change_flushes_with_the_previous_credentials_then_reconciles(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    out = ctx.run(ctx.on.config_changed(), with_config(out, token=NEW_TOKEN))
    assert flushes(manager) == [
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, TOKEN, "canonical/repo")
    ]
    flush_at = manager.names().index("flush")
    reconcile = manager.calls[manager.names().index("reconcile")]
    assert flush_at < manager.names().index("reconcile")
    assert (reconcile.token, reconcile.path) == (NEW_TOKEN, "canonical/repo")
    assert out.unit_status == ACTIVE
    # The previous credentials now are the new ones, kept in a unit-owned secret.
    saved = [s for s in out.secrets if s.label == PREVIOUS_CREDENTIALS_LABEL]
    assert len(saved) == 1
    assert saved[0].owner == "unit"
    assert (saved[0].latest_content or {}).get("token") == NEW_TOKEN
    # and never in plain charm state.
    assert all(NEW_TOKEN not in str(s.content) for s in out.stored_states)
    # Nothing changed: no flush.
    manager.calls.clear()
    ctx.run(ctx.on.config_changed(), out)
    assert flushes(manager) == []


def test_credentials_change_leaves_the_new_token_and_url_in_the_policy_service(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    assert system.repo_policy is not None
    assert (system.repo_policy.github_token, system.repo_policy.github_api_url) == (
        TOKEN,
        "https://api.github.com",
    )
    change = {"token": NEW_TOKEN, "github-url": "https://ghes.example.com"}
    out = ctx.run(ctx.on.config_changed(), with_config(out, **change))
    # The runners of the previous token went, with the previous credentials ...
    assert [(c.name, c.token) for c in manager.calls if c.name == "flush"][-1] == (
        "flush",
        TOKEN,
    )
    # ... and the policy service reads GitHub with the new ones.
    assert system.repo_policy is not None
    assert (system.repo_policy.github_token, system.repo_policy.github_api_url) == (
        NEW_TOKEN,
        "https://ghes.example.com/api/v3",
    )
    assert out.unit_status == ACTIVE


@pytest.mark.parametrize(
    ("change", "new_path"),
    [({"path": "other-org"}, "other-org"), ({"labels": "gpu"}, "canonical/repo")],
)
def test_path_or_labels_change_replaces_every_runner(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    change: dict[str, str],
    new_path: str,
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    ctx.run(ctx.on.config_changed(), with_config(out, **change))
    assert flushes(manager) == [
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, TOKEN, "canonical/repo")
    ]
    reconcile = manager.calls[manager.names().index("reconcile")]
    assert reconcile.path == new_path


def test_failed_credential_flush_is_retried_before_new_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    manager.fail["flush"] = errors.LXDUnavailableError("LXD is not running")
    out = ctx.run(ctx.on.config_changed(), with_config(out, token=NEW_TOKEN))
    assert "reconcile" not in manager.names()
    assert out.unit_status == testing.BlockedStatus("LXD is not running")
    del manager.fail["flush"]
    manager.calls.clear()
    out = ctx.run(reconcile_event(), out)
    assert flushes(manager) == [
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, TOKEN, "canonical/repo")
    ]
    assert manager.calls[manager.names().index("reconcile")].token == NEW_TOKEN
    assert out.unit_status == ACTIVE


def test_token_secret_rotation_replaces_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    secret = testing.Secret(tracked_content={"token": TOKEN})
    out = deployed(ctx, base_state(config={"token": secret.id}, secrets=[secret]))
    manager.calls.clear()
    rotated = testing.Secret(
        id=secret.id,
        tracked_content={"token": TOKEN},
        latest_content={"token": NEW_TOKEN},
    )
    secrets = [s for s in out.secrets if s.id != secret.id] + [rotated]
    state = testing.State(
        config=out.config, storages=out.storages, stored_states=out.stored_states, secrets=secrets
    )
    out = ctx.run(ctx.on.secret_changed(rotated), state)
    assert flushes(manager) == [
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, TOKEN, "canonical/repo")
    ]
    assert manager.calls[manager.names().index("reconcile")].token == NEW_TOKEN


def test_other_secret_changes_are_ignored(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    other = testing.Secret(tracked_content={"x": "y"})
    ctx.run(ctx.on.secret_changed(other), base_state(secrets=[other]))
    assert manager.calls == []


@pytest.mark.parametrize(
    "change",
    [
        {"vm-cpu": 4},
        {"vm-memory": "16GiB"},
        {"vm-disk": "20GiB"},
        {"base-image": "jammy"},
        {"dockerhub-mirror": "https://mirror.example"},
        {"denylist": "10.0.0.0/8"},
        {"test-mode": "insecure"},
    ],
)
def test_runner_settings_change_replaces_idle_runners(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    change: dict[str, str | int],
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    out = ctx.run(ctx.on.config_changed(), with_config(out, **change))
    assert flushes(manager) == [(LXDFlushMode.FLUSH_IDLE, TOKEN, "canonical/repo")]
    assert manager.names().index("flush") < manager.names().index("reconcile")
    assert out.unit_status == ACTIVE


def test_base_image_change_builds_the_new_image(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.image = False  # the real manager has no image under the new alias yet
    out = ctx.run(ctx.on.config_changed(), with_config(out, **{"base-image": "jammy"}))
    assert manager.configs[-1][2].image == "github-runner-jammy"
    assert "build_runner_image" in manager.names()


def test_virtual_machines_change_only_reconciles(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    ctx.run(ctx.on.config_changed(), with_config(out, **{"virtual-machines": 5}))
    assert flushes(manager) == []
    reconcile = manager.calls[manager.names().index("reconcile")]
    assert reconcile.args == (5, VirtualMachineResources(2, "7GiB", "10GiB"))


def test_reconcile_interval_change_updates_the_timer(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    ctx.run(ctx.on.config_changed(), with_config(out, **{"reconcile-interval": 30}))
    assert system.calls[-1] == ("ensure_timer", RECONCILE_EVENT, 30, 90)
    ctx.run(ctx.on.config_changed(), with_config(out, **{"reconcile-interval": 2}))
    assert system.calls[-1] == ("ensure_timer", RECONCILE_EVENT, 2, 15)
