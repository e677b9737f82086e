"""The charm's hooks and status, with fakes at the manager and host seams."""

from __future__ import annotations

from datetime import datetime, timezone

import ops
import pytest
from ops import testing

import errors
from charm import RECONCILE_EVENT, GithubRunnerCharm, status_for_error
from juju.runner_storage import RAM_DISK_PATH
from runner_manager_type import LXDFlushMode
from runner_type import VirtualMachineResources
from tests.unit.fakes_charm import (
    GIB,
    TOKEN,
    FakePolicyService,
    FakeRunnerManager,
    FakeSystem,
    base_state,
    reconcile_event,
)


def test_charmcraft_yaml_is_autoloaded() -> None:
    # One charmcraft.yaml (metadata, config, actions): ops.testing reads it from the charm root.
    ctx = testing.Context(GithubRunnerCharm)
    state = testing.State.from_context(ctx)
    assert state.config["github-url"] == "https://github.com"
    assert {relation.endpoint for relation in state.relations} == {
        "cos-agent",
        "mongodb",
        "debug-ssh",
    }
    assert [storage.name for storage in state.storages] == ["runner"]
    assert ctx.app_name == "github-runner"


def test_install_sets_up_the_host(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    manager.bin_version = None
    manager.image = False
    out = ctx.run(ctx.on.install(), base_state())
    assert system.names() == [
        "disk_space",  # the runner storage holds vm-disk x virtual-machines
        "setup_lxd",
        "configure_logrotate",
        "ensure_metrics_exporter",
        "ensure_runner_network",  # the unit's own bridge: the option is empty
        "ensure_repo_policy",  # after the network: it listens on the host's address there
        "apply_network_policy",  # the denylist, on the host, once the network exists
        "remove_intake",  # no reactive mode: no webhook intake
        "ensure_timer",
    ]
    assert ("ensure_runner_network", "") in system.calls
    assert system.calls[-1] == ("ensure_timer", RECONCILE_EVENT, 10, 30)
    assert system.repo_policy == FakePolicyService(
        TOKEN,
        "https://api.github.com",
        {
            "allow_pull_request_target": False,
            "allow_unprotected_branches": False,
            "default": "deny",
        },
        "10.20.30.1",
    )
    assert manager.configs[-1][2].repo_policy_url == "http://10.20.30.1:8567"
    assert manager.names() == [
        "check_runner_bin",
        "get_latest_runner_bin_url",
        "update_runner_bin",
        "has_runner_image",
        "build_runner_image",
        "schedule_build_runner_image",
    ]
    assert [s for s in ctx.unit_status_history if s.name == "maintenance"] == [
        testing.MaintenanceStatus("Setting up LXD"),
        testing.MaintenanceStatus("Downloading the runner binary"),
        testing.MaintenanceStatus("Building the runner image"),
    ]
    assert out.unit_status == testing.WaitingStatus("Waiting for the first reconciliation")


def test_install_config_passed_to_the_manager(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    storage = testing.Storage("runner")
    ctx.run(
        ctx.on.install(),
        base_state(storages=[storage], config={"dockerhub-mirror": "https://m.example"}),
    )
    app_name, unit, config = manager.configs[0]
    assert (app_name, unit) == ("github-runner", 0)
    assert config.token == TOKEN
    assert config.path.path() == "canonical/repo"
    assert config.image == "github-runner-noble"
    assert config.lxd_storage_path == storage.get_filesystem(ctx)
    assert config.dockerhub_mirror == "https://m.example"
    assert config.charm_state.vm_resources == VirtualMachineResources(2, "7GiB", "10GiB")
    assert TOKEN not in repr(config)


def test_config_changed_reconciles(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    manager.with_runners(idle=2, busy=1, offline=1)
    out = ctx.run(ctx.on.config_changed(), base_state(config={"virtual-machines": 3}))
    assert manager.calls[-2].name == "reconcile"
    assert manager.calls[-2].args == (3, VirtualMachineResources(2, "7GiB", "10GiB"))
    assert out.unit_status == testing.ActiveStatus("4 runners: 2 idle, 1 busy")


def test_missing_token_blocks_without_touching_anything(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = ctx.run(ctx.on.install(), base_state(config={"token": ""}))
    assert out.unit_status == testing.BlockedStatus(
        "Missing required configuration: token (or token-secret-id, or the github-app-* options)"
    )
    assert manager.calls == []
    assert system.calls == []


def test_missing_path_blocks(ctx: testing.Context[GithubRunnerCharm]) -> None:
    out = ctx.run(ctx.on.config_changed(), base_state(config={"path": ""}))
    assert out.unit_status == testing.BlockedStatus("Missing required configuration: path")


def test_secret_token_is_read_from_the_juju_secret(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    secret = testing.Secret(tracked_content={"token": "ghp_fromsecret"})
    out = ctx.run(
        ctx.on.config_changed(), base_state(config={"token": secret.id}, secrets=[secret])
    )
    assert manager.configs[-1][2].token == "ghp_fromsecret"
    assert out.unit_status == testing.ActiveStatus("1 runners: 1 idle, 0 busy")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.GithubTokenError(), testing.BlockedStatus("the token is invalid")),
        (
            errors.GithubPermissionError("canonical/repo"),
            testing.BlockedStatus("the token cannot manage runners on canonical/repo"),
        ),
        (
            errors.GithubRateLimitError(datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)),
            testing.BlockedStatus(
                "GitHub rate limit reached, resets at 2026-11-23T09:00:00+00:00"
            ),
        ),
        (
            errors.GithubApiError("GitHub answered 502", status=502),
            testing.WaitingStatus(
                "GitHub API error: GitHub answered 502; retrying at the next reconcile"
            ),
        ),
        (
            errors.LXDUnavailableError("LXD socket not found"),
            testing.BlockedStatus("LXD socket not found"),
        ),
        (
            errors.LXDTimeoutError("launch timed out"),
            testing.WaitingStatus("LXD error: launch timed out; retrying at the next reconcile"),
        ),
        (
            errors.RunnerBinaryError("download failed"),
            testing.WaitingStatus("download failed; retrying at the next reconcile"),
        ),
    ],
)
def test_manager_errors_become_status(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    error: errors.GithubRunnerError,
    status: ops.StatusBase,
) -> None:
    manager.fail["reconcile"] = error
    out = ctx.run(ctx.on.config_changed(), base_state())
    assert out.unit_status == status
    # The error stays until a reconcile succeeds: update-status does not hide it.
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == status
    del manager.fail["reconcile"]
    out = ctx.run(reconcile_event(), out)
    assert out.unit_status == testing.ActiveStatus("1 runners: 1 idle, 0 busy")


def test_unknown_project_error_is_blocked() -> None:
    status = status_for_error(errors.SubprocessError(["setup-lxd.sh"], 2))
    assert status == testing.BlockedStatus("command setup-lxd.sh failed with exit code 2")


def test_setup_failure_is_retried_by_the_next_event(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    system.fail["setup_lxd"] = errors.SubprocessError(["setup-lxd.sh"], 1)
    out = ctx.run(ctx.on.install(), base_state())
    assert out.unit_status == testing.BlockedStatus("command setup-lxd.sh failed with exit code 1")
    del system.fail["setup_lxd"]
    out = ctx.run(reconcile_event(), out)
    assert system.names().count("setup_lxd") == 2
    assert out.unit_status == testing.ActiveStatus("1 runners: 1 idle, 0 busy")


def test_memory_storage_uses_a_ram_disk(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    config = {"runner-storage": "memory", "virtual-machines": 2, "vm-disk": "4GiB"}
    ctx.run(ctx.on.config_changed(), base_state(config=config, storages=[]))
    # The unit's pool gets 90 % of the RAM disk: 8 GiB of runner disks need 10/9 of it.
    assert ("ensure_ram_disk", RAM_DISK_PATH, -(-8 * GIB * 10 // 9)) in system.calls
    assert manager.configs[-1][2].lxd_storage_path == RAM_DISK_PATH


def test_memory_storage_too_small_is_blocked(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    system.memory = 6 * GIB
    config = {"runner-storage": "memory", "virtual-machines": 2, "vm-disk": "4GiB"}
    out = ctx.run(ctx.on.config_changed(), base_state(config=config, storages=[]))
    assert out.unit_status == testing.BlockedStatus(
        "runner-storage: memory needs vm-disk x virtual-machines = 8192MiB (a RAM disk of "
        "9102MiB) but only 6144MiB of memory is available: lower vm-disk or virtual-machines"
    )
    assert "reconcile" not in manager.names()
    assert not any(call[0] == "ensure_ram_disk" for call in system.calls)


def test_juju_storage_missing_is_blocked(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = ctx.run(ctx.on.config_changed(), base_state(storages=[]))
    assert out.unit_status == testing.BlockedStatus(
        "runner-storage: juju-storage needs the runner storage, which is not attached: run "
        "`juju add-storage github-runner/0 runner=<size>`"
    )
    assert manager.calls == []


def test_juju_storage_too_small_is_blocked(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    system.disk = 10 * GIB  # 9 GiB for runner disks
    config = {"virtual-machines": 3, "vm-disk": "4GiB"}
    out = ctx.run(ctx.on.config_changed(), base_state(config=config))
    assert out.unit_status == testing.BlockedStatus(
        "runner-storage: juju-storage needs vm-disk x virtual-machines = 12288MiB but the "
        "runner storage holds 9216MiB for runner disks (90 % of it): add a larger one "
        "(`juju add-storage github-runner/0 runner=<size>`) or lower vm-disk or virtual-machines"
    )
    assert "setup_lxd" not in system.names() and "reconcile" not in manager.names()
    system.disk = 20 * GIB
    out = ctx.run(ctx.on.config_changed(), base_state(config=config))
    assert out.unit_status.name == "active" and "setup_lxd" in system.names()


def test_network_option_uses_that_network_and_a_missing_one_is_blocked(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = ctx.run(ctx.on.config_changed(), base_state(config={"network": "lxdbr1"}))
    assert ("ensure_runner_network", "lxdbr1") in system.calls
    assert manager.configs[-1][2].charm_state.runner_network == "lxdbr1"
    assert out.unit_status.name == "active"
    system.fail["ensure_runner_network"] = errors.ConfigError(
        "network", "LXD network 'nope' does not exist"
    )
    out = ctx.run(ctx.on.config_changed(), base_state(config={"network": "nope"}))
    assert out.unit_status == testing.BlockedStatus("network: LXD network 'nope' does not exist")
    out = ctx.run(ctx.on.config_changed(), base_state(config={"network": "bad name"}))
    assert out.unit_status.name == "blocked"
    assert out.unit_status.message.startswith("network: 'bad name' is not an LXD network name")


def test_storage_attached_converges(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    storage = testing.Storage("runner")
    out = ctx.run(ctx.on.storage_attached(storage), base_state(storages=[storage]))
    assert "reconcile" in manager.names()
    assert out.unit_status == testing.ActiveStatus("1 runners: 1 idle, 0 busy")


def test_runner_storage_cannot_change_after_deploy(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = ctx.run(ctx.on.install(), base_state())
    changed = base_state(config={"runner-storage": "memory"}, stored_states=out.stored_states)
    manager.calls.clear()
    out = ctx.run(ctx.on.config_changed(), changed)
    assert out.unit_status == testing.BlockedStatus(
        "runner-storage: cannot change after deployment (deployed with 'juju-storage', now "
        "'memory'); set it back with `juju config github-runner runner-storage=juju-storage` "
        "or deploy a new application"
    )
    assert manager.calls == []


def test_flush_mode_enum_matches_the_charm_s_actions() -> None:
    from runner_manager_type import FLUSH_MODE_BY_ACTION_PARAM
    from tests.unit.fakes_charm import charm_actions

    mode = charm_actions()["flush-runners"]["params"]["mode"]
    assert set(mode["enum"]) == set(FLUSH_MODE_BY_ACTION_PARAM)
    assert FLUSH_MODE_BY_ACTION_PARAM[mode["default"]] == LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK


def test_every_option_has_type_default_and_description() -> None:
    from tests.unit.fakes_charm import charm_actions, charm_config

    for name, option in charm_config()["options"].items():
        assert {"type", "default", "description"} <= set(option), name
        assert len(option["description"]) > 40, name
    for name, action in charm_actions().items():
        assert action["description"], name
