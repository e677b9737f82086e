"""Every option refuses hostile values with a message that starts with its name (issue 15, item 2).

Control characters, quotes, shell substitutions, userinfo in URLs and huge numbers are refused
where they cannot belong; what is accepted comes back rebuilt from its parsed parts.
"""

from __future__ import annotations

from typing import Any

import pytest

import errors
from tests.unit.app_credentials import (
    CLIENT_ID,
    CLOUDS_SECRET,
    KEY_SECRET,
    SECRETS,
    TOKEN_SECRET,
    WEBHOOK_SECRET,
    app_config,
    openstack_config,
)
from tests.unit.fakes_charm import TOKEN, charm_config
from tests.unit.test_charm_state import build

LINE = "\nACTIONS_RUNNER_HOOK_JOB_STARTED=/tmp/evil"
TEXT_SUFFIXES = {
    "newline": LINE,
    "cr": "\rX=1",
    "nul": "\x00",
    "tab": "\tx",
    "double-quote": '"',
    "single-quote": "'",
    "subst": "$(id)",
    "backtick": "`id`",
    "variable": "${HOME}",
}
# A valid value of each string option, to which hostile suffixes are appended.
STRING_OPTIONS = {
    "token": TOKEN,
    "path": "canonical/repo",
    "github-url": "https://github.com",
    "group": "default",
    "labels": "gpu",
    "vm-memory": "7GiB",
    "vm-disk": "10GiB",
    "runner-storage": "memory",
    "network": "lxdbr0",
    "base-image": "noble",
    "dockerhub-mirror": "https://mirror.example.com",
    "denylist": "10.0.0.0/8",
    "test-mode": "insecure",
    "repo-policy-default": "allow",
    "token-secret-id": TOKEN_SECRET.id,
    "github-app-client-id": CLIENT_ID,
    "github-app-installation-id": "4242",
    "github-app-private-key-secret-id": KEY_SECRET.id,
    "webhook-secret": WEBHOOK_SECRET.id,
    "backend": "openstack",
    "openstack-clouds-yaml-secret-id": CLOUDS_SECRET.id,
    "openstack-cloud": "testcloud",
    "openstack-flavor": "runner-small",
    "openstack-image": "github-runner-noble",
    "openstack-network": "runners",
}
AUTH_OPTIONS = ("github-app-client-id", "github-app-installation-id",
                "github-app-private-key-secret-id")  # fmt: skip
# Hostile values of the GitHub App options beyond the text suffixes.
APP_VALUES = {
    "github-app-client-id": ["Iv1.abc/../x", "Iv23" + "a" * 100, "-1", "Iv23 abc", "ghp_tok"],
    "github-app-installation-id": ["0", "-1", "1e3", "0x10", str(2**64), "١٢٣", " 1 2"],
    "github-app-private-key-secret-id": ["secret:short", "secret://x/" + "a" * 20,
                                         "secret:" + "A" * 20, "../" + "a" * 20],
}  # fmt: skip


def _config(option: str, value: Any) -> dict[str, Any]:
    """The options to test one value of ``option`` in (auth options: the others of their way)."""
    if option in AUTH_OPTIONS:
        return app_config(**{option: value})
    if option == "token-secret-id":
        return {option: value, "token": ""}
    if option.startswith("openstack-"):
        return openstack_config(**{option: value})
    return {option: value}


URL_OPTIONS = ("github-url", "dockerhub-mirror")
URL_VALUES = {
    "userinfo-empty-user": "https://:pw@host.example",
    "userinfo": "https://u:pw@host.example",
    "space-in-path": "https://host.example/a b",
    "subst-in-path": "https://host.example/$(id)",
    "quote-in-host": "https://host'.example",
    "backslash": "https://host.example\\@evil.example",
    "bad-host": "https://-host.example",
    "port-zero": "https://host.example:0",
}
INT_OPTIONS = {
    "virtual-machines": [10**9, 10**18, -1],
    "base-virtual-machines": [10**9, -1],
    "max-total-virtual-machines": [10**9, -1],
    "vm-cpu": [10**6, 0],
    "reconcile-interval": [10**9, 1],
}
HUGE_SIZES = ["9999999999TiB", "100000GiB"]
PROXY_VARS = {
    "JUJU_CHARM_HTTP_PROXY": "juju-http-proxy",
    "JUJU_CHARM_HTTPS_PROXY": "juju-https-proxy",
    "JUJU_CHARM_NO_PROXY": "juju-no-proxy",
}
PROXY_VALUES = [
    "http://proxy.example:3128" + LINE,
    "http://proxy.example:3128\r",
    "http://proxy.example:3128\x00",
    "http://proxy.example:3128 x",
    "http://proxy$(id).example:3128",
    'http://proxy.example:3128/"',
    'http://u:p"w@proxy.example:3128',
    "ftp://proxy.example:21",
]
NO_PROXY_VALUES = ["a.example" + LINE, "a.example,$(id)", "a b", "a.example,'x'", "a\x00"]


def _cases() -> list[Any]:  # noqa: C901 - one loop per kind of hostile value
    cases: list[Any] = []
    for option, good in STRING_OPTIONS.items():
        for name, suffix in TEXT_SUFFIXES.items():
            config = _config(option, good + suffix)
            cases.append(pytest.param(config, option, id=f"{option}-{name}"))
        cases.append(pytest.param(_config(option, "x" * 100_000), option, id=f"{option}-long"))
    for option, values in APP_VALUES.items():
        for index, value in enumerate(values):
            cases.append(pytest.param(_config(option, value), option, id=f"{option}-{index}"))
    for option in URL_OPTIONS:
        for name, value in URL_VALUES.items():
            cases.append(pytest.param({option: value}, option, id=f"{option}-{name}"))
    for option, values in INT_OPTIONS.items():
        for value in values:
            cases.append(pytest.param({option: value}, option, id=f"{option}-{value}"))
    for option in ("vm-memory", "vm-disk"):
        for value in HUGE_SIZES:
            cases.append(pytest.param({option: value}, option, id=f"{option}-{value}"))
    cases.append(pytest.param({"labels": ",".join(f"l{i}" for i in range(200))}, "labels",
                              id="labels-too-many"))  # fmt: skip
    cases.append(pytest.param({"group": "g" * 200}, "group", id="group-too-long"))
    cases.append(pytest.param({"denylist": ",".join(f"10.{i // 256}.{i % 256}.0/24"
                                                    for i in range(2000))}, "denylist",
                              id="denylist-too-many"))  # fmt: skip
    return cases


@pytest.mark.parametrize(("config", "option"), _cases())
def test_hostile_option_values_are_refused(config: dict[str, Any], option: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        build(config, secrets=SECRETS)
    message = str(info.value)
    assert message.startswith(f"{option}: "), message
    assert info.value.option == option
    assert not any(char in message for char in "\n\r\x00"), message  # status stays one line
    assert "pw" not in message  # never echo credentials


def _proxy_cases() -> list[Any]:
    cases = []
    for var, option in PROXY_VARS.items():
        values = NO_PROXY_VALUES if var == "JUJU_CHARM_NO_PROXY" else PROXY_VALUES
        for index, value in enumerate(values):
            cases.append(pytest.param({var: value}, option, id=f"{option}-{index}"))
    return cases


@pytest.mark.parametrize(("environ", "option"), _proxy_cases())
def test_hostile_model_proxy_values_are_refused(environ: dict[str, str], option: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        build(environ=environ)
    assert str(info.value).startswith(f"{option}: ")
    assert not any(char in str(info.value) for char in "\n\r\x00")


def test_every_option_has_hostile_cases() -> None:
    options = set(charm_config()["options"])
    tested = set(STRING_OPTIONS) | set(INT_OPTIONS)
    booleans = {name for name, spec in charm_config()["options"].items()
                if spec["type"] == "boolean"}  # fmt: skip
    assert options - booleans == tested


@pytest.mark.parametrize("value", ["true", "1", 1, "true\n"])
def test_boolean_options_take_booleans_only(value: Any) -> None:
    from juju.options import get_bool

    for name, spec in charm_config()["options"].items():
        if spec["type"] == "boolean":
            with pytest.raises(errors.ConfigError, match=f"^{name}: "):
                get_bool({name: value}, name)


REBUILT = [
    ({"github-url": "HTTPS://GHES.Example.COM:443/"}, "github_url", "https://ghes.example.com"),
    ({"github-url": "https://ghes.example.com:8443/a%20b/"}, "github_url",
     "https://ghes.example.com:8443/a%20b"),
    ({"dockerhub-mirror": "https://[2001:DB8::1]:5000"}, "dockerhub_mirror",
     "https://[2001:db8::1]:5000"),
    ({"vm-memory": "512MiB"}, "vm_resources", None),
    ({"labels": " a , b "}, "labels", ("a", "b")),
]  # fmt: skip


@pytest.mark.parametrize(("config", "attribute", "expected"), REBUILT)
def test_accepted_values_are_rebuilt(
    config: dict[str, Any], attribute: str, expected: Any
) -> None:
    value = getattr(build(config), attribute)
    if expected is not None:
        assert value == expected


def test_proxy_values_are_rebuilt_from_their_parts() -> None:
    state = build(
        environ={
            "JUJU_CHARM_HTTP_PROXY": "http://us$er:p'a(s)s;w&d%21@Proxy.Example:3128/",
            "JUJU_CHARM_HTTPS_PROXY": "proxy.example:3129",
            "JUJU_CHARM_NO_PROXY": " 127.0.0.1, .internal,,*.example.com ,[::1],10.0.0.0/8",
        }
    )
    # Sub-delimiters in credentials are percent-encoded: the same credentials for a client,
    # and nothing a shell, an env file or systemd reads specially.
    assert state.proxy.http == "http://us%24er:p%27a%28s%29s%3Bw%26d%21@proxy.example:3128"
    assert state.proxy.https == "http://proxy.example:3129"
    assert state.proxy.no_proxy == "127.0.0.1,.internal,*.example.com,[::1],10.0.0.0/8"


def test_ssh_relation_data_with_newlines_is_skipped() -> None:
    from ops import testing

    ssh = testing.Relation(
        "debug-ssh",
        remote_units_data={
            0: {"host": "tmate.example\nX=1", "port": "10022", "rsa_fingerprint": "SHA256:r",
                "ed25519_fingerprint": "SHA256:e"},
            1: {"host": "ok.example", "port": "10022", "rsa_fingerprint": "SHA256:r\nY=2",
                "ed25519_fingerprint": "SHA256:e"},
            2: {"host": "good.example", "port": "22", "rsa_fingerprint": "SHA256:a+b/c=",
                "ed25519_fingerprint": "SHA256:d"},
        },
    )  # fmt: skip
    state = build(relations=[ssh])
    assert [c.host for c in state.ssh_debug_connections] == ["good.example"]
