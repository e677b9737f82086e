"""Ports of a unit's host services: chosen once, remembered, never another unit's.

Several applications (and units) may share a machine; each runs its own policy service and
metrics exporter. A service's port is the first of its range that no service of any unit on the
machine remembers and that nothing listens on; it is written to ``<root>/<unit>/<service>/port``
and read back ever after, so it survives restarts and what the charm advertised stays true.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from errors import SubprocessError

PORT_FILE = "port"
PORT_SPAN = 1000

PortFree = Callable[[str, int], bool]
"""Answers whether ``(host, port)`` can be listened on."""


def port_is_free(host: str, port: int) -> bool:
    """Return whether a listening socket can bind ``host:port`` (nothing is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def remembered_port(
    root: Path,
    service_dir: Path,
    host: str,
    first: int,
    *,
    port_free: PortFree = port_is_free,
) -> int:
    """Return a service's port: the remembered one, else the first free one, remembered.

    Args:
        root: Where every unit of the machine keeps its services' files
            (``<root>/<unit>/<service>/port``).
        service_dir: This service's directory (its ``port`` file).
        host: The address the service listens on (where a port must be free).
        first: The first candidate; candidates run over :data:`PORT_SPAN` ports.
        port_free: Whether a port can be listened on (a real bind when not given).

    Returns:
        The port.

    Raises:
        SubprocessError: If no port is free.
    """
    path = service_dir / PORT_FILE
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        pass
    taken = _remembered_elsewhere(root, path)
    for port in range(first, first + PORT_SPAN):
        if port not in taken and port_free(host, port):
            _write(path, f"{port}\n")
            return port
    raise SubprocessError([service_dir.name], 1, f"no free port from {first}")


def _remembered_elsewhere(root: Path, own: Path) -> set[int]:
    """The ports every other service of every unit of the machine remembers."""
    ports: set[int] = set()
    for path in root.glob(f"*/*/{PORT_FILE}"):
        if path == own:
            continue
        try:
            ports.add(int(path.read_text(encoding="utf-8").strip()))
        except (OSError, ValueError):
            continue
    return ports


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
