"""Types and pure helpers of the LXD seam (:mod:`lxd`): plain values, no I/O, no pylxd."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Literal

InstanceType = Literal["container", "virtual-machine"]
"""The kinds of LXD instances."""

Device = dict[str, str]
"""An LXD device: its ``type`` and the type's keys, every value a string."""

HIDDEN = "***"
"""What a secret is replaced by in logs and errors."""

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
_PLAIN_ARG = re.compile(r"[\w@%+=:,./*-]+")
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


# --- pure helpers of the seam ----------------------------------------------------------------


def hide_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of every secret in a text by ``***``.

    Args:
        text: The text (a command line, an error message).
        secrets: The secret values; empty ones are ignored.

    Returns:
        The text without the secrets.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def display_command(cmd: Iterable[str], secrets: Iterable[str] = ()) -> str:
    """Render a command for logs and errors, secrets hidden.

    Args:
        cmd: The command's arguments.
        secrets: The secret values that may appear in (or inside) arguments.

    Returns:
        A shell-quoted command line with every secret replaced by ``***``.
    """
    secret_list = list(secrets)
    shown = []
    for arg in cmd:
        hidden = hide_secrets(arg, secret_list)  # hide first: quoting could split a secret
        shown.append(hidden if _PLAIN_ARG.fullmatch(hidden) else shlex.quote(hidden))
    return " ".join(shown)


def validate_instance_name(name: str) -> None:
    """Check a name is a valid LXD instance name.

    Args:
        name: The name.

    Raises:
        ValueError: It is not: 1-63 letters, digits or hyphens, starting with a letter, not
            ending with a hyphen.
    """
    if not _NAME.match(name) or name.endswith("-"):
        raise ValueError(
            f"invalid LXD instance name {name!r}: use 1-63 letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen"
        )


def matches_filter(
    name: str,
    config: Mapping[str, str],
    prefix: str | None = None,
    user_config: Mapping[str, str] | None = None,
) -> bool:
    """Whether an instance matches a name prefix and ``user.*`` config values.

    Args:
        name: The instance's name.
        config: Its (non-expanded) config.
        prefix: If set, the name must start with it.
        user_config: If set, each key must be present in the config with exactly this value.
            Keys without the ``user.`` namespace are given it.

    Returns:
        True when every condition holds.
    """
    if prefix is not None and not name.startswith(prefix):
        return False
    for key, value in (user_config or {}).items():
        full_key = key if key.startswith("user.") else f"user.{key}"
        if config.get(full_key) != value:
            return False
    return True


def parse_lxd_time(value: str | None) -> datetime | None:
    """Parse LXD's RFC 3339 timestamps (nanoseconds, ``Z``) into aware UTC datetimes.

    Args:
        value: The timestamp, e.g. "2026-11-23T07:45:12.123456789Z".

    Returns:
        The time in UTC, or None when absent, unparsable or LXD's zero time (year 1 or 1970).
    """
    if not value:
        return None
    match = re.match(
        r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$", value.strip()
    )
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone in (None, "Z") else zone
    try:
        parsed = datetime.fromisoformat(f"{base}.{micro}{offset}")
    except ValueError:
        return None
    if parsed.year <= 1970:
        return None
    return parsed.astimezone(timezone.utc)


def disk_device(source: str, path: str, *, readonly: bool = False) -> Device:
    """A disk device that mounts a host path into the instance.

    Args:
        source: The host path (directory or block device).
        path: Where it appears in the instance.
        readonly: Mount it read-only.

    Returns:
        The device.
    """
    device: Device = {"type": "disk", "source": source, "path": path}
    if readonly:
        device["readonly"] = "true"
    return device


def host_ids(idmap_json: str, ns_id: int = 0, instance: str = "") -> tuple[int, int]:
    """Find the host uid and gid that an id inside an instance maps to.

    Args:
        idmap_json: The instance's ``volatile.idmap.current`` (a JSON list of
            ``{"Isuid", "Isgid", "Hostid", "Nsid", "Maprange"}``; not ``volatile.idmap.base``,
            which is wrong to use), "[]" when privileged.
        ns_id: The uid and gid inside the instance (0: its root).
        instance: The instance's name, for errors.

    Returns:
        (host uid, host gid) of ``ns_id``; ``(ns_id, ns_id)`` when nothing is mapped.

    Raises:
        ValueError: The map is missing or malformed, or does not map ``ns_id``.
    """
    try:
        entries = json.loads(idmap_json)
    except ValueError as exc:
        raise ValueError(f"{instance}: unreadable volatile.idmap.current: {exc}") from exc
    if not isinstance(entries, list):
        raise ValueError(f"{instance}: volatile.idmap.current is not a list")
    if not entries:
        return ns_id, ns_id
    found: dict[str, int] = {}
    for entry in entries:
        span = _id_range(entry)
        if span is None or not span[0] <= ns_id < span[0] + span[2]:
            continue
        for key, kind in (("Isuid", "uid"), ("Isgid", "gid")):
            if entry.get(key) is True and kind not in found:
                found[kind] = span[1] + ns_id - span[0]
    if "uid" not in found or "gid" not in found:
        raise ValueError(f"{instance}: volatile.idmap.current does not map uid/gid {ns_id}")
    return found["uid"], found["gid"]


def _id_range(entry: object) -> tuple[int, int, int] | None:
    """(Nsid, Hostid, Maprange) of one idmap entry, or None when it is not one."""
    if not isinstance(entry, dict):
        return None
    values = [entry.get(key) for key in ("Nsid", "Hostid", "Maprange")]
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if len(ints) != 3:
        return None
    return ints[0], ints[1], ints[2]
