"""Fixtures of the integration tests that need a real LXD daemon and the test image.

Outside CI, tests that need LXD are skipped (with the reason) when the daemon or the image is
missing. In CI (``CI`` set) they fail instead: a CI run that silently skips them proves nothing.
Prepare the machine with ``scripts/setup-lxd.sh && scripts/build-lxd-image.sh --test``.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import errors
from lxd.client import LxdClient, LxdInstance
from tests.integration.testnet_fixtures import (  # noqa: F401 - fixtures
    _testnet_closed,
    testnet,
    testnet_sandbox,
)

TEST_IMAGE = os.environ.get("GITHUB_RUNNER_TEST_IMAGE", "github-runner-test")
PREPARE = "scripts/setup-lxd.sh && scripts/build-lxd-image.sh --test"


def _unavailable(reason: str) -> None:
    """Skip outside CI; fail loudly in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"LXD is required in CI: {reason} (run {PREPARE})", pytrace=False)
    pytest.skip(f"{reason}; run {PREPARE} to enable")


@pytest.fixture(scope="session")
def lxd_client() -> LxdClient:
    """A client of the local LXD daemon, with the test image present."""
    client = LxdClient(timeout=120)
    try:
        client.server_info()
    except errors.LXDError as exc:
        _unavailable(f"LXD is not available: {exc}")
    if not client.image_exists(TEST_IMAGE):
        _unavailable(f"LXD image {TEST_IMAGE} is missing")
    return client


@pytest.fixture(scope="session")
def test_image(lxd_client: LxdClient) -> str:
    """The alias of the test image (``GITHUB_RUNNER_TEST_IMAGE``, default github-runner-test)."""
    return TEST_IMAGE


@pytest.fixture
def test_prefix() -> str:
    """A unique instance-name prefix for one test (``itest-<hex>-``)."""
    return f"itest-{secrets.token_hex(3)}-"


@pytest.fixture
def make_instance(lxd_client: LxdClient, test_prefix: str) -> Iterator[Callable[..., LxdInstance]]:
    """Create instances from the test image; delete all with the test's prefix at teardown.

    Teardown lists by prefix, so it also removes what a failed create may have left.
    """

    def make(suffix: str = "c", **kwargs: Any) -> LxdInstance:
        kwargs.setdefault("timeout", 120)
        return lxd_client.create(f"{test_prefix}{suffix}", TEST_IMAGE, **kwargs)

    yield make
    for instance in lxd_client.list(prefix=test_prefix):
        instance.delete(timeout=120)


BROKER_ADDRESS = ("127.0.0.1", 5672)
BROKER_URI = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def broker() -> str:
    """The URI of the RabbitMQ broker on loopback (``scripts/setup-rabbitmq.sh``)."""
    try:
        with socket.create_connection(BROKER_ADDRESS, timeout=2):
            pass
    except OSError:
        reason = "no RabbitMQ on 127.0.0.1:5672 (run sudo scripts/setup-rabbitmq.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"the broker is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return BROKER_URI
