"""The policy service's waitress server, bounded so that no client can starve the others.

A job runs as root on its runner and can open connections to the service; with waitress'
defaults (100 connections in all, idle ones closed after 120 s) about 100 half-open
connections blocked ``/health`` and every other runner's check. Here:

* waitress' own options bound what waitress bounds: the connections in all
  (``connection_limit``), how long a connection may sit idle or half-sent (``channel_timeout``,
  checked every ``cleanup_interval``), the size of a request's headers and body
  (``max_request_header_size``, ``max_request_body_size``: 431 and 413, answered by waitress
  before the app runs) and the listen backlog.
* a per-client cap that waitress lacks: when a peer address already holds
  ``connections_per_client`` connections, its next one is closed as soon as it is accepted.
  It is a hook in waitress' accept (:class:`ClientCappedServer`), not WSGI middleware: idle and
  half-sent connections never become requests, so middleware would never see them.

The cap is per peer address: runners reaching the service over their own NIC each have theirs;
clients that share one address (several runners behind one NAT or one loopback proxy) share one
cap.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import TcpWSGIServer

from repo_policy.server_limits import ServerLimits

logger = logging.getLogger(__name__)


class ClientCappedServer(TcpWSGIServer):  # type: ignore[misc]  # waitress ships no types
    """A waitress TCP server that closes a peer's connections beyond its cap on accept."""

    def __init__(
        self, application: Callable[..., Any], limits: ServerLimits, adj: Adjustments
    ) -> None:
        """Bind (and listen) at once.

        Args:
            application: The WSGI application.
            limits: The bounds (the per-client cap is read here).
            adj: The waitress adjustments (from :meth:`ServerLimits.adjustments`).
        """
        self.limits = limits
        self._refused = 0
        self._last_report = 0.0
        super().__init__(application, adj=adj)

    def handle_accept(self) -> None:
        """Accept one connection; close it at once when its peer holds its cap already."""
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        peer = addr[0] if isinstance(addr, tuple) else str(addr)
        held = sum(
            1
            for channel in list(self.active_channels.values())
            if isinstance(channel.addr, tuple) and channel.addr[0] == peer
        )
        if held >= self.limits.connections_per_client:
            self._refuse(conn, peer)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def _refuse(self, conn: socket.socket, peer: str) -> None:
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # with SO_LINGER 0: a reset, no TIME_WAIT left behind
        self._refused += 1
        now = time.monotonic()
        if now - self._last_report >= 60:
            logger.warning(
                "closed %d connection(s) beyond the cap of %d per client (last from %s)",
                self._refused,
                self.limits.connections_per_client,
                peer,
            )
            self._refused, self._last_report = 0, now


def create_server(
    app: Callable[..., Any],
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 4,
    limits: ServerLimits | None = None,
) -> ClientCappedServer:
    """Build the bounded server (bound and listening; serve with ``server.run()``).

    Args:
        app: The WSGI application.
        host: Address to listen on.
        port: Port to listen on (0: any free one).
        threads: Worker threads.
        limits: The bounds (defaults: :class:`ServerLimits`).

    Returns:
        The server.
    """
    limits = limits or ServerLimits()
    adj = Adjustments(**limits.adjustments(host, port, threads))
    return ClientCappedServer(app, limits, adj)
