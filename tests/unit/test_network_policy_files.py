"""Proxy, aproxy and mirror files rendered into runners (artifacts.runner_files/runner_proxy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from ipaddress import IPv4Network
from pathlib import PurePosixPath

import pytest

import errors
from artifacts.runner_files import (
    APROXY_RULES_PATH,
    APROXY_SCRIPT_PATH,
    APT_PROXY_PATH,
    DOCKER_DAEMON_PATH,
    DOCKER_PROXY_PATH,
    REDSOCKS_CONFIG_PATH,
    RunnerFile,
    render_runner_files,
)
from artifacts.runner_proxy import (
    aproxy_endpoint,
    direct_networks,
    render_aproxy_rules,
)
from juju.options import proxy_from_env
from manager.templates import template_environment
from runner_type import ProxySetting, RunnerConfig
from tests.unit.fakes_core import make_state

RUNNER_DIR = PurePosixPath("/home/ubuntu/actions-runner")
CLIENT_PATH = "/home/ubuntu/.docker/config.json"
PROXY = "http://198.18.4.11:3128"
# Odd but legal, as juju.options lets them through (credentials with sub-delimiters, IPv6).
ODD = proxy_from_env(
    {
        "JUJU_CHARM_HTTP_PROXY": "http://us$er:p'a(s)s;w&d%21@proxy.example:3128",
        "JUJU_CHARM_HTTPS_PROXY": "http://[2001:db8::1]:3129/",
        "JUJU_CHARM_NO_PROXY": "127.0.0.1,.internal,198.18.8.0/24,10.0.0.0/8",
    }
)


def _files(
    proxies: ProxySetting, *, aproxy: bool = False, mirror: str | None = None
) -> dict[str, RunnerFile]:
    state = make_state()
    config = RunnerConfig(
        app_name="gh",
        name="gh-0-0123abcd",
        path=state.path,
        labels=(),
        github_url=state.github_url,
        dockerhub_mirror=mirror,
        proxies=proxies,
        aproxy=aproxy,
    )
    rendered = render_runner_files(
        template_environment(),
        config,
        runner_dir=RUNNER_DIR,
        runner_user="ubuntu",
        repo_policy_url=None,
    )
    return {item.path: item for item in rendered}


def _text(files: dict[str, RunnerFile], path: str) -> str:
    return files[path].content.decode()


def test_no_proxy_no_mirror_no_extra_file() -> None:
    assert sorted(_files(ProxySetting())) == sorted(
        str(RUNNER_DIR / name) for name in (".env", "pre-job.sh", "start.sh")
    )


def test_model_proxy_reaches_apt_docker_and_job_containers() -> None:
    files = _files(ODD)
    apt = _text(files, APT_PROXY_PATH)
    assert f"Acquire::http::Proxy {json.dumps(ODD.http)};" in apt
    assert f"Acquire::https::Proxy {json.dumps(ODD.https)};" in apt
    dropin = _text(files, DOCKER_PROXY_PATH).splitlines()
    assert dropin[1] == "[Service]"
    # '%' doubled: systemd would expand it as a specifier.
    assert ODD.http is not None and "%" in ODD.http  # credentials come percent-encoded
    assert f'Environment="HTTP_PROXY={ODD.http.replace("%", "%%")}"' in dropin
    assert f'Environment="NO_PROXY={ODD.no_proxy}"' in dropin
    client = files[CLIENT_PATH]
    assert (client.mode, client.owner) == (0o600, 1000)  # it may hold the proxy's password
    assert json.loads(client.content)["proxies"]["default"] == {
        "httpProxy": ODD.http,
        "httpsProxy": ODD.https,
        "noProxy": ODD.no_proxy,
    }
    assert f"HTTP_PROXY={ODD.http}" in _text(files, str(RUNNER_DIR / ".env"))


def test_mirror_reaches_the_docker_daemon() -> None:
    files = _files(ProxySetting(), mirror="https://mirror.example:5000/v2%25/")
    daemon = files[DOCKER_DAEMON_PATH]
    assert json.loads(daemon.content) == {
        "registry-mirrors": ["https://mirror.example:5000/v2%25/"]
    }
    assert (daemon.mode, daemon.owner) == (0o644, 0)
    assert "DOCKERHUB_MIRROR=https://mirror.example:5000/v2%25/" in _text(
        files, str(RUNNER_DIR / ".env")
    )


def test_aproxy_redirects_instead_of_configuring() -> None:
    files = _files(ProxySetting(http=PROXY, no_proxy="198.18.8.0/24,.internal"), aproxy=True)
    env = _text(files, str(RUNNER_DIR / ".env"))
    assert "PROXY" not in env.upper().replace("ACTIONS_RUNNER", "")
    assert APT_PROXY_PATH not in files and DOCKER_PROXY_PATH not in files
    assert CLIENT_PATH not in files
    redsocks = files[REDSOCKS_CONFIG_PATH]
    assert (redsocks.mode, redsocks.owner) == (0o600, 0)
    text = redsocks.content.decode()
    assert text.count('ip = "198.18.4.11";') == 2 and text.count("port = 3128;") == 2
    assert text.count("type = http-connect;") == 2
    assert "local_port = 12380;" in text and "local_port = 12443;" in text
    rules = _text(files, APROXY_RULES_PATH)
    assert "198.18.4.11/32" in rules and "198.18.8.0/24" in rules  # proxy and no-proxy direct
    assert "tcp dport 443 redirect to :12443" in rules
    start = _text(files, str(RUNNER_DIR / "start.sh"))
    assert start.index(f"if ! {APROXY_SCRIPT_PATH}; then") < start.index("./run.sh")
    assert f"nft -f {APROXY_RULES_PATH}" in _text(files, APROXY_SCRIPT_PATH)


def test_aproxy_passes_decoded_credentials() -> None:
    endpoint = aproxy_endpoint(ODD)
    assert (endpoint.host, endpoint.port) == ("proxy.example", 3128)
    assert (endpoint.login, endpoint.password) == ("us$er", "p'a(s)s;w&d!")
    text = _text(_files(ODD, aproxy=True), REDSOCKS_CONFIG_PATH)
    assert 'login = "us$er";' in text and 'password = "p\'a(s)s;w&d!";' in text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://proxy.example:3128", "http://"),
        ("http://[2001:db8::1]:3128", "IPv6"),
        ("http://user:a%22b@proxy.example:3128", "credentials"),
        ("http://user:a%5Cb@proxy.example:3128", "credentials"),
        ("http://user:a%0Ab@proxy.example:3128", "credentials"),
    ],
)
def test_aproxy_refuses_a_proxy_redsocks_cannot_use(url: str, reason: str) -> None:
    with pytest.raises(errors.ConfigError, match=reason) as caught:
        aproxy_endpoint(ProxySetting(http=url))
    assert caught.value.option == "experimental-use-aproxy"


def test_direct_networks_keep_local_ranges_and_addresses_only() -> None:
    endpoint = aproxy_endpoint(ProxySetting(http=PROXY))
    direct = direct_networks(endpoint, "10.1.0.0/16, 198.18.8.1,.internal,*.example.com")
    assert IPv4Network("198.18.8.1/32") in direct and IPv4Network("198.18.4.11/32") in direct
    assert IPv4Network("10.0.0.0/8") in direct  # 10.1.0.0/16 merged into it
    assert IPv4Network("127.0.0.0/8") in direct


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and nftables"
)
def test_nft_accepts_the_aproxy_rules() -> None:
    endpoint = aproxy_endpoint(ProxySetting(http=PROXY))
    # The rules name the redsocks user, which only the runner image has.
    script = render_aproxy_rules(direct_networks(endpoint, None)).replace("redsocks", "root")
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
