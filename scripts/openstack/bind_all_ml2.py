"""TEST INFRASTRUCTURE ONLY: an ML2 mechanism driver that binds every port.

scripts/setup-openstack.sh runs neutron-server with no agents (no OVS, no linuxbridge, no DHCP).
Without an agent no mechanism driver can bind a port, and nova's boot fails with a binding
failure. This driver binds each port to the first segment offered, with VIF type "other" and
status ACTIVE, which is all nova's fake compute driver needs. It is registered for neutron under
the entry point `neutron.ml2.mechanism_drivers: github_runner_bind_all`. Never use it outside
this test control plane.

Importing it also imports neutron's port-forwarding model: with no router service plugin that
model is never loaded, and queries on ports then fail with
`AttributeError: ... Port has no attribute 'port_forwardings'`.
"""

from __future__ import annotations

from typing import Any

from neutron.db.models import port_forwarding  # noqa: F401  (see the module docstring)
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    """Bind every port to its first segment (test control plane only)."""

    def initialize(self) -> None:
        """Nothing to set up."""

    def bind_port(self, context: Any) -> None:
        """Bind the port to the first segment offered.

        Args:
            context: neutron's PortContext of the binding attempt.
        """
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OTHER, {}, status="ACTIVE")
            return
