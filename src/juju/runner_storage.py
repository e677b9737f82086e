"""Where runner disks live: the attached Juju storage, or a RAM disk sized for the runners.

Either way the unit's LXD storage pool is made there (``HostSystem.setup_lxd``: a btrfs loop file
of 90 % of the filesystem), and the runners' root disks are on that pool. The space must hold
``vm-disk x`` the most runners the unit may run (``virtual-machines``; in reactive mode the
ceiling, ``max-total-virtual-machines`` when set): otherwise the charm is Blocked on
``runner-storage``.
"""

from __future__ import annotations

from pathlib import Path

import errors
from config.state import CharmState, RunnerStorage
from juju.host import POOL_SHARE_TENTHS, SystemPort
from runner_type import size_in_bytes

RAM_DISK_PATH = Path("/var/lib/github-runner/ram-disk")
DETACHED_STORAGE_PATH = Path("/var/lib/github-runner/no-storage")  # at stop, storage may be gone


def most_runners(state: CharmState) -> int:
    """Return the most runners the unit may run at once.

    Args:
        state: The charm state.

    Returns:
        ``virtual-machines``; in reactive mode ``max-total-virtual-machines`` when set.
    """
    if state.reactive_config is not None and state.max_total_virtual_machines:
        return state.max_total_virtual_machines
    return state.virtual_machines


def _count_option(state: CharmState) -> str:
    """Name the option that sets :func:`most_runners`."""
    if state.reactive_config is not None and state.max_total_virtual_machines:
        return "max-total-virtual-machines"
    return "virtual-machines"


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
        ConfigError: If the Juju storage is missing, or it or memory cannot hold the
            runners' disks (``runner-storage``).
    """
    location = storage_location(state, attached)
    if location is None:
        raise errors.ConfigError(
            "runner-storage",
            "juju-storage needs the runner storage, which is not attached: run "
            f"`juju add-storage {unit_name} runner=<size>`",
        )
    needed = size_in_bytes(state.vm_resources.disk) * max(most_runners(state), 1)
    count = _count_option(state)
    if state.runner_storage == RunnerStorage.MEMORY:
        size = -(-needed * 10 // POOL_SHARE_TENTHS)  # the pool gets 90 % of the RAM disk
        available = system.available_memory(location)
        if size > available:
            raise errors.ConfigError(
                "runner-storage",
                f"memory needs vm-disk x {count} = {needed >> 20}MiB (a RAM disk of "
                f"{size >> 20}MiB) but only {available >> 20}MiB of memory is available: lower "
                f"vm-disk or {count}",
            )
        system.ensure_ram_disk(location, size)
        return location
    space = system.disk_space(location) * POOL_SHARE_TENTHS // 10
    if needed > space:
        raise errors.ConfigError(
            "runner-storage",
            f"juju-storage needs vm-disk x {count} = {needed >> 20}MiB but the runner "
            f"storage holds {space >> 20}MiB for runner disks (90 % of it): add a larger one "
            f"(`juju add-storage {unit_name} runner=<size>`) or lower vm-disk or {count}",
        )
    return location
