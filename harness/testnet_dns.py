"""DHCP and DNS of a closed test network: dnsmasq inside a test host's namespace.

dnsmasq answers only on the test host's bridge interface. It has no upstream resolver
(``--no-resolv``, and ``--local=/#/`` makes every name local: an unknown name is NXDOMAIN, never
forwarded), reads neither the host's /etc/hosts nor /etc/resolv.conf, and hands out no default
route (``--dhcp-option=option:router`` without a value), so a DHCP client learns only the test
subnet. Names: every test host as ``<name>.test`` (a hosts file, re-read on SIGHUP) and every
DHCP client under the hostname it sends (``<instance>.test``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from harness.netns import NamespaceProcess, NetnsError

DOMAIN = "test"
DNSMASQ = "dnsmasq"


@dataclass(frozen=True)
class Lease:
    """A DHCP lease dnsmasq handed out.

    Attributes:
        mac: the client's MAC address.
        address: the address it got.
        hostname: the hostname it sent ("" when none).
    """

    mac: str
    address: IPv4Address
    hostname: str


class Dnsmasq:
    """dnsmasq serving DHCP and DNS on one interface of a test host.

    Attributes:
        namespace: the test host's namespace.
        address: the test host's address on the bridge (the DNS server runners get).
        state_dir: where the hosts, lease, pid and log files live.
    """

    def __init__(
        self,
        namespace: str,
        interface: str,
        address: IPv4Address,
        *,
        subnet: IPv4Network,
        dhcp_range: tuple[IPv4Address, IPv4Address],
        state_dir: Path,
        lease_time: str = "10m",
    ) -> None:
        self.namespace = namespace
        self.interface = interface
        self.address = address
        self.subnet = subnet
        self.dhcp_range = dhcp_range
        self.state_dir = state_dir
        self.lease_time = lease_time
        self.hosts_path = state_dir / "dns-hosts"
        self.leases_path = state_dir / "dhcp-leases"
        self.log_path = state_dir / "dnsmasq.log"
        self.process: NamespaceProcess | None = None
        self._records: dict[str, IPv4Address] = {}

    def argv(self) -> list[str]:
        """The dnsmasq command line."""
        first, last = self.dhcp_range
        return [
            DNSMASQ,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--local=/#/",
            "--bind-dynamic",
            f"--interface={self.interface}",
            "--except-interface=lo",
            f"--domain={DOMAIN}",
            "--expand-hosts",
            f"--addn-hosts={self.hosts_path}",
            f"--dhcp-range={first},{last},{self.subnet.netmask},{self.lease_time}",
            "--dhcp-option=option:router",
            f"--dhcp-option=option:dns-server,{self.address}",
            f"--dhcp-option=option:domain-name,{DOMAIN}",
            "--dhcp-authoritative",
            "--dhcp-lease-max=4096",
            "--no-ping",
            f"--dhcp-leasefile={self.leases_path}",
            f"--pid-file={self.state_dir / 'dnsmasq.pid'}",
            f"--log-facility={self.log_path}",
            "--log-dhcp",
            "--log-queries",
        ]

    def start(self, timeout: float = 10.0) -> None:
        """Start dnsmasq and wait until it answers on port 53."""
        self._write_hosts()
        self.leases_path.touch()
        self.process = NamespaceProcess(
            "dnsmasq", self.namespace, self.argv(), self.state_dir / "dnsmasq.out"
        )
        try:
            self.process.wait_listening(53, timeout)
        except NetnsError as exc:
            raise NetnsError(f"{exc}\n{self._log()[-2000:]}") from exc

    def set_record(self, name: str, address: IPv4Address, timeout: float = 5.0) -> None:
        """Serve ``name`` and ``name.test`` as ``address``; return once dnsmasq re-read them."""
        self._records[name] = address
        before = self._log().count(f"read {self.hosts_path}")
        self._write_hosts()
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while self._log().count(f"read {self.hosts_path}") <= before:
            if time.monotonic() > deadline:
                raise NetnsError(f"dnsmasq did not re-read {self.hosts_path}")
            time.sleep(0.02)

    def leases(self) -> list[Lease]:
        """The current DHCP leases."""
        try:
            lines = self.leases_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        leases = []
        for line in lines:
            fields = line.split()
            if len(fields) >= 4:  # expiry mac address hostname [client-id]
                hostname = "" if fields[3] == "*" else fields[3]
                leases.append(Lease(fields[1], IPv4Address(fields[2]), hostname))
        return leases

    def log_text(self) -> str:
        """The log of dnsmasq (DHCP exchanges and DNS queries)."""
        return self._log()

    def stop(self) -> None:
        """Stop dnsmasq."""
        if self.process is not None:
            self.process.stop()

    def _write_hosts(self) -> None:
        lines = [f"{address} {name}.{DOMAIN} {name}" for name, address in self._records.items()]
        tmp = self.hosts_path.with_suffix(".tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines))
        tmp.chmod(0o644)  # dnsmasq re-reads it after dropping privileges
        tmp.replace(self.hosts_path)

    def _log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
