"""State transitions of the charm for every hook and relation, fakes at the seams."""

from __future__ import annotations

import json

import pytest
from ops import testing

import errors
from charm import RECONCILE_EVENT, GithubRunnerCharm
from juju.runner_storage import DETACHED_STORAGE_PATH
from runner_manager_type import LXDFlushMode
from runner_type import SSHDebugConnection
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
    user = testing.Secret({"uris": "mongodb://user:pass@198.18.1.1:27017/github-runner"})
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
    assert (
        reactive.mq_uri.get_secret_value() == "mongodb://user:pass@198.18.1.1:27017/github-runner"
    )
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
