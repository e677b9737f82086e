"""Profiles, networks, storage pools and images of the LXD daemon (the LXD seam's resources)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote

import errors
from lxd.network import NetworkInfo, RunnerProfile, validate_network_name
from lxd.transport import LxdTransport
from lxd.types import (
    Device,
    ImageInfo,
    ResourceProfile,
    parse_lxd_time,
)

logger = logging.getLogger(__name__)


class LxdResources:
    """Profiles, networks, storage pools and images of the LXD daemon."""

    def __init__(self, transport: LxdTransport) -> None:
        """Bind to the daemon.

        Args:
            transport: The connection to LXD.
        """
        self._transport = transport

    # -- profiles --

    def profile_exists(self, name: str) -> bool:
        """Whether a profile exists.

        Args:
            name: The profile's name.

        Returns:
            True if it exists.
        """
        return self._transport.exists(f"profiles/{quote(name, safe='')}", "get-profile")

    def create_or_update_profile(
        self,
        name: str,
        config: Mapping[str, str] | None = None,
        devices: Mapping[str, Device] | None = None,
        description: str = "",
    ) -> bool:
        """Make a profile hold exactly this config and these devices.

        Args:
            name: The profile's name.
            config: Its config keys.
            devices: Its devices.
            description: Its description.

        Returns:
            True if something changed, False if it already was so.
        """
        want_config = {k: str(v) for k, v in (config or {}).items()}
        want_devices = {k: dict(v) for k, v in (devices or {}).items()}
        path = f"profiles/{quote(name, safe='')}"
        try:
            current = self._transport.sync("get", path, operation="get-profile")
        except errors.LXDNotFoundError:
            body = {
                "name": name,
                "config": want_config,
                "devices": want_devices,
                "description": description,
            }
            try:
                self._transport.sync("post", "profiles", json=body, operation="create-profile")
            except errors.LXDError:
                # A parallel creation (another runner being created) may have made it first.
                if not self.profile_exists(name):
                    raise
                return self.create_or_update_profile(name, config, devices, description)
            logger.info("created profile %s", name)
            return True
        if (current.get("config") or {}) == want_config and (
            current.get("devices") or {}
        ) == want_devices:
            return False
        body = {"config": want_config, "devices": want_devices, "description": description}
        self._transport.sync("put", path, json=body, operation="update-profile")
        logger.info("updated profile %s", name)
        return True

    def resource_profile(
        self, cpu: int, memory: int | str, disk: int | str | None = None, pool: str = "default"
    ) -> str:
        """Ensure the profile that holds these limits exists and return its name.

        Args:
            cpu: Number of CPUs.
            memory: Memory limit (int = GiB, or e.g. "512MiB").
            disk: Root disk size (int = GiB, or a string), or None for no bound.
            pool: The storage pool of the root disk.

        Returns:
            The profile's name, e.g. ``cpu-2-mem-7GiB-disk-10GiB``.

        Raises:
            ValueError: A limit is invalid.
        """
        profile = ResourceProfile.build(cpu, memory, disk, pool)
        self.create_or_update_profile(
            profile.name, profile.config, profile.devices, "github-runner resource limits"
        )
        return profile.name

    def runner_profile(self, network: str, pool: str = "default") -> str:
        """Ensure the profile giving runners their NIC on ``network`` and root disk on ``pool``.

        LXD filters a runner's source IPv4 addresses only where it runs the network's DHCP (a
        managed bridge with an ``ipv4.address``): see :class:`lxd.types.RunnerProfile`.

        Args:
            network: The LXD network (managed bridge, or any network a NIC can name).
            pool: The storage pool of the root disk.

        Returns:
            The profile's name.

        Raises:
            LXDNotFoundError: The network does not exist.
        """
        info = self.network_info(network)
        profile = RunnerProfile(network, pool, ipv4_filtering=info.lxd_dhcp)
        self.create_or_update_profile(
            profile.name, {}, profile.devices, "github-runner: runner NIC and root disk"
        )
        return profile.name

    def delete_profile(self, name: str) -> None:
        """Delete a profile; a missing one is a no-op.

        Args:
            name: The profile's name.
        """
        try:
            self._transport.sync(
                "delete", f"profiles/{quote(name, safe='')}", operation="delete-profile"
            )
        except errors.LXDNotFoundError:
            return

    # -- networks --

    def network_info(self, name: str) -> NetworkInfo:
        """Describe a network.

        Args:
            name: The network's name.

        Returns:
            Its type, whether LXD manages it, and its config.

        Raises:
            LXDNotFoundError: There is no such network.
        """
        data = self._transport.sync(
            "get", f"networks/{quote(name, safe='')}", operation="get-network"
        )
        return NetworkInfo(
            name=name,
            network_type=str(data.get("type") or ""),
            managed=bool(data.get("managed")),
            config={str(k): str(v) for k, v in (data.get("config") or {}).items()},
        )

    def network_exists(self, name: str) -> bool:
        """Whether a network exists (managed or not).

        Args:
            name: The network's name.

        Returns:
            True if it exists.
        """
        return self._transport.exists(f"networks/{quote(name, safe='')}", "get-network")

    def create_bridge(self, name: str, config: Mapping[str, str], description: str = "") -> bool:
        """Create a managed bridge unless a network of that name exists (left as it is).

        Args:
            name: The network's name (at most 15 characters: it is a Linux interface).
            config: Its config (see :func:`lxd.types.bridge_config`).
            description: Its description.

        Returns:
            True if it was created.

        Raises:
            ValueError: The name cannot be a network.
            LXDError: LXD refused (e.g. an address in use).
        """
        validate_network_name(name)
        if self.network_exists(name):
            return False
        body = {
            "name": name,
            "type": "bridge",
            "config": dict(config),
            "description": description,
        }
        self._transport.sync("post", "networks", json=body, operation="create-network", timeout=60)
        logger.info("created LXD bridge %s", name)
        return True

    def delete_network(self, name: str) -> None:
        """Delete a network; a missing one is a no-op.

        Args:
            name: The network's name.

        Raises:
            LXDError: LXD refused (e.g. an instance or profile still uses it).
        """
        try:
            self._transport.sync(
                "delete", f"networks/{quote(name, safe='')}", operation="delete-network"
            )
        except errors.LXDNotFoundError:
            return

    # -- storage pools --

    def storage_pool_exists(self, name: str) -> bool:
        """Whether a storage pool exists.

        Args:
            name: The pool's name.

        Returns:
            True if it exists.
        """
        return self._transport.exists(f"storage-pools/{quote(name, safe='')}", "get-pool")

    def create_storage_pool(
        self, name: str, driver: str, config: Mapping[str, str] | None = None
    ) -> bool:
        """Create a storage pool unless it exists.

        Args:
            name: The pool's name.
            driver: Its driver ("btrfs", "dir", "zfs"...).
            config: Its config (e.g. ``{"size": "30GiB"}``).

        Returns:
            True if it was created, False if a pool of that name existed.

        Raises:
            LXDError: LXD refused, or the existing pool has another driver.
        """
        try:
            current = self._transport.sync(
                "get", f"storage-pools/{quote(name, safe='')}", operation="get-pool"
            )
        except errors.LXDNotFoundError:
            body = {"name": name, "driver": driver, "config": dict(config or {})}
            self._transport.sync(
                "post", "storage-pools", json=body, operation="create-pool", timeout=120
            )
            logger.info("created storage pool %s (%s)", name, driver)
            return True
        if current.get("driver") != driver:
            raise errors.LXDError(
                f"storage pool {name} exists with driver {current.get('driver')}, not {driver}",
                "create-pool",
            )
        return False

    # -- images --

    def image_info(self, alias: str) -> ImageInfo:
        """Describe the image behind an alias.

        Args:
            alias: The alias.

        Returns:
            The image's fingerprint, dates and properties.

        Raises:
            LXDImageNotFoundError: No image has this alias.
        """
        target = self._transport.sync(
            "get",
            f"images/aliases/{quote(alias, safe='')}",
            operation="image-info",
            not_found=errors.LXDImageNotFoundError,
        )
        fingerprint = str(target.get("target", ""))
        data = self._transport.sync(
            "get",
            f"images/{fingerprint}",
            operation="image-info",
            not_found=errors.LXDImageNotFoundError,
        )
        return ImageInfo(
            alias=alias,
            fingerprint=fingerprint,
            created_at=parse_lxd_time(data.get("created_at")),
            uploaded_at=parse_lxd_time(data.get("uploaded_at")),
            properties={str(k): str(v) for k, v in (data.get("properties") or {}).items()},
            image_type=str(data.get("type") or "container"),
            size=int(data.get("size") or 0),
        )

    def image_exists(self, alias: str) -> bool:
        """Whether an image has this alias.

        Args:
            alias: The alias.

        Returns:
            True if it exists.
        """
        return self._transport.exists(
            f"images/aliases/{quote(alias, safe='')}",
            "image-exists",
            errors.LXDImageNotFoundError,
        )

    def delete_image(self, alias: str) -> None:
        """Delete the image behind an alias; a missing one is a no-op.

        Args:
            alias: The alias.
        """
        try:
            info = self.image_info(alias)
            self._transport.run_operation(
                "delete", f"images/{info.fingerprint}", operation="delete-image"
            )
        except errors.LXDNotFoundError:
            return
