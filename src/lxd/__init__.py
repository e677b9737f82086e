"""The LXD seam: the only part of the project that imports pylxd.

The face of the part: import from here. Its modules, each one thing:

- :mod:`lxd.seam`: the Protocols the core is typed with (:class:`LxdCloud`,
  :class:`LxdInstanceHandle`, :class:`LxdInstanceFiles`); no pylxd.
- :mod:`lxd.types`: plain values and pure helpers (statuses, devices, sizes, secrets hiding).
- :mod:`lxd.network`: the runner network: :class:`RunnerProfile` (the runner NIC, the one place
  it is defined), the unit's bridge name and config.
- :mod:`lxd.transport`: the connection (pylxd), timeouts, errors, operations, the fast exec.
- :mod:`lxd.client`: :class:`LxdClient`, the daemon: instances, and the resources below.
- :mod:`lxd.instance`, :mod:`lxd.files`, :mod:`lxd.waiting`: one instance, its files, polling.
- :mod:`lxd.resources`: profiles, networks, storage pools and images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxd.client import LxdClient
from lxd.files import LxdFiles
from lxd.instance import LxdInstance
from lxd.network import (
    RUNNER_NIC,
    NetworkInfo,
    RunnerProfile,
    bridge_config,
    unit_resource_name,
    validate_network_name,
)
from lxd.resources import LxdResources
from lxd.seam import LxdCloud, LxdInstanceFiles, LxdInstanceHandle
from lxd.transport import DEFAULT_TIMEOUT, LxdTransport
from lxd.types import (
    HIDDEN,
    Device,
    ExecResult,
    ImageInfo,
    InstanceStatus,
    InstanceType,
    ResourceProfile,
    disk_device,
    display_command,
    hide_secrets,
    host_ids,
    matches_filter,
    parse_lxd_time,
    parse_size,
    validate_instance_name,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "HIDDEN",
    "RUNNER_NIC",
    "Device",
    "ExecResult",
    "ImageInfo",
    "InstanceStatus",
    "InstanceType",
    "LxdClient",
    "LxdCloud",
    "LxdFiles",
    "LxdInstance",
    "LxdInstanceFiles",
    "LxdInstanceHandle",
    "LxdResources",
    "LxdTransport",
    "NetworkInfo",
    "ResourceProfile",
    "RunnerProfile",
    "bridge_config",
    "disk_device",
    "display_command",
    "hide_secrets",
    "host_ids",
    "matches_filter",
    "parse_lxd_time",
    "parse_size",
    "unit_resource_name",
    "validate_instance_name",
    "validate_network_name",
]

if TYPE_CHECKING:  # mypy proves here that the real classes satisfy the seam's Protocols
    _CLOUD: LxdCloud = LxdClient()
    _INSTANCE: LxdInstanceHandle = LxdInstance(LxdTransport(), {"name": "conformance"})
