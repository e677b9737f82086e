"""Helpers shared by the charm event tests: a deployed unit, config changes, flush records."""

from __future__ import annotations

from ops import testing

from charm import GithubRunnerCharm
from runner_manager_type import LXDFlushMode
from tests.unit.fakes_charm import (
    FakeRunnerManager,
)

NEW_TOKEN = "ghp_" + "b" * 36
ACTIVE = testing.ActiveStatus("1 runners: 1 idle, 0 busy")


def deployed(ctx: testing.Context[GithubRunnerCharm], state: testing.State) -> testing.State:
    """Run install, config-changed and start: a deployed unit."""
    for event in (ctx.on.install(), ctx.on.config_changed(), ctx.on.start()):
        state = ctx.run(event, state)
    return state


def with_config(state: testing.State, **config: str | int | float | bool) -> testing.State:
    """Return ``state`` with options changed."""
    return testing.State(
        config={**state.config, **config},
        storages=state.storages,
        stored_states=state.stored_states,
        secrets=state.secrets,
        relations=state.relations,
    )


def flushes(manager: FakeRunnerManager) -> list[tuple[LXDFlushMode, str, str]]:
    """Return the flushes: mode, token and path of the manager that flushed."""
    return [(c.args[0], c.token, c.path) for c in manager.calls if c.name == "flush"]
