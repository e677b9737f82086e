"""What the flush-runners, update-runner-bin and update-dependencies actions do, without Juju.

The charm builds :class:`RunnerActions` for an action on an installed unit: ``log`` is the
action's progress log (``event.log``) and ``reconcile`` the charm's reconcile, which also
refreshes the counts the status shows and returns them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from juju.dependencies import Log, refresh_image, update_runner_bin
from juju.manager_port import RunnerManagerPort
from runner_manager_type import LXDFlushMode


class RunnerActions:
    """The actions' work on one runner manager; each returns the action's results."""

    def __init__(
        self,
        manager: RunnerManagerPort,
        log: Log,
        reconcile: Callable[[], dict[str, Any]],
    ) -> None:
        """Bind the work to a manager.

        Args:
            manager: The runner manager of the unit.
            log: The action's progress log.
            reconcile: Reconciles the runners and returns the delta and the counts.
        """
        self._manager = manager
        self._log = log
        self._reconcile = reconcile

    def flush(self, mode: LXDFlushMode) -> dict[str, Any]:
        """Remove runners (per ``mode``), then reconcile.

        Args:
            mode: Which runners go.

        Returns:
            How many were flushed, and the reconcile's results.
        """
        self._log(f"Flushing runners ({mode.name})")
        flushed = self._manager.flush(mode)
        self._log(f"Flushed {flushed} runners; reconciling")
        return {"flushed": flushed, **self._reconcile()}

    def update_runner_bin(self) -> dict[str, Any]:
        """Update the runner application; replace idle runners when it changed.

        Returns:
            The previous and current versions, and whether it changed.
        """
        previous, version, changed = update_runner_bin(self._manager, self._log)
        if changed:
            self._replace_idle()
        return {"previous-version": previous, "version": version, "changed": changed}

    def update_dependencies(self) -> dict[str, Any]:
        """Refresh the runner application and image; replace idle runners when they changed.

        Returns:
            Whether idle runners were replaced.
        """
        _, _, changed = update_runner_bin(self._manager, self._log)
        changed = refresh_image(self._manager, self._log, changed)
        if changed:
            self._replace_idle()
        return {"flush": changed}

    def _replace_idle(self) -> None:
        self._log("Replacing idle runners")
        self._manager.flush(LXDFlushMode.FLUSH_IDLE)
        self._reconcile()
