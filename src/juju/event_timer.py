"""A systemd timer that dispatches a custom charm event (e.g. ``reconcile-runners``).

Every ``interval`` minutes (plus a random delay that spreads units apart), a oneshot service runs
``juju-exec <unit> "JUJU_DISPATCH_PATH=hooks/<event> ./dispatch"`` under ``flock`` (never two
runs at once) and ``timeout`` (a stuck run ends after ``timeout`` minutes).

systemctl is reached through a seam (:class:`Systemctl`): tests pass a fake, since systemd does
not run everywhere the tests do.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import jinja2

from errors import SubprocessError
from paths import TEMPLATES_DIR

logger = logging.getLogger(__name__)

SYSTEMD_UNIT_DIR = Path("/etc/systemd/system")
LOCK_DIR = Path("/run/lock")
SYSTEMCTL_TIMEOUT_SECONDS = 60

Systemctl = Callable[[Sequence[str]], int]
"""Runs ``systemctl <args>`` and returns its exit code; raises SubprocessError if it cannot."""


def run_systemctl(args: Sequence[str]) -> int:
    """Run systemctl.

    Args:
        args: The arguments after ``systemctl``.

    Returns:
        The exit code.

    Raises:
        SubprocessError: If systemctl cannot be run or times out.
    """
    cmd = ["/usr/bin/systemctl", *args]
    try:
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubprocessError(cmd, -1, str(exc)) from exc
    if result.returncode != 0:
        logger.debug("systemctl %s: rc %d: %s", " ".join(args), result.returncode, result.stderr)
    return result.returncode


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
        self._jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            autoescape=False,  # noqa: S701 -- systemd units, not HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

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
            f"{base}.service": self._jinja.get_template("dispatch-event.service.j2").render(
                context
            ),
            f"{base}.timer": self._jinja.get_template("dispatch-event.timer.j2").render(context),
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
        if changed:
            self._check(["daemon-reload"])
            self._check(["enable", timer])
            self._check(["restart", timer])
            logger.info("timer %s installed: every %d minutes", timer, interval_minutes)
            return True
        if not self.is_active(event_name):
            self._check(["enable", "--now", timer])
            logger.info("timer %s was not active: started", timer)
            return True
        return False

    def disable_event_timer(self, event_name: str) -> None:
        """Stop and remove the timer. Idempotent.

        Args:
            event_name: The event.

        Raises:
            SubprocessError: If systemctl fails while units are installed.
        """
        base = self.unit_base_name(event_name)
        paths = [self._unit_dir / f"{base}.timer", self._unit_dir / f"{base}.service"]
        if not any(path.exists() for path in paths):
            return
        # A stopped or unknown unit is fine: only the removal below must succeed.
        self._systemctl(["disable", "--now", f"{base}.timer"])
        for path in paths:
            path.unlink(missing_ok=True)
        self._check(["daemon-reload"])
        logger.info("timer %s removed", f"{base}.timer")

    def is_active(self, event_name: str) -> bool:
        """Return whether the timer is installed and active.

        Args:
            event_name: The event.

        Returns:
            Whether ``systemctl is-active`` says so.

        Raises:
            SubprocessError: If systemctl cannot be run.
        """
        return (
            self._systemctl(["is-active", "--quiet", f"{self.unit_base_name(event_name)}.timer"])
            == 0
        )

    def _check(self, args: list[str]) -> None:
        """Run systemctl and require success.

        Args:
            args: The arguments.

        Raises:
            SubprocessError: If it fails.
        """
        returncode = self._systemctl(args)
        if returncode != 0:
            raise SubprocessError(["systemctl", *args], returncode)
