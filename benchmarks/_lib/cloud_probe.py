"""Probes of the OpenStack benchmark: counted cloud calls, first-seen pollers, played runners.

``benchmarks/openstack_bench.py`` uses them; none is code under measurement.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from openstack_backend.client import OpenstackClient
from sandbox.server import SandboxServer


class CountingCloud:
    """An ``OpenstackCloud``: an ``OpenstackClient`` whose calls are counted.

    ``calls`` counts the seam's methods (``list_servers`` is the server listing), ``seconds``
    sums their time; ``http`` counts every HTTP request of the client's openstacksdk session,
    by method and port.
    """

    def __init__(self, client: OpenstackClient) -> None:
        """Wrap ``client`` and hook its session (connects now)."""
        self.client = client
        self.calls: dict[str, int] = {}
        self.http: dict[str, int] = {}
        self.seconds = 0.0
        session = client._conn.session.session  # keystoneauth's requests.Session

        def count(response: Any, *args: Any, **kwargs: Any) -> None:
            port = response.request.url.split("/", 3)[2].rsplit(":", 1)[-1]
            key = f"{response.request.method} :{port}"
            self.http[key] = self.http.get(key, 0) + 1

        session.hooks["response"].append(count)

    def __getattr__(self, name: str) -> Any:
        """Count the seam's calls; pass them on."""
        inner = getattr(self.client, name)
        if not callable(inner):
            return inner

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            began = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began

        return counted

    def totals(self) -> tuple[int, int, float]:
        """Server listings, HTTP requests and seconds spent in the cloud's calls so far."""
        return self.calls.get("list_servers", 0), sum(self.http.values()), self.seconds


class FirstSeen:
    """A poller thread: when each name was first listed in the wanted state."""

    def __init__(self, listing: Callable[[], dict[str, bool]]) -> None:
        """``listing`` returns {name: in the wanted state} for the names listed now."""
        self.listing = listing
        self.began = time.perf_counter()
        self.seen: dict[str, float] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for name, ready in self.listing().items():
                    if ready and name not in self.seen:
                        self.seen[name] = time.perf_counter() - self.began
            except Exception as exc:  # a failed poll is retried, and kept
                self.errors.append(str(exc)[:200])
            self._stop.wait(0.05)

    @contextmanager
    def running(self) -> Iterator[FirstSeen]:
        """Poll while the block runs (the clock starts now)."""
        self.began = time.perf_counter()
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=30)

    def wait(self, count: int, deadline: float) -> bool:
        """Wait until ``count`` names were seen ready (bounded)."""
        end = time.monotonic() + deadline
        while len(self.seen) < count and time.monotonic() < end:
            time.sleep(0.05)
        return len(self.seen) >= count


def speak_as_runners(base_url: str, credentials: list[str], route: str = "/heartbeat") -> None:
    """POST ``route`` of the sandbox's runner protocol once with each runner credential.

    ``/connect`` then ``/heartbeat``: the sandbox keeps a runner online 10 s after its last word.
    """
    for credential in credentials:
        request = urllib.request.Request(  # noqa: S310 - loopback sandbox
            f"{base_url}/_runner{route}",
            data=b"{}",
            method="POST",
            headers={
                "Authorization": f"RunnerCredential {credential}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass


def play_runners(sandbox: SandboxServer, prefix: str, route: str = "/heartbeat") -> int:
    """Play the runners a fake-driver cloud does not run: each record with ``prefix`` is alive.

    Over the sandbox's runner protocol, with each record's credential (``/connect`` first,
    then ``/heartbeat``: the sandbox keeps a runner online 10 s after it was heard from).

    Returns:
        How many records spoke.
    """
    with sandbox.state.lock:
        credentials = [
            r.credential for r in sandbox.state.runners.values() if r.name.startswith(prefix)
        ]
    speak_as_runners(sandbox.base_url, credentials, route)
    return len(credentials)


def rest_requests(sandbox: SandboxServer, reset: bool = False) -> int:
    """GitHub REST requests the sandbox served since the last reset (0 after a reset).

    Args:
        sandbox: The sandbox.
        reset: Reset the counters instead of reading them.
    """
    path = "/stats/reset" if reset else "/stats"
    request = urllib.request.Request(  # noqa: S310 - loopback sandbox
        f"{sandbox.base_url}/_sandbox{path}", method="POST" if reset else "GET"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        raw = response.read()
    if reset:
        return 0
    counts: dict[str, int] = json.loads(raw)["requests"]
    return sum(n for key, n in counts.items() if not key.split(" ", 1)[1].startswith("/_"))
