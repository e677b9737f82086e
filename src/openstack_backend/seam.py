"""The OpenStack seam as the core sees it: a typing Protocol and the server view it returns.

:class:`openstack_backend.client.OpenstackClient` is the real implementation (the only code that
imports openstacksdk); ``tests/unit/fakes_openstack.py`` satisfies the same Protocol under mypy.
Every method raises the ``errors.OpenstackError`` family on failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# Nova's server statuses the manager judges by (others are transient: BUILD, REBOOT...).
ACTIVE = "ACTIVE"
ERROR = "ERROR"
SHUTOFF = "SHUTOFF"


@dataclass(frozen=True)
class ServerView:
    """One Nova server as listed (a single list call gives every field but the fault).

    Attributes:
        name: The server name (the runner name).
        id: Nova's id.
        status: Nova's status, e.g. ``ACTIVE``, ``BUILD``, ``ERROR``, ``SHUTOFF``.
        created_at: When Nova created it (UTC), if it says.
        fault: The fault message of a server in ERROR, if any (Nova's detailed listing does
            not carry it: the client reads it for each server in ERROR).
        metadata: The server's metadata (ownership: app and unit).
        tags: The server's tags.
    """

    name: str
    id: str
    status: str
    created_at: datetime | None = None
    fault: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


class OpenstackCloud(Protocol):
    """What the OpenStack runner manager asks the cloud."""

    def list_servers(self, prefix: str) -> list[ServerView]:
        """List the servers whose name starts with ``prefix``: one listing, every page.

        Servers in ERROR also get their fault (one read each; none for the others).

        Args:
            prefix: Name prefix of the servers to keep (the unit's prefix).
        """
        ...  # pragma: no cover

    def create_server(
        self,
        name: str,
        *,
        image: str,
        flavor: str,
        network: str,
        user_data: str,
        metadata: Mapping[str, str],
        tags: tuple[str, ...],
    ) -> ServerView:
        """Ask Nova for a server (it is then BUILD: the call does not wait for ACTIVE).

        Args:
            name: The server name.
            image: The image id.
            flavor: The flavor id.
            network: The network id.
            user_data: The cloud-init user data, as text (the client encodes it).
            metadata: Server metadata.
            tags: Server tags.

        Raises:
            OpenstackQuotaError: If the project's quota forbids it.
            OpenstackBadRequestError: If the cloud refuses the image, flavor or network.
        """
        ...  # pragma: no cover

    def delete_server(self, server: str) -> None:
        """Delete a server by id or name; one already gone is not an error.

        Args:
            server: The server's id or name.
        """
        ...  # pragma: no cover

    def image_id(self, image: str) -> str:
        """Return the id of an image given by name or id.

        Args:
            image: The image name or id.

        Raises:
            OpenstackNotFoundError: If there is no such image.
        """
        ...  # pragma: no cover

    def flavor_id(self, flavor: str) -> str:
        """Return the id of a flavor given by name or id.

        Args:
            flavor: The flavor name or id.

        Raises:
            OpenstackNotFoundError: If there is no such flavor.
        """
        ...  # pragma: no cover

    def network_id(self, network: str) -> str:
        """Return the id of a network given by name or id.

        Args:
            network: The network name or id.

        Raises:
            OpenstackNotFoundError: If there is no such network.
        """
        ...  # pragma: no cover
