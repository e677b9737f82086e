"""State transitions of the charm for every hook and relation, fakes at the seams."""

from __future__ import annotations

import json

import pytest
from ops import testing

import errors
from charm import PREVIOUS_CREDENTIALS_LABEL, RECONCILE_EVENT, GithubRunnerCharm
from juju.runner_storage import DETACHED_STORAGE_PATH
from runner_manager_type import LXDFlushMode
from runner_type import SSHDebugConnection, VirtualMachineResources
from tests.unit.fakes_charm import (
    TOKEN,
    FakeRunnerManager,
    FakeSystem,
    base_state,
    reconcile_event,
)

NEW_TOKEN = "ghp_" + "b" * 36
ACTIVE = testing.ActiveStatus("1 runners: 1 idle, 0 busy")


def deployed(ctx: testing.Context[GithubRunnerCharm], state: testing.State) -> testing.State:
    """Run install, config-changed and start: a deployed unit."""
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state


def with_config(state: testing.State, **config: str | int | float | bool) -> testing.State:
    """Return ``state`` with options changed."""
    return testing.State(
        config={**state.config, **config},
        storages=state.storages,
        stored_states=state.stored_states,
        secrets=state.secrets,
        relations=state.relations,
    )


def flushes(manager: FakeRunnerManager) -> list[tuple[LXDFlushMode, str, str]]:
    """Return the flushes: mode, token and path of the manager that flushed."""
    return [(c.args[0], c.token, c.path) for c in manager.calls if c.name == "flush"]


def test_deploy_sequence_does_not_flush_fresh_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    assert flushes(manager) == []
    assert manager.names().count("reconcile") == 2  # config-changed and start
    assert system.names().count("setup_lxd") == 1
    assert out.unit_status == ACTIVE


def test_start_after_reboot_replaces_idle_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    out = ctx.run(ctx.on.start(), out)
    assert flushes(manager) == [(LXDFlushMode.FLUSH_IDLE, TOKEN, "canonical/repo")]
    assert manager.names().index("flush") < manager.names().index("reconcile")
    assert out.unit_status == ACTIVE


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


def test_reconcile_event_from_the_timer(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    manager.with_runners(idle=0, busy=2)
    out = ctx.run(reconcile_event(), out)
    assert manager.names() == [
        "check_runner_bin",
        "has_runner_image",
        "reconcile",
        "get_github_info",
    ]
    assert out.unit_status == testing.ActiveStatus("2 runners: 0 idle, 2 busy")


def test_stop_removes_the_timer_and_every_runner(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    system.calls.clear()
    ctx.run(ctx.on.stop(), out)
    assert system.calls[0] == ("disable_timer", RECONCILE_EVENT)
    assert flushes(manager) == [(LXDFlushMode.FLUSH_BUSY, TOKEN, "canonical/repo")]
    # The stopping unit does not (re)start the policy service: it removes it.
    assert "ensure_repo_policy" not in system.names()
    assert system.names()[-3:] == [
        "remove_repo_policy",
        "remove_network_policy",
        "remove_metrics_exporter",
    ]
    assert system.network_policy is None
    assert system.repo_policy is None


def test_stop_with_bad_config_still_removes_the_timer(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    system.fail["disable_timer"] = errors.SubprocessError(["systemctl"], 1)
    out = ctx.run(ctx.on.stop(), base_state(config={"token": ""}))
    assert ("disable_timer", RECONCILE_EVENT) in system.calls
    assert manager.calls == []
    assert out.unit_status == testing.BlockedStatus(
        "Missing required configuration: token (or token-secret-id, or the github-app-* options)"
    )


def test_update_status_makes_no_github_call(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    system.calls.clear()
    out = ctx.run(ctx.on.update_status(), out)
    assert manager.calls == []  # its cost is measured by benchmarks/hook_cost.py
    assert system.names() == ["timer_active"]
    assert out.unit_status == ACTIVE


def test_update_status_recreates_a_dead_timer(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    system.timer = False
    system.calls.clear()
    ctx.run(ctx.on.update_status(), out)
    assert system.calls == [
        ("timer_active", RECONCILE_EVENT),
        ("ensure_timer", RECONCILE_EVENT, 10, 30),
    ]


def test_update_status_converges_once_the_config_becomes_usable(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    # The token secret is granted after deployment: Juju fires no event, update-status notices.
    uri = "secret:cs0h8b1vrs1c73ebsmf0"
    out = ctx.run(ctx.on.install(), base_state(config={"token": uri}))
    assert out.unit_status.name == "blocked"
    assert system.calls == []
    secret = testing.Secret(id=uri, tracked_content={"token": TOKEN})
    state = testing.State(
        config=out.config, storages=out.storages, stored_states=out.stored_states, secrets=[secret]
    )
    out = ctx.run(ctx.on.update_status(), state)
    assert "setup_lxd" in system.names()
    assert "reconcile" in manager.names()
    assert out.unit_status == ACTIVE


def test_update_status_timer_failure_is_a_status(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    system.timer = False
    system.fail["ensure_timer"] = errors.SubprocessError(["systemctl", "enable"], 1)
    out = ctx.run(ctx.on.update_status(), out)
    assert out.unit_status == testing.BlockedStatus("command systemctl failed with exit code 1")


def test_upgrade_charm_redoes_the_setup_and_replaces_idle_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    manager.calls.clear()
    system.calls.clear()
    out = ctx.run(ctx.on.upgrade_charm(), out)
    assert system.names()[:3] == ["disk_space", "setup_lxd", "configure_logrotate"]
    assert "schedule_build_runner_image" in manager.names()
    assert flushes(manager) == [(LXDFlushMode.FLUSH_IDLE, TOKEN, "canonical/repo")]
    assert out.unit_status == ACTIVE


def test_cos_agent_relation_turns_metrics_on_and_off(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    cos = testing.Relation("cos-agent")
    state = testing.State(
        config=out.config,
        storages=out.storages,
        stored_states=out.stored_states,
        secrets=out.secrets,
        relations=[cos],
    )
    manager.calls.clear()
    out = ctx.run(ctx.on.relation_joined(cos), state)
    assert manager.configs[-1][2].are_metrics_enabled is True
    assert flushes(manager) == [(LXDFlushMode.FLUSH_IDLE, TOKEN, "canonical/repo")]
    # The provider publishes its data (dashboards and rules load from the charm's directory,
    # which ops.testing virtualises here: their content is tested in test_cos_agent.py).
    shipped = json.loads(out.get_relation(cos.id).local_unit_data["config"])
    assert set(shipped) == {
        "dashboards",
        "log_alert_rules",
        "log_slots",
        "metrics_alert_rules",
        "metrics_scrape_jobs",
    }
    out = ctx.run(ctx.on.relation_broken(out.get_relation(cos.id)), out)
    assert manager.configs[-1][2].are_metrics_enabled is False


def test_mongodb_relation_waits_for_a_uri_then_goes_reactive(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    mongodb = testing.Relation("mongodb")
    state = testing.State(
        config=out.config,
        storages=out.storages,
        stored_states=out.stored_states,
        secrets=out.secrets,
        relations=[mongodb],
        leader=True,
    )
    out = ctx.run(ctx.on.relation_created(mongodb), state)
    assert out.unit_status == testing.WaitingStatus(
        "Waiting for the mongodb relation to provide a URI"
    )
    [request] = json.loads(out.get_relation(mongodb.id).local_app_data["requests"])
    assert request["resource"] == "github-runner"
    # A v1 provider's answer (dpcharmlibs-interfaces): the URI in the user secret.
    user = testing.Secret({"uris": "mongodb://user:pass@10.1.1.1:27017/github-runner"})
    answer = {"resource": "github-runner", "request-id": request["request-id"], "salt": "s"}
    ready = testing.Relation(
        "mongodb",
        id=mongodb.id,
        remote_app_data={
            "version": "v1",
            "requests": json.dumps([{**answer, "secret-user": user.id}]),
            "data": json.dumps({answer["request-id"]: answer}),
        },
    )
    state = testing.State(
        config=out.config,
        storages=out.storages,
        stored_states=out.stored_states,
        secrets={*out.secrets, user},
        relations=[ready],
    )
    out = ctx.run(ctx.on.relation_changed(ready), state)
    reactive = manager.configs[-1][2].reactive_config
    assert reactive is not None
    assert reactive.mq_uri.get_secret_value() == "mongodb://user:pass@10.1.1.1:27017/github-runner"
    assert reactive.queue_name == "github-runner"
    assert out.unit_status == ACTIVE
    out = ctx.run(ctx.on.relation_broken(out.get_relation(ready.id)), out)
    assert manager.configs[-1][2].reactive_config is None
    assert out.unit_status == ACTIVE


def test_debug_ssh_relation_replaces_idle_runners(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    out = deployed(ctx, base_state())
    ssh = testing.Relation(
        "debug-ssh",
        remote_units_data={
            0: {
                "host": "tmate.example",
                "port": "10022",
                "rsa_fingerprint": "SHA256:rsa",
                "ed25519_fingerprint": "SHA256:ed",
            }
        },
    )
    state = testing.State(
        config=out.config,
        storages=out.storages,
        stored_states=out.stored_states,
        secrets=out.secrets,
        relations=[ssh],
    )
    manager.calls.clear()
    out = ctx.run(ctx.on.relation_changed(ssh, remote_unit=0), state)
    assert manager.configs[-1][2].charm_state.ssh_debug_connections == (
        SSHDebugConnection("tmate.example", 10022, "SHA256:rsa", "SHA256:ed"),
    )
    assert flushes(manager) == [(LXDFlushMode.FLUSH_IDLE, TOKEN, "canonical/repo")]
    manager.calls.clear()
    out = ctx.run(ctx.on.relation_departed(ssh, remote_unit=0, departing_unit=0), out)
    assert "reconcile" in manager.names()


def test_previous_credentials_survive_a_lost_secret(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    # Stored state says runners exist with other credentials, but the secret is gone (e.g.
    # removed by hand): the charm cannot flush with them and carries on with the new ones.
    out = deployed(ctx, base_state())
    state = testing.State(
        config={**out.config, "token": NEW_TOKEN},
        storages=out.storages,
        stored_states=out.stored_states,
    )
    manager.calls.clear()
    out = ctx.run(ctx.on.config_changed(), state)
    assert flushes(manager) == []
    assert manager.calls[manager.names().index("reconcile")].token == NEW_TOKEN
    assert out.unit_status == ACTIVE


def test_stop_flushes_even_when_the_storage_is_already_detached(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    out = deployed(ctx, base_state())
    state = testing.State(
        config=out.config, stored_states=out.stored_states, secrets=out.secrets, storages=[]
    )
    manager.calls.clear()
    ctx.run(ctx.on.stop(), state)
    assert flushes(manager) == [(LXDFlushMode.FLUSH_BUSY, TOKEN, "canonical/repo")]
    assert manager.configs[-1][2].lxd_storage_path == DETACHED_STORAGE_PATH


def test_lxd_is_set_up_on_the_runner_storage(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    storage = testing.Storage("runner")
    ctx.run(ctx.on.install(), base_state(storages=[storage]))
    assert system.calls[:2] == [
        ("disk_space", storage.get_filesystem(ctx)),
        ("setup_lxd", storage.get_filesystem(ctx)),
    ]


def test_tokens_never_reach_the_logs(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    manager.fail["reconcile"] = errors.GithubTokenError()
    out = deployed(ctx, base_state())
    del manager.fail["reconcile"]
    out = ctx.run(ctx.on.config_changed(), with_config(out, token=NEW_TOKEN))
    ctx.run(ctx.on.action("check-runners"), out)
    assert caplog.records
    assert TOKEN not in caplog.text
    assert NEW_TOKEN not in caplog.text


def test_test_mode_uses_the_container_test_image(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager
) -> None:
    ctx.run(ctx.on.config_changed(), base_state(config={"test-mode": "insecure"}))
    config = manager.configs[-1][2]
    assert config.image == "github-runner-test"
    assert config.charm_state.test_mode is True
