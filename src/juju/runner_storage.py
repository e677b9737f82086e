"""Where runner disks live: the attached Juju storage, or a RAM disk sized for the runners."""

from __future__ import annotations

from pathlib import Path

import errors
from config.state import CharmState, RunnerStorage
from juju.host import SystemPort
from runner_type import size_in_bytes

RAM_DISK_PATH = Path("/var/lib/github-runner/ram-disk")
DETACHED_STORAGE_PATH = Path("/var/lib/github-runner/no-storage")  # at stop, storage may be gone


def storage_location(state: CharmState, attached: Path | None) -> Path | None:
    """Return the directory that holds runner disks.

    Args:
        state: The charm state.
        attached: Where the ``runner`` Juju storage is mounted, if attached.

    Returns:
        The RAM disk for ``memory``, else the Juju storage (None: not attached).
    """
    return RAM_DISK_PATH if state.runner_storage == RunnerStorage.MEMORY else attached


def prepare_storage(
    state: CharmState, attached: Path | None, system: SystemPort, unit_name: str
) -> Path:
    """Check the runner storage and mount (or resize) the RAM disk if needed.

    Args:
        state: The charm state.
        attached: Where the ``runner`` Juju storage is mounted, if attached.
        system: The host.
        unit_name: The unit (named in the message when storage is missing).

    Returns:
        The directory that holds runner disks.

    Raises:
        ConfigError: If the Juju storage is missing or memory cannot hold the runners' disks.
    """
    location = storage_location(state, attached)
    if location is None:
        raise errors.ConfigError(
            "runner-storage",
            "juju-storage needs the runner storage, which is not attached: run "
            f"`juju add-storage {unit_name} runner=<size>`",
        )
    if state.runner_storage == RunnerStorage.MEMORY:
        needed = size_in_bytes(state.vm_resources.disk) * max(state.virtual_machines, 1)
        available = system.available_memory(location)
        if needed > available:
            raise errors.ConfigError(
                "runner-storage",
                f"memory needs vm-disk x virtual-machines = {needed >> 20}MiB but only "
                f"{available >> 20}MiB of memory is available: lower vm-disk or "
                "virtual-machines",
            )
        system.ensure_ram_disk(location, needed)
    return location
