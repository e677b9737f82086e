"""The closed test network on real LXD: a container with a NIC on the test bridge.

It gets its address by DHCP from the dnsmasq test host, resolves test hosts by name, reaches the
sandbox over the bridge, and has no way off the test network: no route beyond the test subnet,
and the host has no address there. The manager side reaches the same sandbox through its link.
Only loopback and the test hosts are ever addressed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from harness.netns import addresses, ip_json, namespaces, read_sysctl
from harness.testnet import SandboxService, TestNet, cleanup_stale, sessions
from sandbox.control_client import SandboxControl
from tests.integration.testnet_fixtures import TESTNET_TOKEN, lxc, lxc_sh

pytestmark = pytest.mark.lxd

TEST_IMAGE = os.environ.get("GITHUB_RUNNER_TEST_IMAGE", "github-runner-test")


@dataclass
class NetContainer:
    name: str
    address: IPv4Address
    dhcp_seconds: float
    dns_seconds: float


@pytest.fixture(scope="module")
def container(testnet: TestNet, testnet_sandbox: SandboxService) -> Iterator[NetContainer]:
    """One container from the test image with a NIC on the test bridge, booted and addressed."""
    if subprocess.run(
        ["lxc", "image", "info", TEST_IMAGE], capture_output=True, check=False
    ).returncode:
        if os.environ.get("CI"):
            pytest.fail(f"LXD image {TEST_IMAGE} is missing", pytrace=False)
        pytest.skip(f"LXD image {TEST_IMAGE} is missing; run scripts/build-lxd-image.sh --test")
    name = f"tn-{secrets.token_hex(3)}"
    nic = testnet.nic_device()
    try:
        lxc("init", TEST_IMAGE, name, "--quiet")
        lxc(
            "config",
            "device",
            "add",
            name,
            nic["name"],
            nic["type"],
            *(f"{k}={v}" for k, v in nic.items() if k != "type"),
        )
        started = time.monotonic()
        lxc("start", name)
        lease = testnet.wait_lease(name, timeout=30)
        dhcp = time.monotonic() - started
        deadline = started + 30
        while lxc_sh(name, "grep -q '^nameserver' /etc/resolv.conf").returncode != 0:
            assert time.monotonic() < deadline, "resolv.conf never got the DHCP DNS server"
            time.sleep(0.05)
        dns = time.monotonic() - started
        print(
            f"\n{name}: DHCP lease {lease.address} {dhcp:.2f} s after start; DNS set {dns:.2f} s"
        )
        yield NetContainer(name, lease.address, dhcp, dns)
    finally:
        subprocess.run(
            ["lxc", "delete", "--force", name], capture_output=True, timeout=120, check=False
        )


def _routes(name: str) -> list[dict[str, Any]]:
    result = lxc_sh(name, "ip -j -4 route show table all")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_container_gets_a_test_address_by_dhcp(testnet: TestNet, container: NetContainer) -> None:
    assert container.address in testnet.subnet
    assert container.dhcp_seconds < 15
    inside = lxc_sh(container.name, "ip -j -4 addr show dev eth0")
    assert str(container.address) in inside.stdout
    resolv = lxc_sh(container.name, "cat /etc/resolv.conf").stdout
    assert f"nameserver {testnet.dns_address}" in resolv
    assert "nameserver" in resolv
    assert len([line for line in resolv.splitlines() if line.startswith("nameserver")]) == 1


def test_container_has_no_route_off_the_test_network(
    testnet: TestNet, container: NetContainer
) -> None:
    routes = _routes(container.name)
    assert routes
    for route in routes:
        destination = route["dst"]
        assert destination != "default", route
        if route.get("type") in ("local", "broadcast") or destination.startswith("127."):
            continue
        assert IPv4Network(destination, strict=False).subnet_of(testnet.subnet), route
        assert route.get("gateway") is None, route


def test_container_resolves_and_reaches_the_sandbox(
    testnet: TestNet, testnet_sandbox: SandboxService, container: NetContainer
) -> None:
    sandbox = testnet_sandbox
    hosts = lxc_sh(container.name, f"getent hosts {sandbox.host.fqdn}")
    assert hosts.returncode == 0, hosts.stderr
    assert hosts.stdout.split()[0] == str(sandbox.host.address)
    curl = (
        f"curl -fsS --max-time 10 -H 'Authorization: token {TESTNET_TOKEN}' "
        f"{sandbox.name_url}/api/v3/repos/octo/net/actions/runners/downloads"
    )
    result = lxc_sh(container.name, curl)
    assert result.returncode == 0, result.stderr
    downloads = json.loads(result.stdout)
    linux = next(d for d in downloads if d["os"] == "linux" and d["architecture"] == "x64")
    # The sandbox advertises its bridge address: a runner downloads from the URL it is given.
    assert linux["download_url"].startswith(f"{sandbox.url}/")
    code = lxc_sh(
        container.name,
        f"curl -fsS -o /dev/null -w '%{{http_code}}' --max-time 30 {linux['download_url']}",
    )
    assert code.stdout == "200", code.stderr


def test_manager_reaches_the_same_sandbox_through_its_link(
    testnet_sandbox: SandboxService, container: NetContainer
) -> None:
    sandbox = testnet_sandbox
    for url in (sandbox.api_url, f"{sandbox.link_url}/api/v3"):
        request = urllib.request.Request(  # noqa: S310 - http to a test host
            f"{url}/rate_limit", headers={"Authorization": f"token {TESTNET_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - test host
            assert response.status == 200
    assert (
        lxc_sh(
            container.name,
            f"curl -fsS --max-time 10 {sandbox.url}/api/v3/rate_limit "
            f"-H 'Authorization: token {TESTNET_TOKEN}'",
        ).returncode
        == 0
    )
    counts = SandboxControl(sandbox.url).stats()["requests"]
    assert counts.get("GET /rate_limit", 0) >= 3, counts


def test_unknown_names_are_answered_locally_never_forwarded(
    testnet: TestNet, container: NetContainer
) -> None:
    # The query goes to the dnsmasq test host only; it has no upstream, so it answers NXDOMAIN.
    result = lxc_sh(container.name, "getent hosts github.com")
    assert result.returncode != 0
    assert testnet.dnsmasq is not None
    assert "config github.com is NXDOMAIN" in testnet.dnsmasq.log_text()


def test_another_test_host_serves_by_name(testnet: TestNet, container: NetContainer) -> None:
    web = testnet.add_host(f"web{secrets.token_hex(2)}")  # unique: a rerun adds another
    testnet.start_http(web, port=80, body="hello from web")
    result = lxc_sh(container.name, f"curl -fsS --max-time 10 http://{web.fqdn}/path")
    assert result.stdout == "hello from web\n", result.stderr
    log = testnet.processes[-1].log_text()
    assert f"{container.address} GET /path" in log


def test_in_process_sandbox_serves_inside_its_test_host(
    testnet: TestNet, container: NetContainer
) -> None:
    home = os.readlink("/proc/thread-self/ns/net")
    host = testnet.add_host(f"gh{secrets.token_hex(2)}", manager_link=True)
    server = testnet.start_sandbox_in_process(host, token=TESTNET_TOKEN)
    try:
        assert os.readlink("/proc/thread-self/ns/net") == home
        assert server.base_url == f"http://{host.address}:8080"
        auth = f"-H 'Authorization: token {TESTNET_TOKEN}'"
        inside = lxc_sh(
            container.name,
            f"curl -fsS --max-time 10 {auth} http://{host.fqdn}:8080/api/v3/rate_limit",
        )
        assert inside.returncode == 0, inside.stderr
        request = urllib.request.Request(  # noqa: S310 - http to a test host
            f"{server.api_url}/rate_limit", headers={"Authorization": f"token {TESTNET_TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - test host
            assert response.status == 200
        assert server.stats.snapshot().get("GET /rate_limit") == 2
    finally:
        server.stop()


def test_a_host_wide_forwarding_switch_is_undone_before_the_next_test(testnet: TestNet) -> None:
    path = Path(f"/proc/sys/net/ipv4/conf/{testnet.bridge}/forwarding")
    path.write_text("1")  # what LXD's 0 -> 1 write of net.ipv4.ip_forward does to every interface
    testnet.harden()
    assert path.read_text().strip() == "0"


def test_host_has_no_address_on_the_test_network(
    testnet: TestNet, testnet_sandbox: SandboxService, container: NetContainer
) -> None:
    bridge = testnet.bridge
    assert addresses(bridge) == []
    ports = [entry["ifname"] for entry in ip_json(["link", "show", "master", bridge])]
    assert len(ports) >= 3  # the dns and sandbox test hosts, the container
    for port in ports:
        assert addresses(port) == [], port
    assert read_sysctl(f"net.ipv4.conf.{bridge}.arp_ignore") == "8"
    assert read_sysctl(f"net.ipv4.conf.{bridge}.rp_filter") == "1"
    # Re-applied before each test (TestNet.harden): a 0 -> 1 write of the host's
    # net.ipv4.ip_forward (LXD starting a NAT bridge) resets every interface's forwarding.
    assert read_sysctl(f"net.ipv4.conf.{bridge}.forwarding") == "0"
    assert read_sysctl(f"net.ipv6.conf.{bridge}.disable_ipv6") == "1"
    # Host routes into the test range: unreachable, except a /32 to each linked test host.
    linked = {h.address for h in testnet.hosts.values() if h.link_address is not None}
    assert testnet_sandbox.host.address in linked
    for route in ip_json(["-4", "route", "show"]):
        if route["dst"] == "default":
            continue
        net = IPv4Network(route["dst"])
        if net.subnet_of(testnet.subnet):
            if net == testnet.subnet:
                assert route.get("type") == "unreachable", route
            else:
                assert net.num_addresses == 1 and net.network_address in linked, route
                assert IPv4Address(route["gateway"]) in testnet.link_subnet, route
    # No test host forwards between its interfaces.
    for host in testnet.hosts.values():
        assert read_sysctl("net.ipv4.ip_forward", host.namespace) == "0", host


def test_stale_sessions_are_removed_and_live_ones_kept(testnet: TestNet) -> None:
    code = (
        "import os, time\n"
        "from harness.testnet import TestNet\n"
        "net = TestNet().start()\n"
        "net.add_host('orphan', manager_link=True)\n"
        "print(net.session, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    session = child.stdout.readline().strip()
    try:
        assert sessions()[session] is True
        assert session not in cleanup_stale()
    finally:
        child.kill()
        child.wait(10)
    assert session in cleanup_stale()
    assert session not in sessions()
    assert not [ns for ns in namespaces() if ns.startswith(session)]
    assert session not in lxc("network", "list", "-f", "csv")
    assert sessions()[testnet.session] is True
