"""One LXD instance of the seam (:mod:`lxd`): snapshot, lifecycle, devices, config, commands.

Talks to LXD only through :class:`lxd.transport.LxdTransport`. Instances come from
:class:`lxd.client.LxdClient` (``create``, ``copy``, ``get``, ``list``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import tenacity

import errors
from lxd.files import LxdFiles
from lxd.transport import OPERATION_SLACK, LxdTransport
from lxd.types import (
    Device,
    ExecResult,
    InstanceStatus,
    display_command,
    hide_secrets,
    host_ids,
    parse_lxd_time,
)
from lxd.waiting import wait_until

logger = logging.getLogger(__name__)

_BUSY_OPERATION = "is busy running"
_ALREADY_STOPPED = "already stopped"
_READY_STATES = frozenset({"running", "degraded"})


def _busy_with_operation(exc: BaseException) -> bool:
    """Whether LXD refused because an operation is still changing the instance."""
    return isinstance(exc, errors.LXDError) and _BUSY_OPERATION in exc.message


class LxdInstance:
    """One LXD instance. ``data`` is a snapshot; :meth:`refresh` reloads it.

    Attributes:
        transport: The connection to LXD it came through.
        data: LXD's description of the instance at the last load.
        files: Its files (push / pull / mkdir).
    """

    def __init__(self, transport: LxdTransport, data: dict[str, Any]) -> None:
        """Wrap LXD's description of an instance.

        Args:
            transport: The connection to LXD.
            data: LXD's instance object (at least ``name``).
        """
        self.transport = transport
        self.data = data
        self.files = LxdFiles(transport, self.name)

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

    def host_ids_of_root(self) -> tuple[int, int]:
        """The host uid and gid that the instance's root (uid 0, gid 0) maps to.

        Read from ``volatile.idmap.current`` (``volatile.idmap.base`` is not reliable). A host
        directory owned by these ids is writable by root inside the instance.

        Returns:
            (host uid, host gid); (0, 0) for a privileged instance without a map.

        Raises:
            LXDError: The map is unreadable (e.g. the instance never started).
        """
        self.refresh()
        try:
            return host_ids(self.config.get("volatile.idmap.current", ""), 0, self.name)
        except ValueError as exc:
            raise errors.LXDError(str(exc), "idmap", self.name) from exc

    @property
    def last_status(self) -> InstanceStatus:
        """Its status when it was listed or last refreshed (no API call)."""
        return InstanceStatus.from_lxd(str(self.data.get("status", "")))

    @property
    def status(self) -> InstanceStatus:
        """Its status now (one API call)."""
        state = self.transport.sync(
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
        self.data = dict(
            self.transport.sync("get", self._path, operation="get", instance=self.name)
        )
        return self

    # -- lifecycle --

    def _change_state(
        self, action: str, op_timeout: float | None, extra: dict[str, Any] | None = None
    ) -> None:
        body: dict[str, Any] = {"action": action, **(extra or {})}
        self.transport.run_operation(
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
            self.transport.request(
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
        seconds = self.transport.timeout if timeout is None else timeout
        try:
            if self.status == InstanceStatus.STOPPED:
                return
            self._change_state(
                "stop", seconds + OPERATION_SLACK, {"timeout": int(seconds), "force": force}
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
        seconds = self.transport.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        # LXD finishes an operation (create, start, stop) even when the client that asked for
        # it died, and refuses a delete meanwhile: wait that out, bounded by the deadline.
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception(_busy_with_operation),
                wait=tenacity.wait_exponential(multiplier=0.2, max=2),
                stop=tenacity.stop_before_delay(max(seconds - 1, 0)),
                before_sleep=self._refresh_between_attempts,
                reraise=True,
            ):
                with attempt:
                    self._delete_unless_gone(wait, deadline)
        except errors.LXDNotFoundError:
            return
        logger.info("deleted instance %s", self.name)

    def _refresh_between_attempts(self, _: tenacity.RetryCallState) -> None:
        self.refresh()

    def _delete_unless_gone(self, wait: bool, deadline: float) -> None:
        try:
            self._stop_and_delete(wait, deadline)
        except errors.LXDError as exc:
            if isinstance(exc, errors.LXDNotFoundError):
                raise
            # An ephemeral instance vanishes while being stopped: that is success.
            if not self.transport.exists(self._path, "delete"):
                raise errors.LXDNotFoundError("gone", "delete", self.name) from None
            raise

    def _stop_and_delete(self, wait: bool, deadline: float) -> None:
        if self.status != InstanceStatus.STOPPED:
            try:
                self._change_state(
                    "stop", max(1.0, deadline - time.monotonic()), {"timeout": -1, "force": True}
                )
            except errors.LXDError as exc:
                # It stopped by itself meanwhile (a runner powers off after its job).
                if _ALREADY_STOPPED not in exc.message:
                    raise
        remaining = max(1.0, deadline - time.monotonic())
        if wait:
            self.transport.run_operation(
                "delete", self._path, operation="delete", instance=self.name, timeout=remaining
            )
        else:
            self.transport.request(
                "delete", self._path, operation="delete", instance=self.name, timeout=remaining
            )

    # -- devices and config --

    def _update(self, change: Callable[[dict[str, Any]], bool], operation: str) -> None:
        response = self.transport.request(
            "get", self._path, operation=operation, instance=self.name
        )
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
        self.transport.run_operation(
            "put", self._path, json=body, headers=headers, operation=operation, instance=self.name
        )
        self.refresh()

    def add_device(self, name: str, device: Device) -> None:
        """Add (or replace) a device; LXD applies it to a running instance live.

        Args:
            name: The device's name.
            device: The device (see :func:`disk_device`).

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
            timeout: Seconds it may run (the transport's default when None). On timeout
                LXDTimeoutError is raised; the process may go on running in the instance.
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
        started = time.monotonic()
        try:
            result = self.transport.exec(
                self.name, cmd, cwd=cwd, env=env, user=user, group=group, timeout=timeout
            )
        except errors.LXDError as exc:
            exc.message = hide_secrets(f"{exc.message} (command: {shown})", secrets)
            exc.args = (exc.message,)
            raise
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

    # -- waiting --

    def addresses(self, nic: str) -> list[str]:
        """The global IPv4 addresses LXD sees on the instance's interface ``nic`` now.

        Args:
            nic: The interface name inside the instance (e.g. ``eth0``).

        Returns:
            Its addresses (empty until DHCP gave one).
        """
        state = self.transport.sync(
            "get", f"{self._path}/state", operation="addresses", instance=self.name
        )
        iface = (state.get("network") or {}).get(nic) or {}
        return [
            str(a.get("address"))
            for a in iface.get("addresses") or []
            if a.get("family") == "inet" and a.get("scope") == "global"
        ]

    def wait_address(self, nic: str, timeout: float = 60.0) -> str:
        """Wait until the interface ``nic`` has an IPv4 address (its DHCP lease); return it.

        Args:
            nic: The interface name inside the instance.
            timeout: Seconds to wait at most.

        Returns:
            The first address.

        Raises:
            LXDTimeoutError: No address in time.
        """
        found: list[str] = []

        def addressed() -> bool:
            found[:] = self.addresses(nic)
            return bool(found)

        wait_until(
            addressed,
            timeout,
            f"an IPv4 address on {nic}",
            self.name,
            fatal=(errors.LXDUnavailableError, errors.LXDNotFoundError),
        )
        return found[0]

    def wait_ready(self, timeout: float = 120.0, *, booted: bool = True) -> None:
        """Wait until the instance is really up, polling with a small backoff (no fixed sleep).

        With ``booted`` (the default) "up" means its init has finished booting: with systemd
        inside, ``systemctl is-system-running`` says running or degraded (about 1-2 s after
        start here); without systemctl, a command runs. With ``booted=False`` it only means a
        command runs (about 0.05 s after start), enough to push files and run a setup script.

        Args:
            timeout: Seconds to wait at most.
            booted: Wait for the end of the boot, not just for a working exec.

        Raises:
            LXDTimeoutError: It was not ready in time.
        """
        deadline = time.monotonic() + timeout
        last = ""

        def ready() -> bool:
            nonlocal last
            remaining = max(1.0, deadline - time.monotonic())
            if not booted:
                result = self.execute(["true"], timeout=min(10, remaining))
                last = f"exit {result.exit_code}"
                return result.exit_code in (0, 126, 127)
            result = self.execute(["systemctl", "is-system-running"], timeout=min(10, remaining))
            state = result.stdout.strip()
            last = state or f"exit {result.exit_code}"
            if state in _READY_STATES:
                return True
            return result.exit_code in (126, 127)  # no systemctl: the command ran, that is up

        try:
            # A vanished instance never becomes ready: fail at once.
            wait_until(
                ready,
                timeout,
                "readiness",
                self.name,
                fatal=(errors.LXDUnavailableError, errors.LXDNotFoundError),
            )
        except errors.LXDTimeoutError as exc:
            exc.message = f"{exc.message}; last state: {last or 'no answer'}"
            exc.args = (exc.message,)
            raise
