"""The Juju suite: the packed charm on a real controller. Skips cleanly where there is no juju.

Run it where a controller is bootstrapped (``juju bootstrap``) with the packed charm:
``GITHUB_RUNNER_CHARM=./github-runner_ubuntu-24.04-amd64.charm pytest tests/integration/juju``.
Runner tests also need ``GITHUB_RUNNER_TEST_TOKEN`` and ``GITHUB_RUNNER_TEST_PATH`` (a
repository or organisation the token administers) and a machine that can run LXD VMs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import jubilant
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def charm() -> Path:
    """The packed charm (GITHUB_RUNNER_CHARM, or the one charm file at the repository root)."""
    named = os.environ.get("GITHUB_RUNNER_CHARM")
    found = [Path(named)] if named else sorted(ROOT.glob("*.charm"))
    if len(found) != 1 or not found[0].is_file():
        pytest.skip("pack the charm first (charmcraft pack) or set GITHUB_RUNNER_CHARM")
    return found[0].resolve()


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    """A temporary model, destroyed afterwards."""
    with jubilant.temp_model() as model:
        model.wait_timeout = 30 * 60
        yield model
