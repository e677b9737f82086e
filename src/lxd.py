"""The LXD seam: the only module that imports pylxd.

A thin, typed client over LXD's REST API (through pylxd's connection and raw API nodes). Every
call has a timeout; every failure is one of the project's ``LXD*`` errors:

- the daemon cannot be reached -> :class:`errors.LXDUnavailableError`;
- an object is missing -> :class:`errors.LXDNotFoundError` (:class:`LXDImageNotFoundError` for
  a missing image);
- a deadline passed -> :class:`errors.LXDTimeoutError`;
- anything else LXD refuses -> :class:`errors.LXDError`.

Commands run through LXD's exec API with ``record-output`` and no websocket (about ten times
faster than pylxd's ``execute``), which matters because readiness polling and runner setup run
many commands. Arguments that hold secrets are hidden (``***``) in every log line and error.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pylxd
import pylxd.exceptions
import requests

import errors
from lxd_type import (
    Device,
    ExecResult,
    ImageInfo,
    InstanceStatus,
    InstanceType,
    ResourceProfile,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
"""Seconds an LXD call (and the operation it starts) may take unless told otherwise."""

HIDDEN = "***"

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
_OPERATION_SLACK = 5.0
_READY_STATES = frozenset({"running", "degraded"})


# --- pure helpers ---------------------------------------------------------------------------


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
    return shlex.join(hide_secrets(arg, secret_list) for arg in cmd)


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


def proxy_device(listen_port: int, connect_port: int | None = None) -> Device:
    """A proxy device that shows a host loopback service at 127.0.0.1 inside the instance.

    Args:
        listen_port: The port inside the instance.
        connect_port: The port on the host's loopback; defaults to ``listen_port``.

    Returns:
        The device, for ``devices=`` or :meth:`LxdInstance.add_device`.

    Raises:
        ValueError: A port is out of range.
    """
    connect = listen_port if connect_port is None else connect_port
    for port in (listen_port, connect):
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}")
    return {
        "type": "proxy",
        "bind": "instance",
        "listen": f"tcp:127.0.0.1:{listen_port}",
        "connect": f"tcp:127.0.0.1:{connect}",
    }


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


def _error_text(exc: pylxd.exceptions.LXDAPIException) -> str:
    """The error LXD gave in a refused request."""
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            if isinstance(body, dict) and body.get("error"):
                return str(body["error"])
        except ValueError:
            pass
        return f"HTTP {response.status_code}"
    return str(exc)


def _status_code(exc: pylxd.exceptions.LXDAPIException) -> int | None:
    response = getattr(exc, "response", None)
    return None if response is None else int(response.status_code)


# --- the client -----------------------------------------------------------------------------


class LxdClient:
    """A client of the local LXD daemon.

    Connects lazily: building a client never fails; the first call raises
    :class:`errors.LXDUnavailableError` if the daemon is down. Thread-safe for concurrent calls.
    """

    def __init__(self, endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Build the client.

        Args:
            endpoint: Path of LXD's unix socket or an https URL; None for pylxd's default (the
                ``LXD_DIR`` socket, /var/lib/lxd or the snap's socket).
            timeout: Default seconds for each call and the operation it waits for.
        """
        self.endpoint = endpoint
        self.timeout = timeout
        self._client: pylxd.Client | None = None
        self._lock = threading.Lock()

    # -- plumbing --

    def _connect(self) -> pylxd.Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = pylxd.Client(endpoint=self.endpoint, timeout=self.timeout)
                except (pylxd.exceptions.ClientConnectionFailed, requests.RequestException) as exc:
                    where = self.endpoint or "the default socket"
                    raise errors.LXDUnavailableError(
                        f"LXD daemon is not running: cannot connect to {where}: {exc}",
                        operation="connect",
                    ) from exc
            return self._client

    def _node(self, path: str) -> Any:
        node: Any = self._connect().api
        for part in path.strip("/").removeprefix("1.0").strip("/").split("/"):
            if part:
                node = node[part]
        return node

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        instance: str | None = None,
        timeout: float | None = None,
        not_found: type[errors.LXDNotFoundError] = errors.LXDNotFoundError,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request to the API and map every failure to the project's errors.

        Args:
            method: "get", "post", "put", "patch" or "delete".
            path: The path under /1.0, e.g. "instances/foo".
            operation: What the caller is doing, for errors ("create", "exec"...).
            instance: The instance concerned, for errors.
            timeout: Seconds for the HTTP request; the client's default otherwise.
            not_found: The error to raise on a 404.
            kwargs: Passed to requests (json, params, data, headers, stream, is_api).

        Returns:
            The response (2xx).

        Raises:
            LXDUnavailableError: The daemon cannot be reached.
            LXDNotFoundError: The object does not exist (or ``not_found``).
            LXDTimeoutError: The request took longer than the timeout.
            LXDError: LXD refused the request.
        """
        seconds = self.timeout if timeout is None else timeout
        node = self._node(path)
        try:
            response: requests.Response = getattr(node, method)(timeout=seconds, **kwargs)
        except pylxd.exceptions.NotFound as exc:
            raise not_found(
                f"{operation}: not found: {_error_text(exc)}", operation, instance
            ) from exc
        except pylxd.exceptions.LXDAPIException as exc:
            raise errors.LXDError(
                f"{operation}: LXD refused: {_error_text(exc)}", operation, instance
            ) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise errors.LXDTimeoutError(
                f"{operation}: LXD did not answer within {seconds:g} s", operation, instance
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise errors.LXDUnavailableError(
                f"LXD daemon is not running: {operation}: {exc}", operation, instance
            ) from exc
        except requests.RequestException as exc:
            raise errors.LXDError(f"{operation}: {exc}", operation, instance) from exc
        return response

    def sync(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request whose answer is synchronous and return its ``metadata``.

        Args:
            method: The HTTP method.
            path: The path under /1.0.
            kwargs: See :meth:`request`.

        Returns:
            The ``metadata`` of LXD's answer.
        """
        return self.request(method, path, **kwargs).json().get("metadata")

    def run_operation(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        instance: str | None = None,
        timeout: float | None = None,
        not_found: type[errors.LXDNotFoundError] = errors.LXDNotFoundError,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send a request that starts a background operation and wait for it to end.

        Args:
            method: The HTTP method.
            path: The path under /1.0.
            operation: What the caller is doing, for errors.
            instance: The instance concerned, for errors.
            timeout: Seconds the whole operation may take.
            not_found: The error to raise on a 404.
            kwargs: Passed to requests.

        Returns:
            The finished operation's ``metadata`` (its own ``metadata`` holds the result).

        Raises:
            LXDTimeoutError: The operation did not end in time (it may still be running).
            LXDError: The operation failed.
        """
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        response = self.request(
            method,
            path,
            operation=operation,
            instance=instance,
            timeout=seconds,
            not_found=not_found,
            **kwargs,
        )
        body = response.json()
        op_path = body.get("operation") or ""
        if body.get("type") != "async" or not op_path:
            return dict(body.get("metadata") or {})
        return self.wait_operation(
            op_path, deadline, operation=operation, instance=instance, not_found=not_found
        )

    def wait_operation(
        self,
        op_path: str,
        deadline: float,
        *,
        operation: str,
        instance: str | None = None,
        not_found: type[errors.LXDNotFoundError] = errors.LXDNotFoundError,
    ) -> dict[str, Any]:
        """Wait for a background operation until a monotonic deadline.

        Args:
            op_path: The operation's URL, e.g. "/1.0/operations/<uuid>".
            deadline: ``time.monotonic()`` value after which to give up.
            operation: What the caller is doing, for errors.
            instance: The instance concerned, for errors.
            not_found: The error to raise when the operation failed because something is
                missing.

        Returns:
            The finished operation's metadata.

        Raises:
            LXDTimeoutError: The deadline passed.
            LXDError: The operation failed.
        """
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            wait_s = max(1, int(remaining + 0.999))
            meta = self.sync(
                "get",
                f"{op_path}/wait",
                params={"timeout": wait_s},
                operation=operation,
                instance=instance,
                timeout=wait_s + _OPERATION_SLACK,
            )
            status = str(meta.get("status", ""))
            if status == "Success":
                return dict(meta)
            if status in ("Failure", "Cancelled"):
                message = str(meta.get("err") or status)
                if "not found" in message.lower():
                    raise not_found(f"{operation}: {message}", operation, instance)
                raise errors.LXDError(f"{operation}: {message}", operation, instance)
            if time.monotonic() >= deadline:
                try:
                    self.request("delete", op_path, operation=operation, timeout=5)
                except errors.LXDError:
                    logger.debug("operation %s could not be cancelled", op_path)
                raise errors.LXDTimeoutError(
                    f"{operation}: LXD operation still {status or 'running'} at the deadline",
                    operation,
                    instance,
                )

    # -- server --

    def is_available(self) -> bool:
        """Whether the daemon answers."""
        try:
            self.sync("get", "", operation="ping", timeout=min(self.timeout, 10))
        except errors.LXDError:
            return False
        return True

    def server_info(self) -> dict[str, Any]:
        """LXD's ``GET /1.0`` (api extensions, environment, config)."""
        return dict(self.sync("get", "", operation="server-info"))

    # -- instances --

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
        timeout: float | None = None,
    ) -> LxdInstance:
        """Create an instance from a local image, and start it.

        Nothing half-built is left behind: if creating or starting fails, an instance this
        call created is deleted before the error is raised.

        Args:
            name: The instance name (validated; see :func:`validate_instance_name`).
            image_alias: The alias of an image in the local store.
            instance_type: "container" or "virtual-machine".
            profiles: Profiles to apply, in order.
            config: Instance config (``user.*`` ownership keys, ``limits.*``...).
            devices: Devices by name (e.g. :func:`proxy_device`, :func:`disk_device`).
            ephemeral: Delete the instance when it stops.
            start: Start it after creating it.
            wait: Wait for the start to finish (the instance is Running; see
                :meth:`LxdInstance.wait_ready` for readiness). With False, the start is only
                requested.
            timeout: Seconds for create + start; the client's default otherwise.

        Returns:
            The instance.

        Raises:
            ValueError: The name is invalid.
            LXDImageNotFoundError: No image has this alias.
            LXDAlreadyExistsError: An instance with this name exists already.
            LXDTimeoutError: Creating or starting took too long.
            LXDError: LXD refused.
        """
        validate_instance_name(name)
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        body = {
            "name": name,
            "type": instance_type,
            "source": {"type": "image", "alias": image_alias},
            "profiles": list(profiles),
            "config": dict(config or {}),
            "devices": {key: dict(value) for key, value in (devices or {}).items()},
            "ephemeral": ephemeral,
        }
        started = time.monotonic()
        try:
            self.run_operation(
                "post",
                "instances",
                json=body,
                operation="create",
                instance=name,
                timeout=seconds,
                not_found=errors.LXDImageNotFoundError,
            )
        except errors.LXDError as exc:
            if "already exists" in exc.message.lower():
                raise errors.LXDAlreadyExistsError(
                    f"create: instance {name} already exists", "create", name
                ) from exc
            self._delete_quietly(name)
            raise
        instance = LxdInstance(self, self.get(name).data)
        if start:
            try:
                instance.start(timeout=max(1.0, deadline - time.monotonic()), wait=wait)
            except errors.LXDError:
                self._delete_quietly(name)
                raise
        logger.info(
            "created %s %s from %s in %.2f s",
            instance_type,
            name,
            image_alias,
            time.monotonic() - started,
        )
        return instance

    def _delete_quietly(self, name: str) -> None:
        try:
            LxdInstance(self, {"name": name}).delete(timeout=self.timeout)
        except errors.LXDError as exc:
            logger.warning("could not clean up instance %s: %s", name, exc)

    def get(self, name: str) -> LxdInstance:
        """Fetch an instance.

        Args:
            name: Its name.

        Returns:
            The instance.

        Raises:
            LXDNotFoundError: It does not exist.
        """
        data = self.sync(
            "get", f"instances/{quote(name, safe='')}", operation="get", instance=name
        )
        return LxdInstance(self, dict(data))

    def exists(self, name: str) -> bool:
        """Whether an instance exists.

        Args:
            name: Its name.

        Returns:
            True if it exists.
        """
        try:
            self.get(name)
        except errors.LXDNotFoundError:
            return False
        return True

    def list(
        self, prefix: str | None = None, user_config: Mapping[str, str] | None = None
    ) -> list[LxdInstance]:
        """List instances, filtered by name prefix and ``user.*`` config values.

        Args:
            prefix: Keep only names starting with this.
            user_config: Keep only instances whose config has these ``user.*`` values (the
                ``user.`` namespace is added to keys that lack it).

        Returns:
            The matching instances, sorted by name.
        """
        items = self.sync("get", "instances", params={"recursion": 1}, operation="list") or []
        result = [
            LxdInstance(self, dict(item))
            for item in items
            if matches_filter(
                str(item.get("name", "")), item.get("config") or {}, prefix, user_config
            )
        ]
        return sorted(result, key=lambda inst: inst.name)

    # -- profiles --

    def profile_exists(self, name: str) -> bool:
        """Whether a profile exists.

        Args:
            name: The profile's name.

        Returns:
            True if it exists.
        """
        try:
            self.sync("get", f"profiles/{quote(name, safe='')}", operation="get-profile")
        except errors.LXDNotFoundError:
            return False
        return True

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
            current = self.sync("get", path, operation="get-profile")
        except errors.LXDNotFoundError:
            body = {
                "name": name,
                "config": want_config,
                "devices": want_devices,
                "description": description,
            }
            self.sync("post", "profiles", json=body, operation="create-profile")
            logger.info("created profile %s", name)
            return True
        if (current.get("config") or {}) == want_config and (
            current.get("devices") or {}
        ) == want_devices:
            return False
        body = {"config": want_config, "devices": want_devices, "description": description}
        self.sync("put", path, json=body, operation="update-profile")
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

    def delete_profile(self, name: str) -> None:
        """Delete a profile; a missing one is a no-op.

        Args:
            name: The profile's name.
        """
        try:
            self.sync("delete", f"profiles/{quote(name, safe='')}", operation="delete-profile")
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
        try:
            self.sync("get", f"storage-pools/{quote(name, safe='')}", operation="get-pool")
        except errors.LXDNotFoundError:
            return False
        return True

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
            current = self.sync(
                "get", f"storage-pools/{quote(name, safe='')}", operation="get-pool"
            )
        except errors.LXDNotFoundError:
            body = {"name": name, "driver": driver, "config": dict(config or {})}
            self.sync("post", "storage-pools", json=body, operation="create-pool", timeout=120)
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
        target = self.sync(
            "get",
            f"images/aliases/{quote(alias, safe='')}",
            operation="image-info",
            not_found=errors.LXDImageNotFoundError,
        )
        fingerprint = str(target.get("target", ""))
        data = self.sync(
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
        try:
            self.sync(
                "get",
                f"images/aliases/{quote(alias, safe='')}",
                operation="image-exists",
                not_found=errors.LXDImageNotFoundError,
            )
        except errors.LXDNotFoundError:
            return False
        return True

    def delete_image(self, alias: str) -> None:
        """Delete the image behind an alias; a missing one is a no-op.

        Args:
            alias: The alias.
        """
        try:
            info = self.image_info(alias)
            self.run_operation("delete", f"images/{info.fingerprint}", operation="delete-image")
        except errors.LXDNotFoundError:
            return


# --- instances ------------------------------------------------------------------------------


class LxdFiles:
    """Files of one instance (``instance.files``)."""

    def __init__(self, instance: LxdInstance) -> None:
        """Bind to an instance.

        Args:
            instance: The instance.
        """
        self._instance = instance

    def _path(self) -> str:
        return f"instances/{quote(self._instance.name, safe='')}/files"

    def push(
        self, path: str, content: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        """Write a file in the instance (its directory must exist), replacing any file there.

        Args:
            path: Absolute path in the instance.
            content: The bytes to write.
            mode: The file's permissions.
            uid: Its owner, as seen inside the instance.
            gid: Its group, as seen inside the instance.
        """
        headers = {
            "X-LXD-type": "file",
            "X-LXD-mode": f"{mode:04o}",
            "X-LXD-uid": str(uid),
            "X-LXD-gid": str(gid),
            "X-LXD-write": "overwrite",
            "Content-Type": "application/octet-stream",
        }
        self._instance.client.request(
            "post",
            self._path(),
            params={"path": path},
            data=content,
            headers=headers,
            operation="push",
            instance=self._instance.name,
        )

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Create a directory in the instance (its parent must exist); an existing one is kept.

        Args:
            path: Absolute path in the instance.
            mode: Its permissions.
            uid: Its owner, as seen inside the instance.
            gid: Its group, as seen inside the instance.
        """
        headers = {
            "X-LXD-type": "directory",
            "X-LXD-mode": f"{mode:04o}",
            "X-LXD-uid": str(uid),
            "X-LXD-gid": str(gid),
        }
        try:
            self._instance.client.request(
                "post",
                self._path(),
                params={"path": path},
                headers=headers,
                operation="mkdir",
                instance=self._instance.name,
            )
        except errors.LXDNotFoundError:
            raise
        except errors.LXDError as exc:
            if "exist" not in exc.message.lower():
                raise

    def pull(self, path: str, max_bytes: int | None = None) -> bytes:
        """Read a regular file from the instance. Symlinks and directories are refused.

        Args:
            path: Absolute path in the instance.
            max_bytes: If set, refuse files larger than this (read at most this much + 1).

        Returns:
            The file's content.

        Raises:
            LXDNotFoundError: The file (or the instance) does not exist.
            LXDError: It is not a regular file, or it is larger than ``max_bytes``.
        """
        name = self._instance.name
        response = self._instance.client.request(
            "get",
            self._path(),
            params={"path": path},
            stream=True,
            is_api=False,
            operation="pull",
            instance=name,
        )
        with response:
            kind = response.headers.get("X-LXD-type", "file")
            if kind != "file":
                raise errors.LXDError(
                    f"pull: {path} is a {kind}, not a regular file", "pull", name
                )
            limit = None if max_bytes is None else max_bytes + 1
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(chunk_size=65536):
                chunks.append(chunk)
                size += len(chunk)
                if limit is not None and size >= limit:
                    break
        data = b"".join(chunks)
        if max_bytes is not None and len(data) > max_bytes:
            raise errors.LXDError(f"pull: {path} is larger than {max_bytes} bytes", "pull", name)
        return data


class LxdInstance:
    """One LXD instance. ``data`` is a snapshot; :meth:`refresh` reloads it.

    Attributes:
        client: The client it came from.
        data: LXD's description of the instance at the last load.
        files: Its files (push / pull / mkdir).
    """

    def __init__(self, client: LxdClient, data: dict[str, Any]) -> None:
        """Wrap LXD's description of an instance.

        Args:
            client: The client.
            data: LXD's instance object (at least ``name``).
        """
        self.client = client
        self.data = data
        self.files = LxdFiles(self)

    def __repr__(self) -> str:
        """Show the name and the status of the snapshot."""
        return f"LxdInstance({self.name!r}, {self.data.get('status', '?')})"

    @property
    def name(self) -> str:
        """The instance's name."""
        return str(self.data["name"])

    @property
    def _path(self) -> str:
        return f"instances/{quote(self.name, safe='')}"

    @property
    def config(self) -> dict[str, str]:
        """Its own (non-expanded) config at the last load."""
        return {str(k): str(v) for k, v in (self.data.get("config") or {}).items()}

    @property
    def devices(self) -> dict[str, Device]:
        """Its own (non-expanded) devices at the last load."""
        return {
            str(k): {str(a): str(b) for a, b in v.items()}
            for k, v in (self.data.get("devices") or {}).items()
        }

    @property
    def instance_type(self) -> str:
        """The instance type: "container" or "virtual-machine"."""
        return str(self.data.get("type") or "container")

    @property
    def created_at(self) -> datetime | None:
        """When it was created (UTC)."""
        return parse_lxd_time(self.data.get("created_at"))

    @property
    def status(self) -> InstanceStatus:
        """Its status now (one API call)."""
        state = self.client.sync(
            "get", f"{self._path}/state", operation="status", instance=self.name
        )
        return InstanceStatus.from_lxd(str(state.get("status", "")))

    def refresh(self) -> LxdInstance:
        """Reload the snapshot from LXD.

        Returns:
            This instance.

        Raises:
            LXDNotFoundError: It no longer exists.
        """
        self.data = dict(self.client.sync("get", self._path, operation="get", instance=self.name))
        return self

    # -- lifecycle --

    def _change_state(
        self, action: str, op_timeout: float | None, extra: dict[str, Any] | None = None
    ) -> None:
        body: dict[str, Any] = {"action": action, **(extra or {})}
        self.client.run_operation(
            "put",
            f"{self._path}/state",
            json=body,
            operation=action,
            instance=self.name,
            timeout=op_timeout,
        )

    def start(self, timeout: float | None = None, wait: bool = True) -> None:
        """Start the instance.

        Args:
            timeout: Seconds the start may take.
            wait: Wait for it to be Running; with False only request it.
        """
        if wait:
            self._change_state("start", timeout)
        else:
            self.client.request(
                "put",
                f"{self._path}/state",
                json={"action": "start"},
                operation="start",
                instance=self.name,
                timeout=timeout,
            )

    def stop(self, timeout: float | None = None, force: bool = False) -> None:
        """Stop the instance (an ephemeral one is deleted by LXD); a stopped one is a no-op.

        Args:
            timeout: Seconds a clean shutdown may take before failing (or before the kill,
                with ``force``).
            force: Kill it instead of shutting it down cleanly.
        """
        seconds = self.client.timeout if timeout is None else timeout
        try:
            if self.status == InstanceStatus.STOPPED:
                return
            self._change_state(
                "stop", seconds + _OPERATION_SLACK, {"timeout": int(seconds), "force": force}
            )
        except errors.LXDNotFoundError:
            return
        except errors.LXDError as exc:
            if "already stopped" in exc.message.lower() or "not running" in exc.message.lower():
                return
            raise

    def delete(self, wait: bool = True, timeout: float | None = None) -> None:
        """Delete the instance (killing it first if it runs); a missing one is a no-op.

        Args:
            wait: Wait for the deletion to finish.
            timeout: Seconds stop + delete may take.
        """
        seconds = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        try:
            if self.status != InstanceStatus.STOPPED:
                self._change_state("stop", seconds, {"timeout": -1, "force": True})
            remaining = max(1.0, deadline - time.monotonic())
            if wait:
                self.client.run_operation(
                    "delete", self._path, operation="delete", instance=self.name, timeout=remaining
                )
            else:
                self.client.request(
                    "delete", self._path, operation="delete", instance=self.name, timeout=remaining
                )
        except errors.LXDNotFoundError:
            return
        except errors.LXDError:
            # An ephemeral instance vanishes while being stopped: that is success.
            if not self.client.exists(self.name):
                return
            raise
        logger.info("deleted instance %s", self.name)

    # -- devices and config --

    def _update(self, change: Callable[[dict[str, Any]], bool], operation: str) -> None:
        response = self.client.request("get", self._path, operation=operation, instance=self.name)
        etag = response.headers.get("ETag", "")
        data = response.json()["metadata"]
        if not change(data):
            self.data = data
            return
        body = {
            key: data.get(key)
            for key in ("architecture", "config", "devices", "ephemeral", "profiles", "stateful")
        }
        body["description"] = data.get("description", "")
        headers = {"If-Match": etag} if etag else {}
        self.client.run_operation(
            "put", self._path, json=body, headers=headers, operation=operation, instance=self.name
        )
        self.refresh()

    def add_device(self, name: str, device: Device) -> None:
        """Add (or replace) a device; LXD applies it to a running instance live.

        Args:
            name: The device's name.
            device: The device (see :func:`proxy_device`, :func:`disk_device`).

        Raises:
            LXDError: LXD refused it (the instance is unchanged).
        """

        def change(data: dict[str, Any]) -> bool:
            devices = data.setdefault("devices", {})
            if devices.get(name) == dict(device):
                return False
            devices[name] = dict(device)
            return True

        self._update(change, "add-device")

    def remove_device(self, name: str) -> None:
        """Remove a device; a missing one is a no-op.

        Args:
            name: The device's name.
        """

        def change(data: dict[str, Any]) -> bool:
            return (data.get("devices") or {}).pop(name, None) is not None

        self._update(change, "remove-device")

    def set_config(self, values: Mapping[str, str | None]) -> None:
        """Set (or, with None, unset) config keys.

        Args:
            values: Keys and their new values.
        """

        def change(data: dict[str, Any]) -> bool:
            config = data.setdefault("config", {})
            before = dict(config)
            for key, value in values.items():
                if value is None:
                    config.pop(key, None)
                else:
                    config[key] = str(value)
            return bool(config != before)

        self._update(change, "set-config")

    # -- commands --

    def execute(
        self,
        cmd: list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: int | None = None,
        group: int | None = None,
        timeout: float | None = None,
        secret_args: Iterable[str] = (),
        check: bool = False,
    ) -> ExecResult:
        """Run a command in the instance and collect its output (stdin is empty).

        Args:
            cmd: The command and its arguments (no shell unless you run one).
            cwd: Its working directory.
            env: Extra environment variables (LXD sets PATH, HOME=/root, USER...; pass HOME
                yourself for another user). Values are never logged.
            user: The uid to run as (root by default).
            group: The gid to run as (``user`` by default).
            timeout: Seconds it may run. On timeout LXDTimeoutError is raised; the process may
                go on running in the instance.
            secret_args: Values in ``cmd`` to hide as ``***`` in logs and errors.
            check: Raise LXDExecError when the exit code is not 0.

        Returns:
            The exit code and the decoded output.

        Raises:
            LXDExecError: ``check`` and the command failed.
            LXDTimeoutError: It ran longer than the timeout.
        """
        secrets = list(secret_args)
        shown = display_command(cmd, secrets)
        body: dict[str, Any] = {
            "command": list(cmd),
            "environment": dict(env or {}),
            "wait-for-websocket": False,
            "interactive": False,
            "record-output": True,
        }
        if cwd is not None:
            body["cwd"] = cwd
        if user is not None:
            body["user"] = user
            body["group"] = user if group is None else group
        elif group is not None:
            body["group"] = group
        started = time.monotonic()
        try:
            meta = self.client.run_operation(
                "post",
                f"{self._path}/exec",
                json=body,
                operation="exec",
                instance=self.name,
                timeout=timeout,
            )
        except errors.LXDError as exc:
            exc.message = hide_secrets(f"{exc.message} (command: {shown})", secrets)
            exc.args = (exc.message,)
            raise
        result_meta = meta.get("metadata") or {}
        outputs = result_meta.get("output") or {}
        stdout = self._fetch_output(outputs.get("1"))
        stderr = self._fetch_output(outputs.get("2"))
        result = ExecResult(
            exit_code=int(result_meta.get("return", -1)), stdout=stdout, stderr=stderr
        )
        logger.debug(
            "exec in %s: %s -> %d (%.3f s)",
            self.name,
            shown,
            result.exit_code,
            time.monotonic() - started,
        )
        if check and not result.ok:
            raise errors.LXDExecError(
                hide_secrets(f"exec: {shown} exited with {result.exit_code}", secrets),
                instance=self.name,
                exit_code=result.exit_code,
                stderr=hide_secrets(result.stderr[-2000:], secrets),
            )
        return result

    def _fetch_output(self, log_path: str | None) -> str:
        if not log_path:
            return ""
        response = self.client.request(
            "get", log_path, is_api=False, operation="exec-output", instance=self.name
        )
        try:
            self.client.request("delete", log_path, operation="exec-output", instance=self.name)
        except errors.LXDError:
            logger.debug("could not delete exec log %s", log_path)
        return response.content.decode("utf-8", errors="replace")

    # -- waiting --

    def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        what: str = "condition",
        initial_delay: float = 0.05,
        max_delay: float = 1.0,
    ) -> None:
        """Poll a predicate with a small backoff until it holds or the deadline passes.

        Args:
            predicate: Checked first at once, then after growing delays. LXD errors raised by it
                count as "not yet".
            timeout: Seconds to wait at most.
            what: What is awaited, for the error.
            initial_delay: First delay between checks.
            max_delay: Longest delay between checks.

        Raises:
            LXDTimeoutError: It did not hold in time.
        """
        deadline = time.monotonic() + timeout
        delay = initial_delay
        last_error = ""
        while True:
            try:
                if predicate():
                    return
            except errors.LXDUnavailableError:
                raise
            except errors.LXDError as exc:
                last_error = f" (last error: {exc})"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.LXDTimeoutError(
                    f"{self.name}: {what} not reached within {timeout:g} s{last_error}",
                    "wait",
                    self.name,
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 1.5, max_delay)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until the instance is really up: Running, and its init reports it has booted.

        With systemd inside, "booted" means ``systemctl is-system-running`` says running or
        degraded; without systemctl it means a command runs.

        Args:
            timeout: Seconds to wait at most.

        Raises:
            LXDTimeoutError: It was not ready in time.
        """
        deadline = time.monotonic() + timeout
        last = ""

        def booted() -> bool:
            nonlocal last
            remaining = max(1.0, deadline - time.monotonic())
            result = self.execute(["systemctl", "is-system-running"], timeout=min(10, remaining))
            state = result.stdout.strip()
            last = state or f"exit {result.exit_code}"
            if state in _READY_STATES:
                return True
            return result.exit_code in (126, 127)  # no systemctl: the command ran, that is up

        try:
            self.wait_until(booted, timeout, "readiness")
        except errors.LXDTimeoutError as exc:
            exc.message = f"{exc.message}; last state: {last or 'no answer'}"
            exc.args = (exc.message,)
            raise
