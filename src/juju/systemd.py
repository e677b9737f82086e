"""systemd as the charm drives it: the systemctl seam, its real runner, and unit files.

systemctl is reached through :data:`Systemctl`: tests pass a fake, since systemd does not run
everywhere the tests do. The reconcile timer (``event_timer``) and the policy service
(``policy_host``) install, start and remove their units with the helpers here.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from errors import SubprocessError
from manager.templates import shared_template_environment

logger = logging.getLogger(__name__)

SYSTEMD_UNIT_DIR = Path("/etc/systemd/system")
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


def require(systemctl: Systemctl, args: Sequence[str]) -> None:
    """Run systemctl and require success.

    Args:
        systemctl: The systemctl seam.
        args: The arguments.

    Raises:
        SubprocessError: If it fails.
    """
    returncode = systemctl(args)
    if returncode != 0:
        raise SubprocessError(["systemctl", *args], returncode)


def is_active(systemctl: Systemctl, unit: str) -> bool:
    """Return whether ``systemctl is-active`` says the unit is active.

    Args:
        systemctl: The systemctl seam.
        unit: The unit, with its suffix (``x.timer``).

    Returns:
        Whether it is.
    """
    return systemctl(["is-active", "--quiet", unit]) == 0


def activate(systemctl: Systemctl, unit: str, changed: bool) -> bool:
    """Make an installed unit run: restart it when its files changed, else start it if dead.

    Idempotent and cheap when nothing changed (one ``systemctl is-active``).

    Args:
        systemctl: The systemctl seam.
        unit: The unit, with its suffix.
        changed: Whether its unit file or what it reads at start was rewritten.

    Returns:
        Whether anything had to be done.

    Raises:
        SubprocessError: If systemctl fails.
    """
    if changed:
        require(systemctl, ["daemon-reload"])
        require(systemctl, ["enable", unit])
        require(systemctl, ["restart", unit])
        return True
    if not is_active(systemctl, unit):
        require(systemctl, ["enable", "--now", unit])
        logger.info("%s was not active: started", unit)
        return True
    return False


def uninstall(systemctl: Systemctl, unit: str, files: Sequence[Path]) -> bool:
    """Stop and disable a unit and remove its files. Idempotent.

    Args:
        systemctl: The systemctl seam.
        unit: The unit to stop, with its suffix.
        files: Its unit files.

    Returns:
        Whether anything was installed.

    Raises:
        SubprocessError: If the daemon reload fails while files were installed.
    """
    if not any(path.exists() for path in files):
        return False
    # A stopped or unknown unit is fine: only the removal below must succeed.
    systemctl(["disable", "--now", unit])
    for path in files:
        path.unlink(missing_ok=True)
    require(systemctl, ["daemon-reload"])
    logger.info("%s removed", unit)
    return True


def _templates() -> jinja2.Environment:
    """The charm's template environment, with the systemd escaping filters."""
    return shared_template_environment()


def render_unit(template: str, context: Mapping[str, Any]) -> str:
    """Render a systemd unit from the charm's templates.

    Args:
        template: The template file name in ``templates/``.
        context: Its variables (every one it uses must be given).

    Returns:
        The unit file's content.
    """
    return _templates().get_template(template).render(context)
