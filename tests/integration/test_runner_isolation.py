"""Runners cannot reach or impersonate each other (LXD NIC security of the runner profile).

Three containers with the runner profile (``LxdClient.runner_profile``) on the closed test
network: ``b`` listens on a port, ``a`` cannot connect to it (port isolation), while a test host
can (the listener works). ``a`` then adds the policy test host's address to its NIC and answers
on its port: ``c``'s request to that address still reaches the real test host (``a`` neither
hears ``c``'s ARP nor can answer it; MAC filtering keeps it from sending as another MAC). Only
the test network's hosts and containers are ever addressed.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from harness.testnet import TestNet
from lxd import RUNNER_NIC, LxdClient, LxdInstance

pytestmark = pytest.mark.lxd

PORT = 8000
REAL = "the real policy host"
IMPOSTOR = "impostor"


@pytest.fixture(scope="module")
def runners(
    lxd_client: LxdClient, test_image: str, testnet: TestNet
) -> Iterator[dict[str, tuple[LxdInstance, str]]]:
    """Three booted containers with the runner profile, each with its DHCP address."""
    prefix = f"itest-{secrets.token_hex(3)}-"
    profile = lxd_client.runner_profile(testnet.bridge)
    made: dict[str, tuple[LxdInstance, str]] = {}
    try:
        for name in ("a", "b", "c"):
            inst = lxd_client.create(
                f"{prefix}{name}", test_image, profiles=["default", profile], wait=False
            )
            made[name] = (inst, "")
        for name, (inst, _) in made.items():
            inst.wait_ready(timeout=60)
            made[name] = (inst, inst.wait_address(RUNNER_NIC, timeout=30))
        yield made
    finally:
        for inst, _ in made.values():
            inst.delete(timeout=120)


# Gratuitous ARP replies to the bridge's broadcast: "<address> is at a's MAC" (a root job can).
GARP = """
import socket, struct, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mac = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
ip = socket.inet_aton("{address}")
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + ip + b"\\xff" * 6 + ip
for _ in range(25):  # for 2.5 s: past the neighbour table's 1 s locktime
    s.send(b"\\xff" * 6 + mac + b"\\x08\\x06" + arp)
    time.sleep(0.1)
"""


def _serve(inst: LxdInstance, body: str) -> None:
    """Start a web server on PORT answering ``body`` in the container."""
    script = (
        "import http.server as h\n"
        "class A(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        f"        b = {body!r}.encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(b)))\n"
        "        self.end_headers(); self.wfile.write(b)\n"
        f"h.ThreadingHTTPServer(('0.0.0.0', {PORT}), A).serve_forever()\n"
    )
    inst.files.push("/tmp/serve.py", script.encode())
    inst.execute(["sh", "-c", "nohup python3 /tmp/serve.py >/dev/null 2>&1 &"], check=True)
    probe = f"curl -fsS --retry 20 --retry-delay 0 --retry-connrefused http://127.0.0.1:{PORT}/"
    assert inst.execute(["sh", "-c", probe], timeout=30).stdout == body


def _curl(inst: LxdInstance, url: str) -> tuple[int, str]:
    result = inst.execute(["curl", "-fsS", "--max-time", "3", url], timeout=20)
    return result.exit_code, result.stdout.strip()


def test_a_runner_cannot_connect_to_another(
    runners: dict[str, tuple[LxdInstance, str]], testnet: TestNet
) -> None:
    (a, _), (b, b_address) = runners["a"], runners["b"]
    _serve(b, "runner b")
    observer = testnet.add_host(f"obs-{secrets.token_hex(2)}")
    seen = subprocess.run(
        observer.argv(["curl", "-fsS", "--max-time", "5", f"http://{b_address}:{PORT}/"]),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert seen.stdout == "runner b", f"a test host reaches b's listener: {seen.stderr}"
    code, body = _curl(a, f"http://{b_address}:{PORT}/")
    assert code != 0 and body == "", "runner a reached runner b"


def test_a_runner_taking_the_policy_address_gets_no_other_runners_request(
    runners: dict[str, tuple[LxdInstance, str]], testnet: TestNet
) -> None:
    (a, _), (c, _) = runners["a"], runners["c"]
    policy = testnet.add_host(f"pol-{secrets.token_hex(2)}")
    testnet.start_http(policy, port=PORT, body=REAL)
    prefix = testnet.subnet.prefixlen
    url = f"http://{policy.address}:{PORT}/"
    assert _curl(c, url) == (0, REAL)  # c knows the real host's MAC now
    a.execute(["ip", "addr", "add", f"{policy.address}/{prefix}", "dev", RUNNER_NIC], check=True)
    _serve(a, IMPOSTOR)
    a.files.push("/tmp/garp.py", GARP.format(address=policy.address).encode())
    a.execute(["python3", "/tmp/garp.py"], check=True, timeout=20)  # "it is at my MAC"
    for _ in range(3):
        code, body = _curl(c, url)
        assert (code, body) == (0, REAL), "another runner's request went astray"
