"""An overall wall-clock deadline for one HTTP exchange made with requests (no PyGithub).

requests and urllib3 only have per-operation socket timeouts: a server that sends one byte just
before each read timeout holds a request for as long as it likes (a byte every 2 s held one
call for 46 s). A :class:`Deadline` is a watchdog for the exchanges its thread makes while it is
entered: the connections the :class:`DeadlineAdapter` hands out register their socket with it,
and when the deadline passes the watchdog shuts those sockets down (``shutdown(SHUT_RDWR)``,
which wakes a thread blocked in ``recv``), so the request fails at once, whatever the server
does. The caller then checks :attr:`Deadline.expired` and treats the exchange as timed out
(an answer cut short may look complete, so it is never trusted).

SOCKS proxies keep urllib3's own connection classes: behind one only the socket timeouts apply.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

import requests.adapters
from urllib3 import connection as urllib3_connection
from urllib3 import connectionpool
from urllib3.poolmanager import PoolManager

_current = threading.local()


class Deadline:
    """Shuts down the sockets its thread's requests use once ``seconds`` have passed.

    Use as a context manager around one exchange; not reentrant.

    Attributes:
        seconds: The deadline, from ``__enter__``.
        expired: Whether the deadline passed while the exchange ran.
    """

    def __init__(self, seconds: float) -> None:
        """Prepare the watchdog (it starts in ``__enter__``).

        Args:
            seconds: The deadline, in seconds (> 0).
        """
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        """Start the watchdog for the current thread's requests."""
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the watchdog."""
        self._timer.cancel()
        _current.deadline = None
        with self._lock:
            self._connections.clear()

    def watch(self, conn: Any) -> None:
        """Register a connection whose socket the watchdog shuts down at the deadline.

        Args:
            conn: An urllib3 connection (its ``sock`` may be set later).

        Raises:
            TimeoutError: If the deadline has already passed.
        """
        with self._lock:
            if self.expired:
                raise TimeoutError(f"deadline of {self.seconds}s passed")
            if conn not in self._connections:
                self._connections.append(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            connections = list(self._connections)
        for conn in connections:
            _shut_down(getattr(conn, "sock", None))


def _shut_down(sock: Any) -> None:
    """Shut a socket down for both directions (a TLS socket through its plain socket)."""
    while sock is not None and not isinstance(sock, socket.socket):
        sock = getattr(sock, "socket", None)  # urllib3's SSLTransport (TLS in TLS)
    if sock is None:
        return
    # socket.socket's own shutdown: SSLSocket.shutdown would drop the TLS object under the
    # reading thread's feet. OSError: already closed.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(conn: Any) -> None:
    deadline: Deadline | None = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


class _WatchedHTTPConnection(urllib3_connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(urllib3_connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _install(manager: PoolManager) -> None:
    manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections obey the :class:`Deadline` of their thread."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager with watched connections (see ``HTTPAdapter``)."""
        super().init_poolmanager(*args, **kwargs)
        _install(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        """Return the manager for a proxy, with watched connections unless it is SOCKS.

        Args:
            proxy: The proxy URL.
            proxy_kwargs: As for ``HTTPAdapter.proxy_manager_for``.
        """
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            _install(manager)
        return manager
