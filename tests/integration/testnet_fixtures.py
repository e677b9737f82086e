"""Fixtures of the closed test network (harness/testnet.py), for tests with runners on a NIC.

``testnet`` (session): the bridge with its DHCP/DNS test host; give an instance
``testnet.nic_device()`` as a device and it gets an address by DHCP. ``testnet_sandbox``
(session): the sandbox GitHub on test host ``sandbox.test``, reachable from runners and from the
manager at ``testnet_sandbox.url``. Both are torn down at the end of the session. Without root or
the tools (outside CI) the tests that use them are skipped; in CI they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from harness.testnet import SandboxService, TestNet

TESTNET_TOKEN = "testnet-admin-token"
TOOLS = ("ip", "dnsmasq", "lxc")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the test network is required in CI: {reason}", pytrace=False)
    pytest.skip(f"{reason}; run scripts/setup-lxd.sh as root to enable")


@pytest.fixture(scope="session")
def testnet() -> Iterator[TestNet]:
    """A closed test network for the whole session."""
    if os.geteuid() != 0:
        _unavailable("the test network needs root")
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [tool for tool in TOOLS if shutil.which(tool, path=path) is None]
    if missing:
        _unavailable(f"missing {', '.join(missing)}")
    os.environ["PATH"] = path
    with TestNet() as net:
        yield net


@pytest.fixture(autouse=True)
def _testnet_closed(request: pytest.FixtureRequest) -> None:
    """Before each test on the test network, re-apply its bridge's sysctls (``harden``)."""
    if "testnet" in request.fixturenames:
        net: TestNet = request.getfixturevalue("testnet")
        net.harden()


@pytest.fixture(scope="session")
def testnet_sandbox(testnet: TestNet) -> SandboxService:
    """The sandbox GitHub on test host ``sandbox``, linked to the manager; token TESTNET_TOKEN."""
    host = testnet.add_host("sandbox", manager_link=True)
    return testnet.start_sandbox(host, token=TESTNET_TOKEN)


def lxc(*args: str, timeout: float = 120) -> str:
    """Run ``lxc`` and return its output; a failure fails the test with lxc's stderr."""
    result = subprocess.run(
        ["lxc", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"lxc {' '.join(args)}: {result.stderr}"
    return result.stdout


def lxc_sh(name: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a shell command inside an instance; the caller judges the result."""
    return subprocess.run(
        ["lxc", "exec", name, "--", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
