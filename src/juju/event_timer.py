"""A systemd timer that dispatches a custom charm event (e.g. ``reconcile-runners``).

Every ``interval`` minutes (plus a random delay that spreads units apart), a oneshot service runs
``juju-exec <unit> "JUJU_DISPATCH_PATH=hooks/<event> ./dispatch"`` under ``flock`` (never two
runs at once) and ``timeout`` (a stuck run ends after ``timeout`` minutes).

systemctl is reached through the seam of :mod:`juju.systemd`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    is_active,
    render_unit,
    run_systemctl,
    uninstall,
)

logger = logging.getLogger(__name__)

LOCK_DIR = Path("/run/lock")


class EventTimer:
    """Install, check and remove the timer dispatching one event of one unit.

    Attributes:
        unit_name: The unit (``app/0``) whose event is dispatched.
    """

    def __init__(
        self,
        unit_name: str,
        *,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        lock_dir: Path = LOCK_DIR,
        systemctl: Systemctl = run_systemctl,
    ) -> None:
        """Build the timer manager.

        Args:
            unit_name: The unit name, e.g. ``github-runner/0``.
            unit_dir: Where systemd unit files are written.
            lock_dir: Where the lock files of runs live.
            systemctl: The systemctl seam.
        """
        self.unit_name = unit_name
        self._unit_dir = unit_dir
        self._lock_dir = lock_dir
        self._systemctl = systemctl

    def unit_base_name(self, event_name: str) -> str:
        """Return the systemd unit name (without suffix) of an event's timer.

        Args:
            event_name: The event, e.g. ``reconcile-runners``.

        Returns:
            ``ghr-<app>-<unit>-<event>``.
        """
        return f"ghr-{self.unit_name.replace('/', '-')}-{event_name}"

    def render(
        self, event_name: str, interval_minutes: int, timeout_minutes: int
    ) -> dict[str, str]:
        """Render the service and timer units.

        Args:
            event_name: The event to dispatch.
            interval_minutes: Minutes between two dispatches.
            timeout_minutes: Minutes after which a run is stopped.

        Returns:
            File name -> content, for the ``.service`` and the ``.timer``.

        Raises:
            ValueError: If the interval or timeout are not positive.
        """
        if interval_minutes < 1 or timeout_minutes < 1:
            raise ValueError("the interval and the timeout must be at least one minute")
        base = self.unit_base_name(event_name)
        context = {
            "event": event_name,
            "unit": self.unit_name,
            "service": f"{base}.service",
            "lock_file": str(self._lock_dir / f"{base}.lock"),
            "interval_minutes": interval_minutes,
            "timeout_minutes": timeout_minutes,
            "start_timeout_seconds": timeout_minutes * 60 + 60,
            "first_delay_seconds": 60,
            # Spread the units of an application over a tenth of the interval (max 60 s).
            "random_delay_seconds": min(60, interval_minutes * 6),
        }
        return {
            f"{base}.service": render_unit("dispatch-event.service.j2", context),
            f"{base}.timer": render_unit("dispatch-event.timer.j2", context),
        }

    def ensure_event_timer(
        self, event_name: str, interval_minutes: int, timeout_minutes: int
    ) -> bool:
        """Install the timer, or update it when its settings changed, and make sure it runs.

        Idempotent and cheap when nothing changed (one ``systemctl is-active``).

        Args:
            event_name: The event to dispatch.
            interval_minutes: Minutes between two dispatches.
            timeout_minutes: Minutes after which a run is stopped.

        Returns:
            Whether anything had to be done.

        Raises:
            SubprocessError: If systemctl fails.
        """
        changed = False
        for name, content in self.render(event_name, interval_minutes, timeout_minutes).items():
            path = self._unit_dir / name
            if not path.exists() or path.read_text() != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                changed = True
        timer = f"{self.unit_base_name(event_name)}.timer"
        acted = activate(self._systemctl, timer, changed)
        if changed:
            logger.info("timer %s installed: every %d minutes", timer, interval_minutes)
        return acted

    def disable_event_timer(self, event_name: str) -> None:
        """Stop and remove the timer. Idempotent.

        Args:
            event_name: The event.

        Raises:
            SubprocessError: If systemctl fails while units are installed.
        """
        base = self.unit_base_name(event_name)
        files = [self._unit_dir / f"{base}.timer", self._unit_dir / f"{base}.service"]
        uninstall(self._systemctl, f"{base}.timer", files)

    def is_active(self, event_name: str) -> bool:
        """Return whether the timer is installed and active.

        Args:
            event_name: The event.

        Returns:
            Whether ``systemctl is-active`` says so.

        Raises:
            SubprocessError: If systemctl cannot be run.
        """
        return is_active(self._systemctl, f"{self.unit_base_name(event_name)}.timer")
