"""A closed test network for runners with a real NIC: an LXD bridge, test hosts, DHCP and DNS.

Layout of one session (``tn`` + 4 hex digits, e.g. ``tn3f9a``; index N < 64 picked per session,
bridge subnet ``S`` = 198.18.4N.0/22):

- the bridge: an LXD managed network ``tn3f9a`` with ``ipv4.address=none`` and
  ``ipv6.address=none`` (LXD then runs no dnsmasq, adds no firewall rule and disables IPv6 on
  it). The host has no address on it, answers no ARP on it (``arp_ignore=8``), drops what
  arrives on it (``rp_filter=1`` against an ``unreachable`` route for the test subnets) and
  forwards nothing from it. Runners get a NIC on it with :meth:`TestNet.nic_device`;
- test hosts: network namespaces ``tn3f9a-<name>`` with a veth into the bridge
  (S+10 upwards, e.g. 198.18.4N.10/22), no forwarding, no IPv6. ``dns`` (S+2) runs dnsmasq
  (:mod:`harness.testnet_dns`): DHCP for S+100 to S+1021 (10-minute leases: a deleted runner's
  address comes back after that, so ~90 creations a minute), no default route, DNS for
  ``<host>.test`` and for every DHCP client's hostname, no upstream resolver;
- a manager link (``add_host(..., manager_link=True)``): a second veth from the host into that
  one namespace, ``198.19.N.(4k+1)/30`` on the host end and ``.(4k+2)`` inside, plus a /32 route
  to the test host's bridge address through it. The manager reaches that host by its bridge
  address, the same URL runners use; the namespace does not forward, so that is all it reaches.

Only loopback and these test hosts are ever addressed. Everything is torn down by
:meth:`TestNet.close`; sessions whose owner died are torn down by the next session's start or by
``python -m harness.testnet cleanup`` (``list`` shows sessions). Needs root, iproute2, dnsmasq
(Debian ``dnsmasq-base``) and LXD; ``scripts/setup-lxd.sh`` installs them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import IO, Any

from harness.netns import (
    IP,
    NamespaceProcess,
    NetnsError,
    add_veth,
    create_namespace,
    entered,
    ip_json,
    run,
    write_sysctls,
)
from harness.testnet_dns import DOMAIN, Dnsmasq, Lease
from harness.testnet_serve import ALL_ADDRESSES, PublicSandbox
from harness.testnet_sessions import (
    RUN_DIR,
    SESSION_INDEXES,
    SESSION_RE,
    bridge_subnet,
    cleanup_stale,
    link_subnet,
    lock,
    lxd_network_names,
    main,
    remove_state_dir,
    session_index,
    sessions,
    teardown,
)

__all__ = [
    "Lease",
    "PublicSandbox",
    "SandboxService",
    "TestHost",
    "TestNet",
    "cleanup_stale",
    "main",
    "sessions",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DNS_OFFSET, FIRST_HOST_OFFSET, LAST_HOST_OFFSET = 2, 10, 99
DHCP_OFFSETS = (100, 1021)


@dataclass(frozen=True)
class TestHost:
    """A test host: a network namespace with an address on the test bridge.

    Attributes:
        name: its DNS label (``<name>.test``).
        namespace: its network namespace.
        address: its address on the bridge (in 198.18.4N.0/22).
        link_address: its end of the manager link (198.19.N.x), when it has one.
    """

    __test__ = False  # not a pytest test class

    name: str
    namespace: str
    address: IPv4Address
    link_address: IPv4Address | None = None

    @property
    def fqdn(self) -> str:
        """Its name in the test network's DNS."""
        return f"{self.name}.{DOMAIN}"

    def argv(self, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` on this host."""
        return [IP, "netns", "exec", self.namespace, *argv]


@dataclass(frozen=True)
class SandboxService:
    """The sandbox GitHub running on a test host.

    Attributes:
        host: the test host.
        port: its TCP port.
        token: its admin token.
        url: its base URL, by bridge address: what runners and the manager use (it is in the
            runner download URLs and JIT configs the sandbox hands out).
        name_url: the same by DNS name (runners only; the host never resolves test names).
        link_url: by the manager link address (the manager only).
        process: the server process.
    """

    host: TestHost
    port: int
    token: str
    url: str
    name_url: str
    link_url: str
    process: NamespaceProcess

    @property
    def api_url(self) -> str:
        """The REST root (``<url>/api/v3``)."""
        return f"{self.url}/api/v3"


class TestNet:
    """One closed test network (see the module docstring). Use as a context manager.

    Attributes:
        session: the session id (``tn`` + 4 hex digits): bridge name and name prefix.
        index: N of the bridge subnet 198.18.4N.0/22 and of the links' 198.19.N.0/24.
        state_dir: this session's files (dnsmasq hosts, leases and log; server logs).
        dns: the DHCP/DNS test host.
        dnsmasq: its dnsmasq.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, run_dir: Path = RUN_DIR, lease_time: str = "10m") -> None:
        self.run_dir = run_dir
        self.lease_time = lease_time
        self.session = ""
        self.index = 0
        self.state_dir = run_dir
        self.hosts: dict[str, TestHost] = {}
        self.processes: list[NamespaceProcess] = []
        self._in_process: list[PublicSandbox] = []
        self._lock_handle: IO[str] | None = None
        self._links = 0
        self.dns: TestHost | None = None
        self.dnsmasq: Dnsmasq | None = None

    # ---- life cycle ----------------------------------------------------------------------

    def __enter__(self) -> TestNet:
        """Start the network."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Tear the network down."""
        self.close()

    def start(self) -> TestNet:
        """Create the bridge, the routes of the host and the DHCP/DNS test host."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        alloc = lock(self.run_dir / ".alloc.lock", blocking=True)
        try:
            cleanup_stale(self.run_dir, locked=True)
            self._allocate()
        finally:
            if alloc is not None:
                alloc.close()
        try:
            create = ["lxc", "network", "create", self.bridge, "ipv4.address=none"]
            run([*create, "ipv6.address=none", f"user.testnet.index={self.index}"], timeout=60)
            self.harden()
            for net in (self.subnet, self.link_subnet):
                run([IP, "route", "add", "unreachable", str(net)])
            self.dns = self._add_namespace_host("dns", DNS_OFFSET)
            self.dnsmasq = Dnsmasq(
                self.dns.namespace,
                "eth0",
                self.dns.address,
                subnet=self.subnet,
                dhcp_range=(self._address(DHCP_OFFSETS[0]), self._address(DHCP_OFFSETS[1])),
                state_dir=self.state_dir,
                lease_time=self.lease_time,
            )
            self.dnsmasq.start()
            self.dnsmasq.set_record("dns", self.dns.address)
        except BaseException:
            self.close()
            raise
        return self

    def harden(self) -> None:
        """(Re)apply the bridge's sysctls: no ARP answers, no forwarding, no IPv6.

        Writing ``net.ipv4.ip_forward`` in the host's namespace resets every interface's
        ``forwarding``; LXD does that when it starts a NAT bridge (a unit's ``ghr-`` network in
        the charm tests), so the fixture calls this before each test that uses the network.
        """
        write_sysctls(
            {
                f"net.ipv4.conf.{self.bridge}.arp_ignore": "8",
                f"net.ipv4.conf.{self.bridge}.rp_filter": "1",
                f"net.ipv4.conf.{self.bridge}.forwarding": "0",
                f"net.ipv6.conf.{self.bridge}.disable_ipv6": "1",
            }
        )

    def close(self) -> None:
        """Stop every server, remove namespaces, routes and the bridge.

        Raises:
            NetnsError: something could not be removed (e.g. an instance still uses the
                bridge); the session is then left for ``cleanup_stale``.
        """
        if not self.session:
            return
        for process in self.processes:
            process.stop()
        for server in self._in_process:
            server.stop()
        if self.dnsmasq is not None:
            self.dnsmasq.stop()
        problems = teardown(self.session, self.index)
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None
        if not problems:
            remove_state_dir(self.state_dir)
        session, self.session = self.session, ""
        if problems:
            raise NetnsError(f"test network {session} left behind: {'; '.join(problems)}")

    # ---- addresses -----------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        """The LXD network (and Linux bridge) name."""
        return self.session

    @property
    def subnet(self) -> IPv4Network:
        """The bridge's subnet, 198.18.4N.0/22."""
        return bridge_subnet(self.index)

    @property
    def link_subnet(self) -> IPv4Network:
        """The manager links' range, 198.19.N.0/24."""
        return link_subnet(self.index)

    @property
    def dns_address(self) -> IPv4Address:
        """The DHCP/DNS test host's address."""
        return self._address(DNS_OFFSET)

    def _address(self, offset: int) -> IPv4Address:
        return self.subnet.network_address + offset

    # ---- test hosts and their servers ----------------------------------------------------

    def add_host(self, name: str, *, manager_link: bool = False) -> TestHost:
        """Add a test host ``name`` (DNS ``name.test``) on the bridge.

        Args:
            name: a DNS label, unique in the session.
            manager_link: also link the host's namespace to the host (the manager's side).
        """
        if not HOST_NAME_RE.match(name) or name in self.hosts or self.dnsmasq is None:
            raise ValueError(f"bad or duplicate test host name {name!r} (or net not started)")
        used = {self._offset(h) for h in self.hosts.values()}
        free = [o for o in range(FIRST_HOST_OFFSET, LAST_HOST_OFFSET + 1) if o not in used]
        if not free:
            raise NetnsError("no test host address left")
        host = self._add_namespace_host(name, free[0])
        if manager_link:
            host = self._link_to_manager(host)
            self.hosts[name] = host
        self.dnsmasq.set_record(name, host.address)
        return host

    def spawn(
        self, host: TestHost, argv: list[str], *, name: str = "", port: int | None = None
    ) -> NamespaceProcess:
        """Start ``argv`` on ``host`` (log in the state dir); wait until it listens on ``port``."""
        label = name or f"{host.name}-{Path(argv[0]).name}"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = self.state_dir / f"{label}.log"
        process = NamespaceProcess(label, host.namespace, argv, log, env=env, cwd=REPO_ROOT)
        self.processes.append(process)
        if port is not None:
            try:
                process.wait_listening(port)
            except NetnsError:
                process.stop()
                raise
        return process

    def start_sandbox(
        self, host: TestHost, *, token: str, port: int = 8080, args: tuple[str, ...] = ()
    ) -> SandboxService:
        """Run the sandbox GitHub on ``host``; ``args``: more ``testnet_serve sandbox`` options."""
        argv = [
            sys.executable,
            "-m",
            "harness.testnet_serve",
            "sandbox",
            "--public-host",
            str(host.address),
            "--port",
            str(port),
            "--token",
            token,
            *args,
        ]
        process = self.spawn(host, argv, name=f"{host.name}-sandbox", port=port)
        link = host.link_address or host.address
        return SandboxService(
            host=host,
            port=port,
            token=token,
            url=f"http://{host.address}:{port}",
            name_url=f"http://{host.fqdn}:{port}",
            link_url=f"http://{link}:{port}",
            process=process,
        )

    def start_sandbox_in_process(
        self, host: TestHost, *, port: int = 8080, **options: Any
    ) -> PublicSandbox:
        """Start the sandbox in this process, serving inside ``host``'s namespace.

        Its listening socket and threads live in the test host (see :func:`netns.entered`), so
        ``server.state``, ``faults`` and ``observers`` work as with a loopback sandbox. Its
        ``base_url`` is ``http://<host address>:<port>``; ``stop()`` it (``close`` does too).

        Args:
            host: the test host.
            port: its TCP port.
            options: :class:`sandbox.server.SandboxServer` keyword arguments (token, ...).
        """
        server = PublicSandbox(str(host.address), host=ALL_ADDRESSES, port=port, **options)
        with entered(host.namespace):
            server.start()
        self._in_process.append(server)
        return server

    def start_http(self, host: TestHost, *, port: int = 80, body: str = "ok") -> NamespaceProcess:
        """Run a tiny web server on ``host`` answering every GET with ``body``."""
        argv = [
            sys.executable,
            "-m",
            "harness.testnet_serve",
            "http",
            "--port",
            str(port),
            "--body",
            body,
        ]
        return self.spawn(host, argv, name=f"{host.name}-http", port=port)

    # ---- runners -------------------------------------------------------------------------

    def nic_device(self, name: str = "eth0") -> dict[str, str]:
        """The LXD device that puts an instance on this network (DHCP gives its address)."""
        return {"type": "nic", "network": self.bridge, "name": name}

    def leases(self) -> list[Lease]:
        """The DHCP leases handed out so far."""
        return [] if self.dnsmasq is None else self.dnsmasq.leases()

    def wait_lease(self, hostname: str, timeout: float = 30.0) -> Lease:
        """Wait for the DHCP lease of ``hostname`` (an instance sends its name)."""
        deadline = time.monotonic() + timeout
        while True:
            for lease in self.leases():
                if lease.hostname == hostname:
                    return lease
            if time.monotonic() > deadline:
                raise NetnsError(f"no DHCP lease for {hostname} after {timeout} s")
            time.sleep(0.05)

    # ---- internals -----------------------------------------------------------------------

    def _allocate(self) -> None:
        """Pick a session id and a subnet index nobody uses; take the session's lock."""
        taken = {session_index(d) for d in self.run_dir.iterdir() if SESSION_RE.match(d.name)}
        routed = [
            IPv4Network(r["dst"])
            for r in ip_json(["-4", "route", "show", "table", "all"])
            if r.get("dst", "default") != "default"
        ]
        free = [
            n
            for n in SESSION_INDEXES
            if n not in taken
            and not any(
                net.overlaps(bridge_subnet(n)) or net.overlaps(link_subnet(n)) for net in routed
            )
        ]
        if not free:
            raise NetnsError("no free test subnet in 198.18.0.0/16")
        existing = set(lxd_network_names()) | {d.name for d in self.run_dir.iterdir()}
        while (session := f"tn{secrets.token_hex(2)}") in existing:
            pass
        self.session, self.index = session, free[secrets.randbelow(len(free))]
        self.state_dir = self.run_dir / session
        self.state_dir.mkdir(mode=0o755)
        self._lock_handle = lock(self.state_dir / "lock", blocking=True)
        info = {"session": session, "index": self.index, "pid": os.getpid()}
        (self.state_dir / "session.json").write_text(json.dumps(info))

    def _offset(self, host: TestHost) -> int:
        return int(host.address) - int(self.subnet.network_address)

    def _add_namespace_host(self, name: str, offset: int) -> TestHost:
        namespace = f"{self.session}-{name}"
        host_end = f"{self.session}h{offset}"
        create_namespace(namespace)
        add_veth(host_end, namespace, "eth0", f"{self._address(offset)}/{self.subnet.prefixlen}")
        run([IP, "link", "set", host_end, "master", self.bridge, "up"])
        host = TestHost(name, namespace, self._address(offset))
        self.hosts[name] = host
        return host

    def _link_to_manager(self, host: TestHost) -> TestHost:
        base = self.link_subnet.network_address + 4 * self._links
        self._links += 1
        host_end = f"{self.session}l{self._offset(host)}"
        add_veth(host_end, host.namespace, "mgr0", f"{base + 2}/30")
        run([IP, "addr", "add", f"{base + 1}/30", "dev", host_end])
        run([IP, "link", "set", host_end, "up"])
        run([IP, "route", "add", f"{host.address}/32", "via", str(base + 2), "dev", host_end])
        return TestHost(host.name, host.namespace, host.address, base + 2)


if __name__ == "__main__":
    sys.exit(main())
