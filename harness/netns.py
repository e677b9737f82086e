"""Network namespaces, veth pairs and processes inside namespaces (``ip netns``), for test hosts.

Small wrappers around iproute2 and ``/proc/sys``, used by :mod:`harness.testnet`. Everything
here needs root. Nothing here sends a packet: it only creates and removes interfaces, addresses,
routes and processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IP = "ip"
MAX_IFNAME = 15
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


class NetnsError(RuntimeError):
    """An ip/sysctl command failed, or a process in a namespace did not come up."""


def run(argv: list[str], *, timeout: float = 30, stdin: str | None = None) -> str:
    """Run a command; return its stdout.

    Args:
        argv: the command.
        timeout: seconds.
        stdin: text fed to the command.

    Raises:
        NetnsError: it failed (the message holds its stderr).
    """
    result = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: rc {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def in_namespace(namespace: str, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``namespace``."""
    return [IP, "netns", "exec", namespace, *argv]


def ip_json(args: list[str], namespace: str | None = None) -> list[dict[str, Any]]:
    """``ip -j ARGS`` (in a namespace when given), parsed."""
    prefix = [IP, "-j"] if namespace is None else [IP, "-j", "-n", namespace]
    out = run([*prefix, *args]).strip()
    return list(json.loads(out)) if out else []


def ip_batch(commands: list[str], namespace: str | None = None) -> None:
    """Run several ``ip`` commands in one process (``ip -batch -``)."""
    prefix = [IP] if namespace is None else [IP, "-n", namespace]
    run([*prefix, "-batch", "-"], stdin="\n".join(commands) + "\n")


def check_ifname(name: str) -> str:
    """Return ``name`` if it is a valid interface name (at most 15 characters)."""
    if not name or len(name) > MAX_IFNAME or "/" in name or " " in name:
        raise ValueError(f"bad interface name {name!r} (1-{MAX_IFNAME} characters)")
    return name


def sysctl_path(key: str) -> Path:
    """The /proc/sys file of a sysctl key (``net.ipv4.ip_forward``; interface names kept)."""
    parts = key.split(".")
    if parts[:2] in (["net", "ipv4"], ["net", "ipv6"]) and len(parts) > 4 and parts[2] == "conf":
        # net.ipv4.conf.<ifname>.<key>: the interface name must stay as it is.
        return Path("/proc/sys/net", parts[1], "conf", ".".join(parts[3:-1]), parts[-1])
    return Path("/proc/sys", *parts)


def write_sysctls(values: dict[str, str], namespace: str | None = None) -> None:
    """Set sysctls in the host's namespace (by /proc/sys) or inside ``namespace``."""
    if namespace is None:
        for key, value in values.items():
            sysctl_path(key).write_text(value)
        return
    run(in_namespace(namespace, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())]))


def read_sysctl(key: str, namespace: str | None = None) -> str:
    """Read a sysctl in the host's namespace or inside ``namespace``."""
    if namespace is None:
        return sysctl_path(key).read_text().strip()
    return run(in_namespace(namespace, ["sysctl", "-n", key])).strip()


def namespaces() -> list[str]:
    """Names of the network namespaces (``ip netns list``)."""
    return [str(entry["name"]) for entry in ip_json(["netns", "list"])]


def links() -> list[str]:
    """Names of the host's interfaces."""
    return [str(entry["ifname"]) for entry in ip_json(["link", "show"])]


def addresses(ifname: str, namespace: str | None = None) -> list[str]:
    """Every address (IPv4 and IPv6, any scope) of an interface, as ``addr/prefix``."""
    entries = ip_json(["addr", "show", "dev", ifname], namespace)
    return [
        f"{info['local']}/{info['prefixlen']}"
        for entry in entries
        for info in entry.get("addr_info", [])
    ]


def namespace_pids(namespace: str) -> list[int]:
    """Processes that live in a namespace."""
    try:
        return [int(pid) for pid in run([IP, "netns", "pids", namespace]).split()]
    except NetnsError:
        return []


def kill_namespace_processes(namespace: str, grace: float = 3.0) -> None:
    """SIGTERM every process in the namespace, SIGKILL what is left after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = namespace_pids(namespace)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and namespace_pids(namespace):
            time.sleep(0.05)


def create_namespace(namespace: str) -> None:
    """Create a namespace with loopback up, no forwarding and no IPv6.

    ``net.ipv4.ip_forward=0`` (and ``conf.all.forwarding=0``) makes sure a test host never routes
    between its interfaces (the bridge and a manager link).
    """
    run([IP, "netns", "add", namespace])
    write_sysctls(
        {
            "net.ipv4.ip_forward": "0",
            "net.ipv4.conf.all.forwarding": "0",
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
        },
        namespace,
    )
    ip_batch(["link set lo up"], namespace)


def delete_namespace(namespace: str) -> None:
    """Kill the namespace's processes and delete it (its veth pairs go with it)."""
    kill_namespace_processes(namespace)
    with contextlib.suppress(NetnsError):
        run([IP, "netns", "delete", namespace])


def add_veth(host_end: str, namespace: str, inner_name: str, address: str) -> None:
    """Create a veth pair from the host's namespace into ``namespace``.

    ``host_end`` stays in the host's namespace (down, no IPv6, no address); the other end becomes
    ``inner_name`` in ``namespace`` with ``address`` (``a.b.c.d/len``), up.
    """
    run(
        [
            IP,
            "link",
            "add",
            check_ifname(host_end),
            "type",
            "veth",
            "peer",
            "name",
            check_ifname(inner_name),
            "netns",
            namespace,
        ]
    )
    # Before the link is up: no IPv6 link-local address ever appears on the host end.
    write_sysctls({f"net.ipv6.conf.{host_end}.disable_ipv6": "1"})
    ip_batch([f"addr add {address} dev {inner_name}", f"link set {inner_name} up"], namespace)


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Move the calling thread into ``namespace`` for the block (setns), then back.

    Sockets created inside the block stay in the namespace for their whole life, and so do
    threads started inside it: an in-process server started here serves inside the test host
    while the rest of the process stays in the host's namespace.

    Raises:
        OSError: setns failed.
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def _setns(fd: int) -> None:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")

    with (
        (NETNS_DIR / namespace).open("rb") as target,
        Path("/proc/thread-self/ns/net").open("rb") as home,
    ):
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def delete_link(ifname: str) -> None:
    """Delete a host interface; no error when it is already gone."""
    with contextlib.suppress(NetnsError):
        run([IP, "link", "delete", ifname])


class NamespaceProcess:
    """A server process started inside a namespace, its output in a log file.

    Attributes:
        name: what it is (for messages).
        log_path: where its stdout and stderr go.
        popen: the process (``ip netns exec`` execs the command, so the pid is the server's).
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                in_namespace(namespace, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The server's pid."""
        return self.popen.pid

    def log_text(self) -> str:
        """What the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def listening(self, port: int) -> bool:
        """Whether the process's namespace has a TCP socket listening on ``port``.

        Read from ``/proc/<pid>/net/tcp{,6}``, which shows the process's own namespace: no
        connection is made.
        """
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
        return False

    def wait_listening(self, port: int, timeout: float = 15.0) -> None:
        """Wait until the process listens on ``port``.

        Raises:
            NetnsError: it exited, or did not listen in time (the message holds its log).
        """
        deadline = time.monotonic() + timeout
        while not self.listening(port):
            if self.popen.poll() is not None:
                raise NetnsError(
                    f"{self.name} exited with {self.popen.returncode}: {self.log_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise NetnsError(f"{self.name} not listening on {port}: {self.log_text()[-2000:]}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)
