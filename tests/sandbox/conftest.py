"""Fixtures: an in-process sandbox whose /api/v3 responses are all checked against the spec."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandbox.server import SandboxServer
from tests.sandbox.sandbox_openapi import Checker, checked
from tests.sandbox.sandbox_testlib import ADMIN_TOKEN, RO_TOKEN, TOTALS


@pytest.fixture
def api_checker() -> Checker:
    """The checker that validates the sandbox fixture's /api/v3 responses."""
    return Checker()


@pytest.fixture
def sandbox(api_checker: Checker) -> Iterator[SandboxServer]:
    """A running sandbox with short runner intervals; fails the test on any spec violation."""
    server = SandboxServer(
        token=ADMIN_TOKEN,
        readonly_token=RO_TOKEN,
        port=0,
        runner_version="2.330.0",
        online_window=3.0,
        runner_poll_wait=1.0,
        runner_heartbeat=0.5,
        fault_seed=1,
    )
    with checked(server, api_checker):
        yield server


@pytest.fixture
def admin() -> requests.Session:
    """An HTTP session with the admin token."""
    session = requests.Session()
    session.headers["Authorization"] = f"token {ADMIN_TOKEN}"
    session.headers["Accept"] = "application/vnd.github+json"
    return session


@pytest.fixture
def readonly() -> requests.Session:
    """An HTTP session with the read-only token."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {RO_TOKEN}"
    return session


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many sandbox responses were validated against the OpenAPI description."""
    if TOTALS["validated"]:
        terminalreporter.write_line(
            f"sandbox: {TOTALS['validated']} /api/v3 responses validated against "
            f"runners-subset.json ({TOTALS['skipped']} outside the subset)"
        )
