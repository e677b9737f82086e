"""Network policy on real LXD and the closed test network: denylist, proxy files, aproxy, mirror.

A container from the test image with a NIC on the test bridge (exactly the runner NIC) and test
hosts in namespaces: ``deny*`` (denied by CIDR), ``allow*`` (allowed), a proxy (Debian's
tinyproxy) whose test host also holds the address of ``web*``, the web host the aproxy test
denies: the proxy's own fetch then stays inside its namespace, as in production, where the proxy
is off the runner bridge (every packet entering from the runner bridge is filtered). The
denylist is the unit's nftables table on the host, applied by the charm's real seam
(:class:`juju.network_policy.NetworkPolicyHost`, real ``nft``); the proxy, aproxy and mirror
files are the ones :func:`artifacts.runner_files.render_runner_files` renders, pushed where a
runner's tools read them. Only loopback and the test hosts are ever addressed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from artifacts.runner_files import RunnerFile, render_runner_files
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from harness.netns import NamespaceProcess
from harness.testnet import TestHost, TestNet
from juju.network_policy import NetworkPolicyHost, exempt_hosts
from manager.templates import template_environment
from runner_manager_type import LXDFlushMode
from runner_type import ProxySetting, RunnerConfig
from tests.integration.testnet_fixtures import lxc, lxc_sh
from tests.unit.fakes_core import make_state

pytestmark = pytest.mark.lxd

TEST_IMAGE = os.environ.get("GITHUB_RUNNER_TEST_IMAGE", "github-runner-test")
PROXY_PORT = 8888
MIRROR = "https://mirror.test:5000"
# A dropped SYN is retried until curl gives up: bound it (the denied case costs this long).
DENIED_CONNECT_TIMEOUT = 2


def _curl(name: str, url: str) -> subprocess.CompletedProcess[str]:
    return lxc_sh(
        name, f"curl -fsS --connect-timeout {DENIED_CONNECT_TIMEOUT} --max-time 10 {url}"
    )


@dataclass
class World:
    container: str
    denied: TestHost
    allowed: TestHost
    proxy: TestHost
    web: TestHost
    proxy_log: NamespaceProcess
    policy: NetworkPolicyHost
    bridge: str


def _tinyproxy_config(testnet: TestNet, name: str) -> str:
    path = testnet.state_dir / f"{name}-tinyproxy.conf"
    # No ConnectPort line: CONNECT to any port (aproxy tunnels 443 through it).
    path.write_text(
        f"Port {PROXY_PORT}\nListen 0.0.0.0\nTimeout 30\nLogLevel Info\nMaxClients 20\n"
        "Allow 0.0.0.0/0\nDisableViaHeader Yes\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def world(testnet: TestNet) -> Iterator[World]:
    """Test hosts, a proxy, a container on the bridge and the unit's policy seam."""
    if subprocess.run(
        ["lxc", "image", "info", TEST_IMAGE], capture_output=True, check=False
    ).returncode:
        if os.environ.get("CI"):
            pytest.fail(f"LXD image {TEST_IMAGE} is missing", pytrace=False)
        pytest.skip(f"LXD image {TEST_IMAGE} is missing; run scripts/build-lxd-image.sh --test")
    for tool in ("nft", "tinyproxy"):
        if shutil.which(tool) is None:
            message = f"{tool} is missing; run scripts/setup-lxd.sh --test-tools"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    tag = secrets.token_hex(2)  # unique: a rerun in the session adds other hosts
    denied, allowed = testnet.add_host(f"deny{tag}"), testnet.add_host(f"allow{tag}")
    for host in (denied, allowed):
        testnet.start_http(host, port=80, body=f"hello from {host.name}")
    proxy, web = testnet.add_host(f"proxy{tag}"), testnet.add_host(f"web{tag}")
    # web's address (and DNS name) moves to the proxy's test host.
    prefix = f"{web.address}/{testnet.subnet.prefixlen}"
    subprocess.run(["ip", "-n", web.namespace, "addr", "del", prefix, "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", proxy.namespace, "addr", "add", prefix, "dev", "eth0"], check=True)
    testnet.start_http(proxy, port=80, body="hello from web")
    # Port 443 serves plain HTTP: aproxy tunnels it with CONNECT like any 443 traffic.
    testnet.start_http(proxy, port=443, body="port 443 of web")
    config = _tinyproxy_config(testnet, proxy.name)
    # The proxy resolves names with the test network's DNS (`ip netns exec` mounts this file
    # over /etc/resolv.conf), never with the host's resolver.
    netns_etc = Path("/etc/netns") / proxy.namespace
    netns_etc.mkdir(parents=True, exist_ok=True)
    (netns_etc / "resolv.conf").write_text(f"nameserver {testnet.dns_address}\n")
    proxy_log = testnet.spawn(proxy, ["tinyproxy", "-d", "-c", config], port=PROXY_PORT)
    policy = NetworkPolicyHost(f"itest-{tag}/0")
    name = f"np-{secrets.token_hex(3)}"
    nic = testnet.nic_device()
    try:
        lxc("init", TEST_IMAGE, name, "--quiet")
        lxc("config", "device", "add", name, nic["name"], "nic", f"network={nic['network']}")
        lxc("start", name)
        testnet.wait_lease(name, timeout=30)
        yield World(name, denied, allowed, proxy, web, proxy_log, policy, testnet.bridge)
    finally:
        subprocess.run(
            ["lxc", "delete", "--force", name], capture_output=True, timeout=120, check=False
        )
        policy.remove()
        shutil.rmtree(netns_etc, ignore_errors=True)


def _table_count(table: str) -> int:
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=True
    ).stdout
    return tables.split().count(table)


def _dropped_packets(table: str) -> int:
    chain = subprocess.run(
        ["nft", "list", "chain", "inet", table, "forward"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in chain.splitlines() if "@denied counter" in x and "drop" in x)
    return int(line.split("packets")[1].split()[0])


def test_denylist_drops_the_denied_host_and_flips_on_change(world: World) -> None:
    denied, allowed, name = world.denied, world.allowed, world.container
    # Without the policy both answer: what fails below fails because of the rules.
    world.policy.remove()
    for host in (denied, allowed):
        assert _curl(name, f"http://{host.address}/").stdout == f"hello from {host.name}\n"

    world.policy.apply(world.bridge, (f"{denied.address}/32",))
    request = contextlib.ExitStack()
    request.callback(world.policy.remove)
    result = _curl(name, f"http://{denied.address}/")
    assert result.returncode != 0, result.stdout
    assert "timed out" in result.stderr or "Failed to connect" in result.stderr, result.stderr
    assert _dropped_packets(world.policy.table) > 0
    assert _curl(name, f"http://{allowed.fqdn}/").stdout == f"hello from {allowed.name}\n"

    # Root in the runner cannot undo it: the rules are in the host's namespace.
    assert lxc_sh(name, "nft flush ruleset").returncode == 0
    assert _curl(name, f"http://{denied.address}/").returncode != 0

    # The option changes: the table is replaced (one table, never two) and both flip.
    world.policy.apply(world.bridge, (f"{allowed.address}/32",))
    assert _table_count(world.policy.table) == 1
    assert _curl(name, f"http://{denied.fqdn}/").stdout == f"hello from {denied.name}\n"
    assert _curl(name, f"http://{allowed.address}/").returncode != 0
    request.close()


def test_exempt_hosts_stay_reachable_inside_a_denied_network(
    world: World, testnet: TestNet
) -> None:
    # The whole test subnet is denied; GitHub / the policy service / the proxy are exempt.
    exempt = exempt_hosts(f"http://{world.allowed.address}:80", None)
    world.policy.apply(world.bridge, (str(testnet.subnet),), exempt)
    try:
        assert _curl(world.container, f"http://{world.allowed.address}/").returncode == 0
        assert _curl(world.container, f"http://{world.denied.address}/").returncode != 0
    finally:
        world.policy.remove()


def _config(proxies: ProxySetting, *, aproxy: bool, mirror: str | None = None) -> RunnerConfig:
    state = make_state()
    return RunnerConfig(
        app_name="np",
        name="np-0-00000000",
        path=state.path,
        labels=(),
        github_url=state.github_url,
        dockerhub_mirror=mirror,
        proxies=proxies,
        aproxy=aproxy,
    )


def _push(name: str, files: tuple[RunnerFile, ...]) -> None:
    """Push the runner files as the runner does (directories come with the image)."""
    lxc_sh(name, "mkdir -p /home/ubuntu/actions-runner")
    for item in files:
        subprocess.run(
            [
                "lxc",
                "file",
                "push",
                "-",
                f"{name}{item.path}",
                f"--mode={item.mode:o}",
                f"--uid={item.owner}",
                f"--gid={item.owner}",
            ],
            input=item.content,
            capture_output=True,
            timeout=30,
            check=True,
        )


def _render(config: RunnerConfig) -> tuple[RunnerFile, ...]:
    return render_runner_files(
        template_environment(),
        config,
        runner_dir=PurePosixPath("/home/ubuntu/actions-runner"),
        runner_user="ubuntu",
        repo_policy_url=None,
    )


def test_proxy_and_mirror_files_are_where_the_tools_read_them(world: World) -> None:
    proxy_url = f"http://{world.proxy.address}:{PROXY_PORT}"
    proxies = ProxySetting(http=proxy_url, https=proxy_url, no_proxy="127.0.0.1,.test")
    _push(world.container, _render(_config(proxies, aproxy=False, mirror=MIRROR)))
    name = world.container
    daemon = json.loads(lxc_sh(name, "cat /etc/docker/daemon.json").stdout)
    assert daemon["registry-mirrors"] == [MIRROR]
    apt = lxc_sh(name, "apt-config dump | grep -i '::proxy'").stdout
    assert f'Acquire::http::Proxy "{proxy_url}";' in apt
    assert f'Acquire::https::Proxy "{proxy_url}";' in apt
    dropin = lxc_sh(name, "cat /etc/systemd/system/docker.service.d/http-proxy.conf").stdout
    assert f'Environment="HTTPS_PROXY={proxy_url}"' in dropin
    client = json.loads(lxc_sh(name, "cat /home/ubuntu/.docker/config.json").stdout)
    assert client["proxies"]["default"]["httpProxy"] == proxy_url
    env = lxc_sh(name, "cat /home/ubuntu/actions-runner/.env").stdout
    assert f"DOCKERHUB_MIRROR={MIRROR}" in env
    assert f"https_proxy={proxy_url}" in env
    # curl as a job does, with the runner's environment: through the proxy, which logs it.
    fetched = lxc_sh(
        name,
        "set -a; . /home/ubuntu/actions-runner/.env; set +a; "
        f"curl -fsS --max-time 10 http://{world.allowed.address}/via-env",
    )
    assert fetched.stdout == f"hello from {world.allowed.name}\n", fetched.stderr
    assert f"http://{world.allowed.address}/via-env" in world.proxy_log.log_text()


def _wait_logged(process: NamespaceProcess, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in (log := process.log_text()):
        assert time.monotonic() < deadline, f"{text!r} not in the proxy log:\n{log[-2000:]}"
        time.sleep(0.05)
    return log


def test_aproxy_redirects_to_the_proxy_while_the_direct_path_is_denied(world: World) -> None:
    name, web = world.container, world.web
    proxy_url = f"http://{world.proxy.address}:{PROXY_PORT}"
    files = _render(_config(ProxySetting(http=proxy_url), aproxy=True))
    assert not any(f.path.endswith(("http-proxy.conf", "config.json")) for f in files)
    _push(name, files)
    # The direct path to the web host is denied on the host; the proxy is not.
    world.policy.apply(world.bridge, (f"{web.address}/32",))
    try:
        started = lxc_sh(name, "/usr/local/sbin/github-runner-aproxy", timeout=90)
        assert started.returncode == 0, started.stderr
        # A job's plain curl, no proxy setting: ports 80 and 443 tunnelled (CONNECT).
        plain = _curl(name, f"http://{web.fqdn}/through-aproxy")
        assert plain.stdout == "hello from web\n", world.proxy_log.log_text()[-3000:]
        tunnelled = _curl(name, f"http://{web.address}:443/tunnel")
        assert tunnelled.stdout == "port 443 of web\n", tunnelled.stderr
        log = _wait_logged(world.proxy_log, f"CONNECT {web.address}:443")
        assert f"CONNECT {web.address}:80" in log, log
        # A root job can take the redirection out; then it has no way there at all.
        assert lxc_sh(name, "nft delete table ip github_runner_aproxy").returncode == 0
        assert _curl(name, f"http://{web.address}/direct").returncode != 0
    finally:
        world.policy.remove()
        lxc_sh(name, "systemctl stop redsocks; nft delete table ip github_runner_aproxy")


def test_a_jobs_steps_on_a_real_runner_meet_the_denylist(world: World, testnet: TestNet) -> None:
    # The production path: the manager creates a runner on the test bridge, the sandbox hands it
    # a job, and the job's own steps try the denied and the allowed test host.
    denied, allowed = world.denied, world.allowed
    steps = [
        f"curl -fsS --max-time 10 http://{allowed.fqdn}/",
        f"if curl -fsS --connect-timeout {DENIED_CONNECT_TIMEOUT} http://{denied.address}/; "
        "then exit 1; fi",
        "echo denied-as-expected",
    ]
    world.policy.apply(world.bridge, (f"{denied.address}/32",))
    try:
        with LocalEnvironment(LocalOptions(app_name="np", repo="octo/np"), testnet=testnet) as env:
            try:
                assert env.manager.reconcile(1, RESOURCES) == 1
                env.wait_online(1, 60)
                (done,) = env.wait_jobs([env.queue_job(steps)["id"]], 90)
                assert done["conclusion"] == "success", done.get("log")
                assert f"hello from {allowed.name}" in done["log"]
                assert "denied-as-expected" in done["log"]
                assert f"hello from {denied.name}" not in done["log"]
            finally:
                env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
    finally:
        world.policy.remove()
