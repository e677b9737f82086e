"""The charm runs the webhook intake in reactive mode with `webhook-secret` set, only then."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ops import testing

from charm import GithubRunnerCharm
from config.state import REVEAL_SECRETS
from juju.intake_host import IntakeFlavor
from tests.unit.app_credentials import (
    KEY_SECRET,
    SECRETS,
    TOKEN_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_VALUE,
    app_config,
)
from tests.unit.charm_events_helpers import ACTIVE, deployed
from tests.unit.fakes_charm import FakeRunnerManager, FakeSystem, base_state

MQ_URI = "mongodb://user:pass@198.18.1.1:27017/github-runner"
URL = "http://192.0.2.0:8580/webhook"  # ops.testing's default ingress address


def mongodb_ready() -> tuple[testing.Relation, testing.Secret]:
    """A mongodb relation whose v1 provider answered with a URI (dpcharmlibs-interfaces)."""
    user = testing.Secret({"uris": MQ_URI})
    request_id = "r1"
    answer = {"resource": "github-runner", "request-id": request_id, "salt": "s"}
    relation = testing.Relation(
        "mongodb",
        remote_app_data={
            "version": "v1",
            "requests": json.dumps([{**answer, "secret-user": user.id}]),
            "data": json.dumps({request_id: answer}),
        },
    )
    return relation, user


def reactive_state(config: dict[str, Any] | None = None, **kwargs: Any) -> testing.State:
    """A valid state in reactive mode, ``webhook-secret`` set unless ``config`` says otherwise."""
    relation, user = mongodb_ready()
    config = {"webhook-secret": WEBHOOK_SECRET.id, **(config or {})}
    secrets = [WEBHOOK_SECRET, user, *kwargs.pop("secrets", [])]
    return base_state(config=config, relations=[relation], secrets=secrets, **kwargs)


def next_state(out: testing.State, **changes: Any) -> testing.State:
    """``out`` with some fields replaced (config, relations, secrets...)."""
    fields = {
        "config": out.config,
        "storages": out.storages,
        "stored_states": out.stored_states,
        "secrets": out.secrets,
        "relations": out.relations,
        "opened_ports": out.opened_ports,
        "leader": out.leader,
        **changes,
    }
    return testing.State(**fields)


def test_reactive_mode_with_a_secret_runs_the_intake(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, reactive_state())
    intake = system.intake
    assert intake is not None
    assert intake.webhook_secret.get_secret_value() == WEBHOOK_VALUE, "stripped, as GitHub signs"
    assert intake.mq_uri.get_secret_value() == MQ_URI
    assert intake.api_url == "https://api.github.com"
    assert str(intake.ledger) == "/var/lib/github-runner/github-runner-0/intake-ledger.sqlite"
    [flavor] = intake.flavors
    assert flavor == IntakeFlavor(
        "github-runner", ("github-runner", "linux", "noble", "self-hosted", "x64")
    )
    assert out.opened_ports == {testing.TCPPort(8580)}
    assert out.unit_status == testing.ActiveStatus(f"1 runners: 1 idle, 0 busy; webhook {URL}")
    assert WEBHOOK_VALUE not in repr(intake) and MQ_URI not in repr(intake)


def test_check_runners_shows_the_webhook_url(ctx: testing.Context[GithubRunnerCharm]) -> None:
    out = deployed(ctx, reactive_state())
    ctx.run(ctx.on.action("check-runners"), out)
    assert ctx.action_results is not None
    assert ctx.action_results["webhook-url"] == URL
    assert ctx.action_results["idle"] == 1


def test_flavor_labels_follow_the_labels_option(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    deployed(ctx, reactive_state({"labels": "GPU,large", "base-image": "jammy"}))
    assert system.intake is not None
    [flavor] = system.intake.flavors
    assert {"gpu", "large", "jammy"} <= set(flavor.labels) and "noble" not in flavor.labels


def test_no_secret_no_intake(ctx: testing.Context[GithubRunnerCharm], system: FakeSystem) -> None:
    out = deployed(ctx, reactive_state({"webhook-secret": ""}))
    assert system.intake is None
    assert "ensure_intake" not in system.names()
    assert ("remove_intake", True) in system.calls
    assert out.opened_ports == frozenset()
    assert out.unit_status == ACTIVE
    ctx.run(ctx.on.action("check-runners"), out)
    assert ctx.action_results is not None and "webhook-url" not in ctx.action_results


def test_a_secret_without_reactive_mode_runs_no_intake(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    state = base_state(config={"webhook-secret": WEBHOOK_SECRET.id}, secrets=[WEBHOOK_SECRET])
    out = deployed(ctx, state)
    assert system.intake is None and "ensure_intake" not in system.names()
    assert out.unit_status == ACTIVE


def test_unsetting_the_secret_removes_the_intake_and_closes_the_port(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, reactive_state())
    assert system.intake is not None
    out = ctx.run(
        ctx.on.config_changed(), next_state(out, config={**out.config, "webhook-secret": ""})
    )
    assert system.names()[-2:] == ["remove_intake", "ensure_timer"]
    assert ("remove_intake", False) not in system.calls, "the port is kept for a comeback"
    assert out.opened_ports == frozenset()
    assert out.unit_status == ACTIVE


def test_leaving_reactive_mode_removes_the_intake(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, reactive_state())
    [relation] = out.relations
    out = ctx.run(ctx.on.relation_broken(relation), out)
    assert system.intake is None
    assert ("remove_intake", True) in system.calls
    assert out.opened_ports == frozenset()
    assert out.unit_status == ACTIVE


def test_stop_removes_the_intake_and_its_port(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, reactive_state())
    system.calls.clear()
    ctx.run(ctx.on.stop(), out)
    assert system.intake is None
    assert ("remove_intake", False) in system.calls


def test_an_unreadable_secret_blocks_naming_the_option(
    ctx: testing.Context[GithubRunnerCharm], manager: FakeRunnerManager, system: FakeSystem
) -> None:
    missing = "secret:" + "c" * 20
    out = ctx.run(ctx.on.config_changed(), reactive_state({"webhook-secret": missing}))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(f"webhook-secret: cannot read the secret {missing}")
    assert "reconcile" not in manager.names() and system.intake is None


def test_a_pasted_secret_blocks_without_being_shown(
    ctx: testing.Context[GithubRunnerCharm],
) -> None:
    pasted = "my-webhook-secret-pasted-here"
    out = ctx.run(ctx.on.config_changed(), reactive_state({"webhook-secret": pasted}))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith("webhook-secret: is not a Juju secret ID")
    assert pasted not in out.unit_status.message
    assert all(pasted not in log.message for log in ctx.juju_log)


def test_a_new_secret_revision_reaches_the_intake(
    ctx: testing.Context[GithubRunnerCharm], system: FakeSystem
) -> None:
    out = deployed(ctx, reactive_state())
    rotated = testing.Secret(
        id=WEBHOOK_SECRET.id,
        tracked_content=WEBHOOK_SECRET.tracked_content,
        latest_content={"webhook-secret": "rotated-0123456789abcdef"},
    )
    secrets = [s for s in out.secrets if s.id != WEBHOOK_SECRET.id] + [rotated]
    system.calls.clear()
    ctx.run(ctx.on.secret_changed(rotated), next_state(out, secrets=secrets))
    assert system.intake is not None
    assert system.intake.webhook_secret.get_secret_value() == "rotated-0123456789abcdef"


def test_the_secret_never_reaches_the_stored_state_or_the_log(
    ctx: testing.Context[GithubRunnerCharm],
) -> None:
    out = deployed(ctx, reactive_state())
    stored = json.dumps([dict(s.content) for s in out.stored_states], default=str)
    assert WEBHOOK_VALUE not in stored and URL in stored
    assert all(WEBHOOK_VALUE not in log.message for log in ctx.juju_log)


@pytest.mark.parametrize(
    ("config", "secret"),
    [
        ({"webhook-secret": WEBHOOK_SECRET.id}, WEBHOOK_SECRET),
        ({"token": "", "token-secret-id": TOKEN_SECRET.id}, TOKEN_SECRET),
        (app_config(), KEY_SECRET),
    ],
)
def test_a_new_revision_of_any_option_secret_converges(
    ctx: testing.Context[GithubRunnerCharm],
    manager: FakeRunnerManager,
    config: dict[str, Any],
    secret: testing.Secret,
) -> None:
    out = deployed(ctx, base_state(config=config, secrets=SECRETS))
    manager.calls.clear()
    ctx.run(ctx.on.secret_changed(secret), out)
    assert "reconcile" in manager.names()


def test_the_secret_never_reaches_the_consumers_config(
    ctx: testing.Context[GithubRunnerCharm],
) -> None:
    with ctx(ctx.on.update_status(), reactive_state()) as mgr:
        state = mgr.charm._state()
    assert state.webhook_secret is not None
    dumped = json.dumps(state.model_dump(mode="json", context={REVEAL_SECRETS: True}))
    assert MQ_URI in dumped, "the reveal context is on: the consumers get their broker URI"
    assert WEBHOOK_VALUE not in dumped and "webhook_secret" not in dumped
