"""The runner binary and image the charm keeps current: at install and in the update actions.

Progress goes to ``log`` (the unit status during a hook, ``event.log`` in an action).
"""

from __future__ import annotations

from collections.abc import Callable

from juju.manager_port import RunnerManagerPort

Log = Callable[[str], None]


def ensure_dependencies(manager: RunnerManagerPort, log: Log, first_install: bool) -> None:
    """Download the runner binary and build the image if missing; schedule rebuilds once.

    Args:
        manager: The runner manager.
        log: Where progress goes.
        first_install: Whether the unit is being set up (the rebuild schedule is installed).
    """
    if not manager.check_runner_bin():
        log("Downloading the runner binary")
        manager.update_runner_bin(manager.get_latest_runner_bin_url())
    if not manager.has_runner_image():
        log("Building the runner image")
        manager.build_runner_image()
    if first_install:
        manager.schedule_build_runner_image()


def update_runner_bin(manager: RunnerManagerPort, log: Log) -> tuple[str, str, bool]:
    """Download the latest runner application if it differs from the current one.

    Args:
        manager: The runner manager.
        log: Where progress goes.

    Returns:
        The previous version (``none`` if there was none), the latest one, whether it changed.
    """
    previous = manager.runner_bin_version() or "none"
    latest = manager.get_latest_runner_bin_url()
    changed = latest.version != previous
    if changed:
        log(f"Updating the runner binary from {previous} to {latest.version}")
        manager.update_runner_bin(latest)
    return previous, latest.version, changed


def refresh_image(manager: RunnerManagerPort, log: Log, binary_changed: bool) -> bool:
    """Rebuild the runner image when the binary changed or the image is missing.

    Args:
        manager: The runner manager.
        log: Where progress goes.
        binary_changed: Whether the runner binary was just updated.

    Returns:
        Whether the image was rebuilt.
    """
    if binary_changed or not manager.has_runner_image():
        log("Rebuilding the runner image")
        manager.build_runner_image()
        return True
    return False
