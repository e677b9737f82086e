"""The bounds of the policy service's server (see :mod:`repo_policy.server`). No waitress here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerLimits:
    """Bounds of the policy service's server.

    Attributes:
        connections_per_client: Connections one peer address may hold at once.
        connection_limit: Connections in all (waitress stops accepting beyond it).
        channel_timeout: Seconds a connection may stay idle or half-sent.
        cleanup_interval: Seconds between two sweeps of idle connections.
        max_request_body: Bytes of a request body (413 beyond).
        max_header: Bytes of a request's headers (431 beyond).
        backlog: Connections the kernel queues before they are accepted.
        ident: The server name in the ``Server`` header.
    """

    connections_per_client: int = 16
    connection_limit: int = 500
    channel_timeout: int = 10
    cleanup_interval: int = 2
    max_request_body: int = 1024 * 1024
    max_header: int = 32 * 1024
    backlog: int = 1024
    ident: str = "repo-policy"

    def __post_init__(self) -> None:
        """Check the bounds.

        Raises:
            ValueError: If a bound is not positive or the per-client cap exceeds the total.
        """
        values = (
            self.connections_per_client,
            self.connection_limit,
            self.channel_timeout,
            self.cleanup_interval,
            self.max_request_body,
            self.max_header,
            self.backlog,
        )
        if min(values) <= 0:
            raise ValueError("every server limit must be positive")
        if self.connections_per_client > self.connection_limit:
            raise ValueError("connections_per_client cannot exceed connection_limit")

    def adjustments(self, host: str, port: int, threads: int) -> dict[str, Any]:
        """Return the waitress options these limits set.

        Args:
            host: Address to listen on.
            port: Port to listen on (0: any free one).
            threads: Worker threads.

        Returns:
            Keyword arguments of :class:`waitress.adjustments.Adjustments`.
        """
        return {
            "host": host,
            "port": port,
            "threads": threads,
            "ident": self.ident,
            "connection_limit": self.connection_limit,
            "channel_timeout": self.channel_timeout,
            "cleanup_interval": self.cleanup_interval,
            "max_request_body_size": self.max_request_body,
            "max_request_header_size": self.max_header,
            "backlog": self.backlog,
            "expose_tracebacks": False,
        }
