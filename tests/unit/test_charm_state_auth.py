"""The GitHub credentials of the state: token, token-secret-id or a GitHub App, and where they go.

One way only (see test_charm_state's BAD table for the refusals); the app's key is read from its
Juju secret, kept secret in dumps, handed whole to consumers (0600 JSON) and to the policy
service (its credentials file), and the previous credentials round-trip through a Juju secret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ops import testing

import errors
from config.settings import RunnerManagerSettings
from config.state import REVEAL_SECRETS, CharmState
from github_api.app_tokens import InstallationTokens, source_from_text
from github_api.credentials import StaticToken
from reactive.manager_section import manager_section, parse_manager_section
from runner_manager_type import LXDRunnerManagerConfig
from tests.unit.app_credentials import (
    CLIENT_ID,
    INSTALLATION_ID,
    KEY_SECRET,
    SECRETS,
    app_config,
    private_pem,
)
from tests.unit.fakes_charm import TOKEN, FakeRunnerManager, FakeSystem, base_state, make_context
from tests.unit.test_charm_state import build


def _app_state() -> CharmState:
    return build(app_config(), secrets=SECRETS)


def test_the_app_key_is_read_from_its_secret_and_kept_secret() -> None:
    state = _app_state()
    assert state.github_app is not None
    assert state.github_app.private_key.get_secret_value().strip() == private_pem().strip()
    assert "PRIVATE KEY" not in repr(state)
    assert "PRIVATE KEY" not in state.model_dump_json()
    revealed = state.model_dump_json(context={REVEAL_SECRETS: True})
    assert CharmState.model_validate_json(revealed) == state


def test_the_app_credentials_give_a_shared_installation_token_source() -> None:
    state = _app_state()
    source = state.github_credentials()
    assert isinstance(source, InstallationTokens)
    assert (source.client_id, source.installation_id) == (CLIENT_ID, INSTALLATION_ID)
    assert source.api_url == state.api_url
    assert state.github_credentials() is source  # one cache per process
    assert isinstance(build().github_credentials(), StaticToken)


def test_the_policy_service_gets_the_app_and_renews_tokens_itself() -> None:
    state = _app_state()
    text = state.service_credentials()
    assert isinstance(source_from_text(text, state.api_url), InstallationTokens)
    assert build().service_credentials() == TOKEN  # the file of a token stays the bare token


def test_consumers_rebuild_the_manager_with_the_app_credentials() -> None:
    state = _app_state()
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="img",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="svc",
        token=state.token.get_secret_value(),
    )
    section = manager_section("github-runner", 0, config, RunnerManagerSettings())
    spec = parse_manager_section(section)
    assert spec.config.charm_state.github_app == state.github_app
    assert isinstance(spec.config.charm_state.github_credentials(), InstallationTokens)


def test_previous_app_credentials_round_trip_and_change_the_fingerprint() -> None:
    app = _app_state()
    token = build()
    content = app.credentials_content()
    assert "token" not in content and all(content.values())
    previous = token.with_credentials(content)
    assert previous.github_app == app.github_app
    assert previous.token.get_secret_value() == ""
    assert previous.credentials_fingerprint() == app.credentials_fingerprint()
    assert app.credentials_fingerprint() != token.credentials_fingerprint()
    assert private_pem().strip() not in app.credentials_fingerprint()
    back = previous.with_credentials(token.credentials_content())
    assert back.github_app is None and back.token.get_secret_value() == TOKEN


def test_a_key_secret_without_the_private_key_says_which_key() -> None:
    secret = testing.Secret(tracked_content={"pem": "x"})
    with pytest.raises(errors.ConfigError) as info:
        build(app_config(**{"github-app-private-key-secret-id": secret.id}), secrets=[secret])
    assert str(info.value).startswith(
        f"github-app-private-key-secret-id: the secret {secret.id} has no 'private-key' key"
    )


def test_a_key_secret_not_granted_says_how_to_grant_it() -> None:
    uri = "secret:cs0h8b1vrs1c73ebsmf0"
    with pytest.raises(errors.ConfigError) as info:
        build(app_config(**{"github-app-private-key-secret-id": uri}))
    assert str(info.value) == (
        f"github-app-private-key-secret-id: cannot read the secret {uri}: check that it exists "
        f"and run `juju grant-secret {uri} github-runner`"
    )


def test_the_unit_goes_active_with_the_app_and_hands_it_to_the_policy_service() -> None:
    manager, system = FakeRunnerManager(), FakeSystem()
    ctx = make_context(manager, system)
    out = ctx.run(ctx.on.config_changed(), base_state(config=app_config(), secrets=[KEY_SECRET]))
    assert isinstance(out.unit_status, testing.ActiveStatus), out.unit_status
    [policy] = [call for call in system.calls if call[0] == "ensure_repo_policy"]
    assert '"github_app"' in policy[1]  # the app's credentials, for the service's own tokens
    assert manager.configs[-1][2].charm_state.github_app is not None
