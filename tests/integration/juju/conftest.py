"""The Juju suite: the packed charm on a real controller. Skips cleanly where there is no juju.

Run it where a controller is bootstrapped (``juju bootstrap``), after ``make pack`` (which
writes ``github-runner_ubuntu@24.04-amd64.charm`` at the repository root):
``pytest tests/integration/juju``; ``GITHUB_RUNNER_CHARM=<file>`` picks another packed charm.
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


PACKED = ROOT / "github-runner_ubuntu@24.04-amd64.charm"  # what `make pack` writes


@pytest.fixture(scope="session")
def charm() -> Path:
    """The packed charm: GITHUB_RUNNER_CHARM, or the one `make pack` writes."""
    found = Path(os.environ.get("GITHUB_RUNNER_CHARM") or PACKED)
    if not found.is_file():
        pytest.skip(f"pack the charm first (make pack) or set GITHUB_RUNNER_CHARM: no {found}")
    return found.resolve()


@pytest.fixture(scope="module")
def juju() -> Iterator[jubilant.Juju]:
    """A temporary model, destroyed afterwards."""
    with jubilant.temp_model() as model:
        model.wait_timeout = 30 * 60
        yield model
