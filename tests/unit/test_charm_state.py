"""CharmState: every config option, good and bad; relations; proxy; JSON round trip."""

from __future__ import annotations

from typing import Any

import pytest
from ops import testing
from pydantic import SecretStr

import errors
from charm_state import from_charm, max_app_name_length, validate_app_name
from config.state import REVEAL_SECRETS, BaseImage, CharmState, RepoPolicyOptions, RunnerStorage
from github_api.types import GitHubOrg, GitHubRepo
from runner_type import Arch, ProxySetting, SSHDebugConnection, VirtualMachineResources
from tests.unit.app_credentials import (
    CLIENT_ID,
    INSTALLATION_ID,
    NOT_A_KEY_SECRET,
    SECRET_TOKEN,
    SECRETS,
    SHORT_WEBHOOK_SECRET,
    TOKEN_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_VALUE,
    app_config,
    openstack_config,
)
from tests.unit.fakes_charm import (
    TOKEN,
    FakeRunnerManager,
    FakeSystem,
    base_state,
    charm_config,
    make_context,
)

ENV: dict[str, str] = {}


def build(
    config: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    machine: str = "x86_64",
    deployed: str | None = None,
    database_uri: str | None = None,
    **state_kwargs: Any,
) -> CharmState:
    """Build the CharmState of a charm run on ``config``."""
    ctx = make_context(FakeRunnerManager(), FakeSystem())
    state = base_state(config=config or {}, **state_kwargs)
    with ctx(ctx.on.update_status(), state) as mgr:
        return from_charm(
            mgr.charm,
            database_uri,
            deployed_runner_storage=deployed,
            environ=ENV if environ is None else environ,
            machine=machine,
        )


def test_defaults() -> None:
    state = build()
    assert state.token.get_secret_value() == TOKEN
    assert state.path == GitHubRepo(owner="canonical", repo="repo")
    assert state.github_url == "https://github.com"
    assert state.api_url == "https://api.github.com"
    assert state.runner_group == "default"
    assert state.labels == ()
    assert state.virtual_machines == 1
    assert state.vm_resources == VirtualMachineResources(cpu=2, memory="7GiB", disk="10GiB")
    assert state.reconcile_interval == 10
    assert state.runner_storage == RunnerStorage.JUJU_STORAGE
    assert state.base_image == BaseImage.NOBLE
    assert state.dockerhub_mirror is None
    assert state.denylist == ()
    assert state.aproxy is False
    assert state.test_mode is False
    assert state.proxy == ProxySetting()
    assert state.is_metrics_enabled is False
    assert state.reactive_config is None
    assert state.ssh_debug_connections == ()
    assert state.arch == Arch.X64
    assert state.app_name == "github-runner"
    assert state.unit_number == 0


GOOD: list[tuple[dict[str, Any], str, Any]] = [
    ({"token": f"  {TOKEN}  "}, "token", TOKEN),
    ({"path": "my-org"}, "path", GitHubOrg(org="my-org", group="default")),
    ({"path": "my-org", "group": "large"}, "path", GitHubOrg(org="my-org", group="large")),
    ({"path": "owner/repo.name"}, "path", GitHubRepo(owner="owner", repo="repo.name")),
    ({"github-url": "https://ghes.example.com/"}, "github_url", "https://ghes.example.com"),
    ({"github-url": "https://ghes.example.com"}, "api_url", "https://ghes.example.com/api/v3"),
    ({"github-url": "http://127.0.0.1:8080"}, "github_url", "http://127.0.0.1:8080"),
    ({"github-url": "http://198.18.4.10:8080"}, "github_url", "http://198.18.4.10:8080"),
    ({"group": "gpu-runners"}, "runner_group", "gpu-runners"),
    ({"labels": "large, gpu,,large"}, "labels", ("large", "gpu")),
    ({"labels": "a.b_c-d"}, "labels", ("a.b_c-d",)),
    ({"virtual-machines": 0}, "virtual_machines", 0),
    ({"virtual-machines": 25}, "virtual_machines", 25),
    ({"base-virtual-machines": 1}, "base_virtual_machines", 1),
    ({"base-virtual-machines": 0}, "base_virtual_machines", 0),
    ({"max-total-virtual-machines": 0}, "max_total_virtual_machines", 0),
    ({"max-total-virtual-machines": 30}, "max_total_virtual_machines", 30),
    ({"vm-cpu": 8}, "vm_resources", VirtualMachineResources(8, "7GiB", "10GiB")),
    ({"vm-memory": "512MiB"}, "vm_resources", VirtualMachineResources(2, "512MiB", "10GiB")),
    ({"vm-disk": "1TiB"}, "vm_resources", VirtualMachineResources(2, "7GiB", "1TiB")),
    ({"reconcile-interval": 2}, "reconcile_interval", 2),
    ({"runner-storage": "memory"}, "runner_storage", RunnerStorage.MEMORY),
    ({"network": " lxdbr0 "}, "runner_network", "lxdbr0"),
    ({"network": ""}, "runner_network", ""),
    ({"base-image": "jammy"}, "base_image", BaseImage.JAMMY),
    ({"dockerhub-mirror": "https://mirror.example.com:5000/"}, "dockerhub_mirror",
     "https://mirror.example.com:5000"),
    ({"denylist": "10.0.0.0/8, 192.168.1.7/24,10.0.0.0/8"}, "denylist",
     ("10.0.0.0/8", "192.168.1.0/24")),
    ({"denylist": "1.2.3.4"}, "denylist", ("1.2.3.4/32",)),
    ({"test-mode": "insecure"}, "test_mode", True),
    ({"experimental-use-aproxy": False}, "aproxy", False),
    ({"repo-policy-allow-pull-request-target": True}, "repo_policy",
     RepoPolicyOptions(allow_pull_request_target=True)),
    ({"repo-policy-allow-unprotected-branches": True}, "repo_policy",
     RepoPolicyOptions(allow_unprotected_branches=True)),
    ({"repo-policy-default": " Allow "}, "repo_policy", RepoPolicyOptions(default="allow")),
    ({"repo-policy-default": ""}, "repo_policy", RepoPolicyOptions(default="deny")),
    ({"token": "", "token-secret-id": TOKEN_SECRET.id}, "token", SECRET_TOKEN),
    (app_config(), "token", ""),
    (app_config(), "github_app.client_id", CLIENT_ID),
    (app_config(), "github_app.installation_id", INSTALLATION_ID),
    ({"webhook-secret": WEBHOOK_SECRET.id}, "webhook_secret", WEBHOOK_VALUE),
    ({"webhook-secret": " "}, "webhook_secret", None),
    ({"backend": "lxd"}, "openstack", None),
    (openstack_config(), "openstack.auth_url", "http://127.0.0.1:5000/v3"),
    (openstack_config(**{"openstack-cloud": "testcloud"}), "openstack.cloud", "testcloud"),
    (openstack_config(**{"openstack-network": "n"}), "openstack.network", "n"),
]  # fmt: skip
# experimental-use-aproxy=true needs the model proxy: test_proxy_from_the_juju_environment.


@pytest.mark.parametrize(("config", "attribute", "expected"), GOOD)
def test_good_values(config: dict[str, Any], attribute: str, expected: Any) -> None:
    value: Any = build(config, secrets=SECRETS)
    for part in attribute.split("."):
        value = getattr(value, part)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    assert value == expected


BAD: list[tuple[dict[str, Any], str]] = [
    (
        {"token": ""},
        "Missing required configuration: token (or token-secret-id, or the github-app-* options)",
    ),
    (
        {"token": "   "},
        "Missing required configuration: token (or token-secret-id, or the github-app-* options)",
    ),
    ({"token": "ghp_a b"}, "token: contains whitespace"),
    ({"path": ""}, "Missing required configuration: path"),
    ({"path": "a/b/c"}, "path: 'a/b/c' is neither an organisation name"),
    ({"path": "-org"}, "path: '-org' is neither"),
    ({"github-url": ""}, "Missing required configuration: github-url"),
    ({"github-url": "github.com"}, "github-url: 'github.com' is not an https URL"),
    ({"github-url": "http://ghes.example.com"}, "github-url: 'http://ghes.example.com' is not"),
    ({"github-url": "http://198.20.0.1"}, "github-url: 'http://198.20.0.1' is not"),
    ({"github-url": "https://ghes.example.com/?x=1"}, "github-url: "),
    ({"github-url": "https://ghes.example.com:99999"}, "github-url: "),
    ({"github-url": "https://u:pw@ghes.example.com"}, "github-url: the value is not an https"),
    ({"group": " "}, "group: must not be empty"),
    ({"labels": "good,b@d"}, "labels: 'b@d' is not a label"),
    ({"labels": "x" * 101}, "labels: "),
    ({"virtual-machines": -1}, "virtual-machines: -1 is less than the minimum of 0"),
    ({"base-virtual-machines": -1}, "base-virtual-machines: -1 is less than the minimum of 0"),
    (
        {"base-virtual-machines": 2},
        "base-virtual-machines: 2 is more than the ceiling of 1 set by virtual-machines "
        "(max-total-virtual-machines unset)",
    ),
    (
        {"base-virtual-machines": 4, "max-total-virtual-machines": 3},
        "base-virtual-machines: 4 is more than the ceiling of 3 set by max-total-virtual-machines",
    ),
    (
        {"max-total-virtual-machines": -1},
        "max-total-virtual-machines: -1 is less than the minimum of 0",
    ),
    ({"vm-cpu": 0}, "vm-cpu: 0 is less than the minimum of 1"),
    ({"vm-memory": "7GB"}, "vm-memory: '7GB' is not a size like 7GiB"),
    ({"vm-memory": "0GiB"}, "vm-memory: '0GiB' is zero"),
    ({"vm-disk": "ten"}, "vm-disk: 'ten' is not a size like 7GiB"),
    ({"reconcile-interval": 1}, "reconcile-interval: 1 is less than the minimum of 2"),
    ({"runner-storage": "disk"}, "runner-storage: 'disk' is not 'juju-storage' or 'memory'"),
    ({"network": "a-bridge-too-long"}, "network: 'a-bridge-too-long' is not an LXD network name"),
    ({"base-image": "focal"}, "base-image: 'focal' is not 'noble' or 'jammy'"),
    ({"dockerhub-mirror": "http://mirror.example.com"}, "dockerhub-mirror: "),
    ({"dockerhub-mirror": "http://localhost:5000"}, "dockerhub-mirror: "),
    ({"denylist": "10.0.0.0/8,not-a-net"}, "denylist: 'not-a-net' is not an IPv4 network"),
    ({"denylist": "fe80::/10"}, "denylist: 'fe80::/10' is not an IPv4 network"),
    ({"experimental-use-aproxy": True}, "experimental-use-aproxy: needs the model proxy"),
    ({"test-mode": "yes"}, "test-mode: 'yes' is not '' (off) or 'insecure'"),
    ({"repo-policy-default": "maybe"}, "repo-policy-default: 'maybe' is neither 'allow' nor"),
    ({"token-secret-id": "token", "token": ""}, "token-secret-id: 'token' is not a Juju secret"),
    ({"token-secret-id": TOKEN_SECRET.id}, "token-secret-id: token and token-secret-id are both"),
    (
        {"github-app-client-id": CLIENT_ID, "token-secret-id": TOKEN_SECRET.id, "token": ""},
        "github-app-client-id: token-secret-id and github-app-* options are both set",
    ),
    (
        {"github-app-client-id": "", "github-app-installation-id": "1", "token": ""},
        "github-app-client-id: a GitHub App needs all of github-app-client-id, "
        "github-app-installation-id, github-app-private-key-secret-id: github-app-client-id, "
        "github-app-private-key-secret-id are not set",
    ),
    (
        app_config(**{"github-app-client-id": "my app"}),
        "github-app-client-id: 'my app' is not a GitHub App client ID",
    ),
    (
        app_config(**{"github-app-installation-id": "-3"}),
        "github-app-installation-id: '-3' is not an installation ID",
    ),
    (
        app_config(**{"github-app-private-key-secret-id": NOT_A_KEY_SECRET.id}),
        f"github-app-private-key-secret-id: the 'private-key' of {NOT_A_KEY_SECRET.id} is not a "
        "valid RSA PEM private key: not a PEM private key",
    ),
    ({"webhook-secret": "hunter2-pasted"}, "webhook-secret: is not a Juju secret ID"),
    (
        {"webhook-secret": SHORT_WEBHOOK_SECRET.id},
        f"webhook-secret: the 'webhook-secret' of {SHORT_WEBHOOK_SECRET.id} must be 16 to 256",
    ),
    (
        {"webhook-secret": TOKEN_SECRET.id},
        f"webhook-secret: the secret {TOKEN_SECRET.id} has no 'webhook-secret' key",
    ),
    (
        {"webhook-secret": "secret:" + "0" * 20},
        "webhook-secret: cannot read the secret secret:" + "0" * 20,
    ),
    ({"backend": "k8s"}, "backend: 'k8s' is not one of lxd, openstack"),
    ({"openstack-flavor": "m1.small"}, "openstack-flavor: openstack-flavor only apply"),
    (openstack_config(**{"openstack-image": ""}), "openstack-image: openstack-image must be set"),
    (openstack_config(**{"openstack-network": "a\u00e9"}), "openstack-network: 'a\u00e9' is not"),
    (openstack_config(**{"openstack-cloud": "x"}), "openstack-cloud: the clouds.yaml of secret:"),
    (
        openstack_config(**{"openstack-clouds-yaml-secret-id": TOKEN_SECRET.id}),
        f"openstack-clouds-yaml-secret-id: the secret {TOKEN_SECRET.id} has no 'clouds-yaml' key",
    ),
]
# Juju accepts only booleans for these, and every boolean is valid.
ALWAYS_VALID = {"repo-policy-allow-pull-request-target", "repo-policy-allow-unprotected-branches"}


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_values(config: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        build(config, secrets=SECRETS)
    assert str(info.value).startswith(message)
    option = next(iter(config))
    assert info.value.option == option


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_values_block_the_unit(config: dict[str, Any], message: str) -> None:
    manager, system = FakeRunnerManager(), FakeSystem()
    ctx = make_context(manager, system)
    out = ctx.run(ctx.on.config_changed(), base_state(config=config, secrets=SECRETS))
    assert isinstance(out.unit_status, testing.BlockedStatus)
    assert out.unit_status.message.startswith(message)
    assert next(iter(config)) in out.unit_status.message
    assert "reconcile" not in manager.names()


def test_every_option_has_a_good_value_test() -> None:
    options = set(charm_config()["options"])
    tested = {name for config, _, _ in GOOD for name in config}
    assert options - tested == set()


def test_every_option_has_a_bad_value_test() -> None:
    options = set(charm_config()["options"])
    tested = {next(iter(config)) for config, _ in BAD}
    assert options - ALWAYS_VALID == tested


def test_messages_never_hold_the_token() -> None:
    with pytest.raises(errors.ConfigError) as info:
        build({"token": TOKEN + " x"})
    assert TOKEN not in str(info.value)


def test_url_messages_never_echo_credentials() -> None:
    with pytest.raises(errors.ConfigError) as info:
        build({"dockerhub-mirror": "https://user:hunter2@mirror.example"})
    assert "hunter2" not in str(info.value)


def test_wrong_types_are_config_errors() -> None:
    # Juju enforces option types; the model still reports a wrong type against the option.
    from juju.options import get_bool as _get_bool
    from juju.options import get_int as _get_int
    from juju.options import get_str as _get_str

    with pytest.raises(errors.ConfigError, match=r"^vm-cpu: 'x' is not an integer"):
        _get_int({"vm-cpu": "x"}, "vm-cpu", 1)
    with pytest.raises(errors.ConfigError, match=r"^vm-cpu: True is not an integer"):
        _get_int({"vm-cpu": True}, "vm-cpu", 1)
    with pytest.raises(errors.ConfigError, match=r"^labels: 3 is not a string"):
        _get_str({"labels": 3}, "labels")
    assert _get_str({"labels": None}, "labels") == ""
    with pytest.raises(errors.ConfigError, match=r"^test-mode: 'x' is not true or false"):
        _get_bool({"test-mode": "x"}, "test-mode")


def test_proxy_from_the_juju_environment() -> None:
    environ = {
        "JUJU_CHARM_HTTP_PROXY": "http://proxy:3128",
        "JUJU_CHARM_HTTPS_PROXY": "http://proxy:3129",
        "JUJU_CHARM_NO_PROXY": "127.0.0.1,.internal",
    }
    state = build({"experimental-use-aproxy": True}, environ=environ)
    assert state.proxy == ProxySetting(
        http="http://proxy:3128", https="http://proxy:3129", no_proxy="127.0.0.1,.internal"
    )
    assert state.aproxy is True


def test_proxy_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUJU_CHARM_HTTPS_PROXY", "http://proxy:3128")
    ctx = make_context(FakeRunnerManager(), FakeSystem())
    with ctx(ctx.on.update_status(), base_state()) as mgr:
        state = from_charm(mgr.charm, machine="aarch64")
    assert state.proxy.https == "http://proxy:3128"
    assert state.arch == Arch.ARM64


def test_unsupported_architecture() -> None:
    with pytest.raises(errors.ConfigError, match="architecture 's390x' is not supported"):
        build(machine="s390x")


def test_runner_storage_is_immutable() -> None:
    assert build({"runner-storage": "memory"}, deployed="memory").runner_storage.value == "memory"
    with pytest.raises(errors.ImmutableConfigChangedError) as info:
        build({"runner-storage": "memory"}, deployed="juju-storage")
    assert str(info.value).startswith(
        "runner-storage: cannot change after deployment (deployed with 'juju-storage', "
        "now 'memory'); set it back with `juju config github-runner "
        "runner-storage=juju-storage`"
    )


def test_app_name_length_follows_lxd_limits() -> None:
    # <app>-0-<8 hex>: 63-character host names bind before the 107-byte socket path.
    assert max_app_name_length(0) == 52
    assert max_app_name_length(123) == 50
    validate_app_name("a" * 52, 0)
    with pytest.raises(errors.ConfigError) as info:
        validate_app_name("a" * 53, 0)
    message = str(info.value)
    assert message.startswith("application-name: 'aaaa")
    assert "at most 52 fit" in message
    assert "/var/snap/lxd/common/lxd/logs/{name}/qemu.monitor" in message
    socket = "/var/snap/lxd/common/lxd/logs/" + "a" * 52 + "-0-01234567/qemu.monitor"
    assert len(socket) < 108


def test_long_app_name_blocks_the_unit() -> None:
    ctx = make_context(FakeRunnerManager(), FakeSystem(), app_name="x" * 60)
    out = ctx.run(ctx.on.config_changed(), base_state())
    assert out.unit_status.message.startswith("application-name: 'xxxx")


def test_token_from_a_juju_user_secret() -> None:
    secret = testing.Secret(tracked_content={"token": TOKEN})
    state = build({"token": secret.id}, secrets=[secret])
    assert state.token.get_secret_value() == TOKEN


def test_token_secret_without_token_key() -> None:
    secret = testing.Secret(tracked_content={"other": "x"})
    with pytest.raises(errors.ConfigError) as info:
        build({"token": secret.id}, secrets=[secret])
    assert str(info.value).startswith(f"token: the secret {secret.id} has no 'token' key")


def test_token_secret_not_granted() -> None:
    uri = "secret:cs0h8b1vrs1c73ebsmf0"
    with pytest.raises(errors.ConfigError) as info:
        build({"token": uri})
    assert str(info.value) == (
        f"token: cannot read the secret {uri}: check that it exists and run "
        f"`juju grant-secret {uri} github-runner`"
    )


def test_relations() -> None:
    cos = testing.Relation("cos-agent")
    ssh = testing.Relation(
        "debug-ssh",
        remote_units_data={
            0: {"host": "tmate.example", "port": "10022", "rsa_fingerprint": "SHA256:r",
                "ed25519_fingerprint": "SHA256:e"},
            1: {"host": "partial.example"},
            2: {"host": "bad-port.example", "port": "x", "rsa_fingerprint": "r",
                "ed25519_fingerprint": "e"},
        },
    )  # fmt: skip
    state = build(relations=[cos, ssh], database_uri="mongodb://u:p@db:27017/x")
    assert state.is_metrics_enabled is True
    assert state.reactive_config is not None
    assert state.reactive_config.mq_uri.get_secret_value() == "mongodb://u:p@db:27017/x"
    assert state.reactive_config.queue_name == "github-runner"
    assert state.ssh_debug_connections == (
        SSHDebugConnection("tmate.example", 10022, "SHA256:r", "SHA256:e"),
    )


def test_no_database_uri_no_reactive_mode() -> None:
    assert build(database_uri="").reactive_config is None
    assert build(database_uri=None).reactive_config is None


def test_explicit_database_uri() -> None:
    ctx = make_context(FakeRunnerManager(), FakeSystem())
    with ctx(ctx.on.update_status(), base_state()) as mgr:
        state = from_charm(mgr.charm, "amqp://guest:guest@127.0.0.1//", environ={})
    assert state.reactive_config is not None
    assert state.reactive_config.mq_uri.get_secret_value() == "amqp://guest:guest@127.0.0.1//"


def test_json_round_trip_keeps_secrets_and_masks_them_elsewhere() -> None:
    state = build({"path": "org", "labels": "a,b"}, database_uri="mongodb://u:secret@db/x")
    assert TOKEN not in repr(state)
    assert "secret@" not in repr(state)
    assert TOKEN not in state.model_dump_json()
    assert "secret@" not in state.model_dump_json()
    again = CharmState.model_validate_json(state.model_dump_json(context={REVEAL_SECRETS: True}))
    assert again == state
    assert again.token.get_secret_value() == TOKEN
    assert isinstance(again.path, GitHubOrg)


def test_fingerprints() -> None:
    state = build()
    assert build().credentials_fingerprint() == state.credentials_fingerprint()
    assert build({"labels": "x"}).credentials_fingerprint() != state.credentials_fingerprint()
    assert build({"token": "other"}).credentials_fingerprint() != state.credentials_fingerprint()
    assert build({"vm-cpu": 4}).credentials_fingerprint() == state.credentials_fingerprint()
    assert build({"vm-cpu": 4}).runner_shape_fingerprint() != state.runner_shape_fingerprint()
    assert build({"virtual-machines": 9}).runner_shape_fingerprint() == (
        state.runner_shape_fingerprint()
    )
    assert TOKEN not in state.credentials_fingerprint()


def test_credentials_content_round_trip() -> None:
    old = build({"path": "org", "group": "g", "labels": "a,b", "token": "old"})
    new = build()
    previous = new.with_credentials(old.credentials_content())
    assert previous.token.get_secret_value() == "old"
    assert previous.path == GitHubOrg("org", "g")
    assert previous.labels == ("a", "b")
    assert previous.credentials_fingerprint() == old.credentials_fingerprint()
    assert all(value for value in new.credentials_content().values())
    with pytest.raises(errors.ConfigError, match=r"^token: the previous credentials"):
        new.with_credentials({"token": "x"})


def test_core_processes_load_the_state_without_ops() -> None:
    # The reactive subprocess re-creates the state from JSON and must not need ops.
    import subprocess
    import sys
    from pathlib import Path

    state = build({"labels": "x"}, database_uri="amqp://u:p@127.0.0.1//")
    code = (
        "import sys; sys.modules['ops'] = None\n"
        "from config.state import CharmState\n"
        "state = CharmState.model_validate_json(sys.stdin.read())\n"
        "print(state.token.get_secret_value(), state.reactive_config.mq_uri.get_secret_value())\n"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=state.model_dump_json(context={REVEAL_SECRETS: True}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONPATH": str(src)},
    )
    assert result.stdout.split() == [TOKEN, "amqp://u:p@127.0.0.1//"]
