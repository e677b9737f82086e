#!/usr/bin/env python3
"""Policy checks per second while a hostile client holds idle connections; token store speed.

The real policy service (``repo_policy.service.build_app`` on the bounded waitress server of
``repo_policy.server``) on 127.0.0.1 asks the sandbox GitHub (in-process, 127.0.0.1) about a
push to a protected branch: per check, one token from ``/one-time-token``, then ``POST /check``
(the service reads the workflow run and the branch protection), each on a new connection as a
runner's curl does. Three phases, in the same run:

- ``0 idle``: nobody else connected;
- ``200 idle, one client``: 200 connections held open from 127.0.0.2 (half of them with a
  half-sent request), all of loopback as the closed test network may not exist yet;
- ``200 idle, 200 clients``: the same from 200 addresses (127.0.1.x), one connection each,
  so that the per-client cap does not apply and only the global bounds protect.

The ratio of each loaded phase to the idle one is printed. A check that fails or times out
(10 s) breaks the run: the exit status is 1 when checks stop.

Then the one-time token store: 10,000 (``--small``: 1,000) tokens issued and consumed, in
memory and in its file (sqlite3, WAL), as tokens per second.

    python benchmarks/policy_starvation.py [--json] [--small]
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from benchmarks._lib.bench import Report, fmt, parse_args, ratio
from repo_policy.service import BackgroundServer, ServiceFiles, build_app
from repo_policy.tokens import OneTimeTokenStore
from sandbox.server import SandboxServer

REPO = "octo/bench"
ADMIN = "ghp_" + "a" * 36
SERVICE_TOKEN = "bench-service-token"  # noqa: S105 - a benchmark's own, not a secret
IDLE = 200
TIMEOUT = 10


@contextlib.contextmanager
def idle(port: int, sources: list[str]) -> Iterator[int]:
    """Hold one idle connection per source address (odd ones with a half-sent request)."""
    held: list[socket.socket] = []
    try:
        for index, source in enumerate(sources):
            sock = socket.socket()
            sock.bind((source, 0))
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", port))
                if index % 2:
                    sock.sendall(b"POST /check HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n")
            except OSError:
                sock.close()
                continue
            held.append(sock)
        yield len(held)
    finally:
        for sock in held:
            sock.close()


def checks(url: str, run_id: int, count: int) -> tuple[float | None, int, str]:
    """Run ``count`` token+check pairs; return (checks per second, done, first failure)."""
    body = {"repository": REPO, "event": "push", "ref": "refs/heads/main", "run_id": run_id}
    auth = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    started = time.perf_counter()
    for done in range(count):
        try:
            token = requests.get(f"{url}/one-time-token", headers=auth, timeout=TIMEOUT)
            answer = requests.post(
                f"{url}/check",
                json=body,
                headers={"Authorization": f"Bearer {token.text}", "Connection": "close"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            return None, done, type(exc).__name__
        if answer.status_code != 200:
            return None, done, f"HTTP {answer.status_code}: {answer.text[:200]}"
    return count / (time.perf_counter() - started), count, ""


def token_rate(count: int, state_file: Path | None) -> float:
    """Issue ``count`` tokens then consume each; return tokens per second."""
    store = OneTimeTokenStore(state_file=state_file, max_tokens=count)
    started = time.perf_counter()
    tokens = [store.issue() for _ in range(count)]
    for token in tokens:
        store.consume(token)
    elapsed = time.perf_counter() - started
    store.close()
    return count / elapsed


def main() -> int:
    """Run the benchmark; the exit status is 1 when checks stopped."""
    args = parse_args(__doc__ or "")
    report = Report("policy_starvation", args.small)
    count = 20 if args.small else 200
    tokens = 1_000 if args.small else 10_000
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(token=ADMIN, port=0) as sandbox:
        files = Path(tmp)
        (files / "service-token").write_text(SERVICE_TOKEN)
        (files / "github-token").write_text(ADMIN)
        (files / "policy.json").write_text(json.dumps({}))

        def control(path: str, payload: dict[str, Any]) -> Any:
            reply = requests.post(f"{sandbox.base_url}/_sandbox{path}", json=payload, timeout=10)
            reply.raise_for_status()
            return reply.json()

        control("/branch-protection", {"repository": REPO, "branch": "main"})
        job = control(
            "/jobs", {"repository": REPO, "event": "push", "ref": "refs/heads/main", "steps": []}
        )
        app = build_app(
            ServiceFiles(
                files / "service-token",
                files / "github-token",
                sandbox.api_url,
                files / "policy.json",
                files / "tokens.sqlite3",
            )
        )
        phases: dict[str, dict[str, Any]] = {}
        with BackgroundServer(app, threads=4) as server:
            checks(server.url, job["run_id"], 3)  # warm-up
            one_client = ["127.0.0.2"] * IDLE
            many_clients = [f"127.0.1.{i}" for i in range(1, IDLE + 1)]
            for name, sources in (
                ("0 idle", []),
                (f"{IDLE} idle, one client", one_client),
                (f"{IDLE} idle, {IDLE} clients", many_clients),
            ):
                with idle(server.port, sources) as held:
                    rate, done, failure = checks(server.url, job["run_id"], count)
                phases[name] = {"held": held, "checks_per_s": rate, "done": done}
                report.check(failure == "", f"checks stopped in '{name}' after {done}: {failure}")
            limits = server.limits
    base = phases["0 idle"]["checks_per_s"]
    table = report.table(
        "Policy checks (token + check) per second", "phase", "idle opened", "checks/s", "ratio"
    )
    for name, row in phases.items():
        row["ratio"] = ratio(row["checks_per_s"], base)
        table.add_row(name, str(row["held"]), fmt(row["checks_per_s"]), fmt(row["ratio"]))
    with tempfile.TemporaryDirectory() as tmp:
        memory = token_rate(tokens, None)
        on_file = token_rate(tokens, Path(tmp) / "tokens.sqlite3")
    store = report.table(f"One-time tokens: {tokens} issued and consumed", "store", "tokens/s")
    store.add_row("in memory (sqlite3)", fmt(memory))
    store.add_row("file (sqlite3, WAL)", fmt(on_file))
    report.figures.update(
        checks=phases,
        checks_per_phase=count,
        limits={
            "connections_per_client": limits.connections_per_client,
            "connection_limit": limits.connection_limit,
            "channel_timeout_s": limits.channel_timeout,
        },
        tokens={"count": tokens, "memory_per_s": memory, "file_per_s": on_file},
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
