"""Fixtures shared by the charm's unit tests: the charm run with fakes at its seams."""

from __future__ import annotations

import pytest
from ops import testing

from charm import GithubRunnerCharm
from tests.unit.fakes_charm import FakeRunnerManager, FakeSystem, make_context


@pytest.fixture
def manager() -> FakeRunnerManager:
    """A fake runner manager reporting one idle runner (test modules may override it)."""
    fake = FakeRunnerManager()
    fake.with_runners(idle=1)
    return fake


@pytest.fixture
def system() -> FakeSystem:
    """A fake host."""
    return FakeSystem()


@pytest.fixture
def ctx(manager: FakeRunnerManager, system: FakeSystem) -> testing.Context[GithubRunnerCharm]:
    """The charm with the fakes at its seams."""
    return make_context(manager, system)
