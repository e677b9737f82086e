"""Types of the LXD seam (:mod:`lxd`): plain values, no I/O, no pylxd."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal

InstanceType = Literal["container", "virtual-machine"]
"""The kinds of LXD instances."""

Device = dict[str, str]
"""An LXD device: its ``type`` and the type's keys, every value a string."""

_SIZE = re.compile(r"^[1-9][0-9]*(KiB|MiB|GiB|TiB)$")


class InstanceStatus(str, Enum):
    """The status LXD reports for an instance."""

    RUNNING = "Running"
    STOPPED = "Stopped"
    STARTING = "Starting"
    STOPPING = "Stopping"
    FROZEN = "Frozen"
    ERROR = "Error"
    UNKNOWN = "Unknown"

    @classmethod
    def from_lxd(cls, value: str) -> InstanceStatus:
        """Map LXD's status string to a member; anything unexpected is UNKNOWN.

        Args:
            value: The ``status`` field of an LXD instance, e.g. "Running".

        Returns:
            The matching member.
        """
        for member in cls:
            if member.value.lower() == value.strip().lower():
                return member
        return cls.UNKNOWN


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a command run in an instance.

    Attributes:
        exit_code: The command's exit code (LXD reports 127 when it was not found, 126 when it
            is not executable, 128+N when killed by signal N).
        stdout: Its standard output, decoded as UTF-8 (undecodable bytes replaced).
        stderr: Its standard error, decoded likewise.
    """

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether the command exited with 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class ImageInfo:
    """An image in the LXD image store.

    Attributes:
        alias: The alias it was looked up by.
        fingerprint: Its full sha256 fingerprint.
        created_at: When it was built (LXD's ``created_at``), UTC; None if LXD does not know.
        uploaded_at: When it was imported into this LXD, UTC; None if LXD does not know.
        properties: Its properties (os, release, description and the build's own keys).
        image_type: "container" or "virtual-machine".
        size: Its size in bytes.
    """

    alias: str
    fingerprint: str
    created_at: datetime | None
    uploaded_at: datetime | None
    properties: dict[str, str] = field(default_factory=dict)
    image_type: str = "container"
    size: int = 0


def parse_size(size: int | str) -> str:
    """Normalise a size to LXD's binary-unit notation.

    Args:
        size: An int (GiB) or a string such as "512MiB" or "10GiB".

    Returns:
        The size as LXD takes it, e.g. "10GiB".

    Raises:
        ValueError: The size is not positive or has no binary unit.
    """
    if isinstance(size, bool):
        raise ValueError(f"invalid size {size!r}")
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        return f"{size}GiB"
    text = size.strip()
    if not _SIZE.match(text):
        raise ValueError(f"invalid size {size!r}: use an integer with KiB, MiB, GiB or TiB")
    return text


@dataclass(frozen=True)
class ResourceProfile:
    """The limits of a runner, as an LXD profile named after them.

    Attributes:
        cpu: Number of CPUs (``limits.cpu``).
        memory: Memory limit, e.g. "7GiB" (``limits.memory``).
        disk: Root disk size, e.g. "10GiB"; None leaves the root disk unbounded.
        pool: The storage pool of the root disk.
    """

    cpu: int
    memory: str
    disk: str | None = None
    pool: str = "default"

    @classmethod
    def build(
        cls, cpu: int, memory: int | str, disk: int | str | None = None, pool: str = "default"
    ) -> ResourceProfile:
        """Validate and normalise limits into a profile.

        Args:
            cpu: Number of CPUs, at least 1.
            memory: Memory limit (int = GiB, or "512MiB"...).
            disk: Root disk size (int = GiB, or a string), or None for no bound.
            pool: The storage pool of the root disk.

        Returns:
            The profile.

        Raises:
            ValueError: A limit is invalid.
        """
        if isinstance(cpu, bool) or not isinstance(cpu, int) or cpu < 1:
            raise ValueError(f"cpu must be a positive integer, got {cpu!r}")
        return cls(
            cpu=cpu,
            memory=parse_size(memory),
            disk=None if disk is None else parse_size(disk),
            pool=pool,
        )

    @property
    def name(self) -> str:
        """The profile's name, e.g. ``cpu-2-mem-7GiB-disk-10GiB``."""
        name = f"cpu-{self.cpu}-mem-{self.memory}"
        if self.disk is not None:
            name += f"-disk-{self.disk}"
        return name

    @property
    def config(self) -> dict[str, str]:
        """The profile's config keys."""
        return {"limits.cpu": str(self.cpu), "limits.memory": self.memory}

    @property
    def devices(self) -> dict[str, Device]:
        """The profile's devices: a sized root disk, or none."""
        if self.disk is None:
            return {}
        return {"root": {"type": "disk", "path": "/", "pool": self.pool, "size": self.disk}}
