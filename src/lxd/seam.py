"""The LXD seam as the core sees it: typing Protocols, no pylxd, no I/O.

Only what the core (``runner.py``, ``runner_manager.py``, ``artifacts/runner_image.py``) calls
is here. :class:`lxd.client.LxdClient` satisfies :class:`LxdCloud` (mypy checks it in
:mod:`lxd`), and so does the unit tests' fake.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from lxd.types import Device, ExecResult, ImageInfo, InstanceStatus, InstanceType


class LxdInstanceFiles(Protocol):
    """Files of one instance."""

    def push(
        self, path: str, content: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        """Write a file in the instance, replacing any file there."""

    def pull(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a regular file from the instance, refusing one larger than ``max_bytes``."""


class LxdInstanceHandle(Protocol):
    """One instance: a snapshot of its description, and what can be done to it."""

    @property
    def name(self) -> str:
        """The instance's name."""

    @property
    def last_status(self) -> InstanceStatus:
        """Its status when it was listed or last refreshed (no API call)."""

    @property
    def created_at(self) -> datetime | None:
        """When it was created (UTC), if LXD knows."""

    @property
    def config(self) -> Mapping[str, str]:
        """Its own (non-expanded) config at the last load."""

    @property
    def files(self) -> LxdInstanceFiles:
        """Its files."""

    def refresh(self) -> LxdInstanceHandle:
        """Reload the snapshot; return the instance."""

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait, with a deadline, until the instance has booted."""

    def wait_address(self, nic: str, timeout: float = 60.0) -> str:
        """Wait until the interface ``nic`` has an IPv4 address (its DHCP lease); return it."""

    def set_config(self, values: Mapping[str, str | None]) -> None:
        """Set (or, with None, unset) config keys."""

    def add_device(self, name: str, device: Device) -> None:
        """Add (or replace) a device."""

    def execute(
        self,
        cmd: list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: int | None = None,
        timeout: float | None = None,
        secret_args: Iterable[str] = (),
        check: bool = False,
    ) -> ExecResult:
        """Run a command; ``secret_args`` never appear in logs or errors."""

    def stop(self, *, force: bool = False) -> None:
        """Stop the instance (LXD deletes an ephemeral one); a stopped one is a no-op."""

    def delete(self) -> None:
        """Delete the instance; a missing one is a no-op."""


class LxdCloud(Protocol):
    """The LXD daemon: instances, the runners' profiles (NIC, root pool, limits), images."""

    def create(
        self,
        name: str,
        image_alias: str,
        *,
        instance_type: InstanceType = "container",
        profiles: Iterable[str] = ("default",),
        config: Mapping[str, str] | None = None,
        devices: Mapping[str, Device] | None = None,
        ephemeral: bool = True,
        start: bool = True,
        wait: bool = True,
    ) -> LxdInstanceHandle:
        """Create an instance from a local image (and start it); nothing half-built is left."""

    def copy(
        self,
        source: str,
        name: str,
        *,
        profiles: Iterable[str] | None = None,
        config: Mapping[str, str] | None = None,
        devices: Mapping[str, Device] | None = None,
    ) -> LxdInstanceHandle:
        """Create and start an ephemeral instance as a copy of a stopped template instance."""

    def get(self, name: str) -> LxdInstanceHandle:
        """Fetch an instance (:class:`errors.LXDNotFoundError` if there is none)."""

    def exists(self, name: str) -> bool:
        """Whether an instance exists."""

    def wait_instances_settled(self, prefix: str, timeout: float) -> list[str]:
        """Wait (bounded) until no operation changes instances with ``prefix``."""

    def resource_profile(
        self, cpu: int, memory: int | str, disk: int | str | None = None, pool: str = "default"
    ) -> str:
        """Ensure the profile that holds these limits exists and return its name."""

    def runner_profile(self, network: str, pool: str = "default") -> str:
        """Ensure the profile of the runners' NIC on ``network`` and root disk on ``pool``."""

    def image_exists(self, alias: str) -> bool:
        """Whether an image has this alias."""

    def image_info(self, alias: str) -> ImageInfo:
        """Describe the image behind an alias (:class:`errors.LXDImageNotFoundError`)."""

    # Last: a method named ``list`` shadows the builtin for the annotations after it.
    def list(self, prefix: str | None = None) -> Sequence[LxdInstanceHandle]:
        """The instances whose names start with ``prefix``, sorted by name."""
