"""TEST INFRASTRUCTURE ONLY: a nova compute driver that runs servers as LXD containers.

scripts/setup-openstack.sh installs this file as ``nova/virt/github_runner_lxd.py`` (nova loads
``compute_driver`` from the ``nova.virt`` package only: ``nova.virt.driver.load_compute_driver``)
and sets ``compute_driver = github_runner_lxd.GithubRunnerLxdDriver``. It runs inside Debian's
nova-compute (system python3, eventlet-patched): stdlib and what Debian's nova brings only.
Never use it outside the test control plane of that script.

A server whose Glance image has the property ``github_runner_lxd`` (an LXD image alias) is an
LXD container ``nova-<server uuid>`` made from that alias, with a NIC on the LXD network named
by the image property ``github_runner_lxd_network`` (the closed test network of
harness/testnet.py; without the property the container has no NIC) and the flavor's vCPUs and
memory as LXD limits. The server's user data, when it is a script (``#!``), runs as root once
the container has an IPv4 address, from a systemd unit: the stand-in for cloud-init's final
stage (its output goes to /var/log/nova-user-data.log in the container). Every other server
keeps nova's fake driver behaviour (ACTIVE, nothing runs), so the fast tests are unchanged.

Power state comes from LXD: a container that stopped (the runner's ``shutdown -h now`` after its
job) is SHUTDOWN; a poller emits nova's lifecycle events on Running <-> Stopped changes, so nova
marks the server SHUTOFF within about a second (as libvirt's events do) instead of at its next
power-state sync. Deleting the server deletes the container (idempotent). Nothing else of LXD
is touched: only instances named ``nova-<uuid>``.

LXD is reached over its unix socket (REST, http.client); every call has a timeout.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse
from typing import Any

from nova import exception
from nova.compute import power_state
from nova.virt import event as virtevent
from nova.virt import fake, hardware
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

IMAGE_PROPERTY = "github_runner_lxd"
NETWORK_PROPERTY = "github_runner_lxd_network"
SYSMETA_PREFIX = "image_"  # nova keeps image properties in system metadata as image_<key>
NAME_PREFIX = "nova-"
SOCKETS = (
    os.environ.get("LXD_SOCKET", ""),
    "/var/lib/lxd/unix.socket",
    "/var/snap/lxd/common/lxd/unix.socket",
)
TIMEOUT = 30.0  # one LXD request
OPERATION_TIMEOUT = 120  # an LXD operation (create from an image, start, stop, delete)
POLL_INTERVAL = 1.0
POLL_MAX = 30.0  # seconds between polls while LXD does not answer
SCRIPT_PATH = "/var/lib/nova-user-data"
UNIT_NAME = "nova-user-data.service"
UNIT = f"""\
# TEST INFRASTRUCTURE: the github_runner_lxd nova driver's stand-in for cloud-init's final stage.
[Unit]
Description=Run the nova server's user data (github_runner_lxd test driver)
After=systemd-networkd.service

[Service]
Type=simple
# As cloud-init waits for the network: until the NIC has an IPv4 address (60 s at most).
# ($$ is systemd's escape of a shell $.)
ExecStartPre=/bin/sh -c 'i=0; until ip -4 -o addr show scope global | grep -q inet; do \
i=$$((i + 1)); [ "$$i" -gt 600 ] && exit 1; sleep 0.1; done'
ExecStart={SCRIPT_PATH}
StandardOutput=append:/var/log/nova-user-data.log
StandardError=inherit

[Install]
WantedBy=multi-user.target
"""

_STATES = {
    "running": power_state.RUNNING,
    "stopped": power_state.SHUTDOWN,
    "frozen": power_state.PAUSED,
}


class LxdError(Exception):
    """LXD refused a request or did not answer in time."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Lxd:
    """The few LXD REST calls the driver needs."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or next((p for p in SOCKETS if p and os.path.exists(p)), SOCKETS[1])

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> tuple[int, dict[str, Any]]:
        """Send one request; return the HTTP status and the decoded answer."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn = _UnixConnection(self.path, timeout)
        try:
            conn.request(method, url, body=data, headers=headers or {})
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise LxdError(f"{method} {url}: {exc}") from exc
        finally:
            conn.close()
        return response.status, answer

    def call(self, method: str, url: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Send a request and wait for its operation, if it starts one; raise on failure."""
        status, answer = self.request(method, url, body, **kwargs)
        if status >= 400 or answer.get("type") == "error":
            raise LxdError(f"{method} {url}: {status} {answer.get('error', answer)}")
        if answer.get("type") == "async":
            wait = f"{answer['operation']}/wait?timeout={OPERATION_TIMEOUT}"
            status, done = self.request("GET", wait, timeout=OPERATION_TIMEOUT + TIMEOUT)
            meta = done.get("metadata") or {}
            if status >= 400 or meta.get("status") != "Success":
                raise LxdError(f"{method} {url}: {meta.get('err') or done.get('error') or meta}")
        return answer

    def status(self, name: str) -> str | None:
        """The instance's status (``Running``, ``Stopped``...), None when it does not exist."""
        status, answer = self.request("GET", f"/1.0/instances/{name}/state")
        if status == 404:
            return None
        if status >= 400:
            raise LxdError(f"state of {name}: {status} {answer.get('error')}")
        return str(answer["metadata"]["status"])

    def statuses(self) -> dict[str, str]:
        """Status of every instance named ``nova-*``."""
        answer = self.call("GET", "/1.0/instances?recursion=1")
        return {
            i["name"]: i["status"]
            for i in answer.get("metadata") or []
            if i["name"].startswith(NAME_PREFIX)
        }

    def create(
        self, name: str, alias: str, devices: dict[str, Any], config: dict[str, str]
    ) -> None:
        """Create (not start) a container from an image alias."""
        body = {
            "name": name,
            "type": "container",
            "source": {"type": "image", "alias": alias},
            "profiles": ["default"],
            "devices": devices,
            "config": config,
        }
        self.call("POST", "/1.0/instances", body)

    def push(self, name: str, path: str, content: bytes, mode: str, kind: str = "file") -> None:
        """Write a file (or a symlink to ``content``) into the instance, owned by root."""
        headers = {
            "Content-Type": "application/octet-stream",
            "X-LXD-uid": "0",
            "X-LXD-gid": "0",
            "X-LXD-mode": mode,
            "X-LXD-type": kind,
            "X-LXD-write": "overwrite",
        }
        query = urllib.parse.urlencode({"path": path})
        self.call("POST", f"/1.0/instances/{name}/files?{query}", raw=content, headers=headers)

    def set_state(self, name: str, action: str, force: bool = False) -> None:
        """Start, stop or restart the instance."""
        body = {"action": action, "timeout": 30, "force": force}
        self.call("PUT", f"/1.0/instances/{name}/state", body)

    def stop(self, name: str, force: bool = False) -> None:
        """Stop the instance; one that stopped by itself meanwhile (a runner shut down) is fine."""
        try:
            self.set_state(name, "stop", force=force)
        except LxdError:
            if (self.status(name) or "stopped").lower() != "stopped":
                raise

    def delete(self, name: str) -> None:
        """Stop (forced) and delete the instance, retried for a while; gone is a success.

        A container that is shutting down by itself (a runner after its job) can refuse the
        stop or the delete for a moment: both are retried until OPERATION_TIMEOUT.
        """
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while True:
            status = self.status(name)
            if status is None:
                return
            try:
                if status.lower() != "stopped":
                    self.stop(name, force=True)
                self.call("DELETE", f"/1.0/instances/{name}")
                return
            except LxdError as exc:
                if self.status(name) is None:
                    return
                if time.monotonic() > deadline:
                    raise
                LOG.warning("retrying the delete of %s: %s", name, exc)
                time.sleep(1)


def container_name(instance: Any) -> str:
    """The LXD instance of a nova server."""
    return f"{NAME_PREFIX}{instance.uuid}"


def lxd_alias(instance: Any) -> str | None:
    """The LXD image alias of a server whose image asks for LXD, else None."""
    sysmeta = instance.system_metadata or {}
    return sysmeta.get(SYSMETA_PREFIX + IMAGE_PROPERTY) or None


def user_data_script(instance: Any) -> bytes | None:
    """The server's user data when it is a script (what cloud-init would run), else None."""
    if not instance.user_data:
        return None
    data = base64.b64decode(instance.user_data)
    return data if data.startswith(b"#!") else None


class GithubRunnerLxdDriver(fake.FakeDriver):
    """Nova's fake driver, except that servers of an LXD-tagged image run as LXD containers."""

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self.lxd = Lxd()
        self._seen: dict[str, str] = {}
        self._poller: threading.Thread | None = None

    def init_host(self, host: str) -> None:
        """Start the power-state poller."""
        super().init_host(host)
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="lxd-poller", daemon=True)
            self._poller.start()

    # --- life cycle -------------------------------------------------------------------------

    def spawn(  # noqa: PLR0917 - nova's signature
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        injected_files: Any,
        admin_password: Any,
        allocations: Any,
        network_info: Any = None,
        block_device_info: Any = None,
        power_on: bool = True,
        accel_info: Any = None,
    ) -> None:
        """Create and start the container (LXD images); the fake records the server too."""
        alias = lxd_alias(instance)
        if alias is not None:
            self._spawn_container(instance, alias, power_on)
        super().spawn(
            context,
            instance,
            image_meta,
            injected_files,
            admin_password,
            allocations,
            network_info,
            block_device_info,
            power_on,
            accel_info,
        )

    def _spawn_container(self, instance: Any, alias: str, power_on: bool) -> None:
        name = container_name(instance)
        sysmeta = instance.system_metadata or {}
        network = sysmeta.get(SYSMETA_PREFIX + NETWORK_PROPERTY)
        devices = {"eth0": {"type": "nic", "network": network, "name": "eth0"}} if network else {}
        flavor = instance.flavor
        config = {
            "limits.cpu": str(flavor.vcpus),
            "limits.memory": f"{flavor.memory_mb}MB",
            "user.nova.uuid": instance.uuid,
            "user.nova.name": instance.display_name or "",
        }
        began = time.monotonic()
        try:
            self.lxd.create(name, alias, devices, config)
            script = user_data_script(instance)
            if script is not None:
                self.lxd.push(name, SCRIPT_PATH, script, "0700")
                self.lxd.push(name, f"/etc/systemd/system/{UNIT_NAME}", UNIT.encode(), "0644")
                wants = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
                self.lxd.push(name, wants, f"../{UNIT_NAME}".encode(), "0777", kind="symlink")
            elif instance.user_data:
                LOG.warning("user data is not a script: not run", instance=instance)
            if power_on:
                self.lxd.set_state(name, "start")
        except LxdError as exc:
            LOG.error("LXD container %s failed: %s", name, exc, instance=instance)
            try:
                self.lxd.delete(name)
            except LxdError:
                LOG.exception("could not remove %s", name, instance=instance)
            raise exception.InstanceDeployFailure(reason=f"LXD: {exc}") from exc
        self._seen[instance.uuid] = "Running" if power_on else "Stopped"
        LOG.info(
            "LXD container %s from %s (network %s) in %.2f s",
            name,
            alias,
            network or "none",
            time.monotonic() - began,
            instance=instance,
        )

    def destroy(  # noqa: PLR0917 - nova's signature
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        destroy_disks: bool = True,
        destroy_secrets: bool = True,
    ) -> None:
        """Delete the container (LXD images; nothing to do when it is gone)."""
        # Always, whatever the image's property says: the container's existence decides (a
        # missing one is a no-op).
        self._seen.pop(instance.uuid, None)
        try:
            self.lxd.delete(container_name(instance))
        except LxdError as exc:
            raise exception.NovaException(f"LXD delete failed: {exc}") from exc
        super().destroy(
            context, instance, network_info, block_device_info, destroy_disks, destroy_secrets
        )

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Stop the container (forced when nova gives no clean-shutdown time)."""
        name = container_name(instance)
        status = self.lxd.status(name)
        if status is None and lxd_alias(instance) is not None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        if status is not None:
            if status.lower() != "stopped":
                self.lxd.stop(name, force=timeout == 0)
            self._seen[instance.uuid] = "Stopped"
        super().power_off(instance, timeout, retry_interval)

    def power_on(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        accel_info: Any = None,
    ) -> None:
        """Start the container again; its user data unit runs again, as at first boot."""
        name = container_name(instance)
        status = self.lxd.status(name)
        if status is not None:
            if status.lower() == "stopped":
                self.lxd.set_state(name, "start")
            self._seen[instance.uuid] = "Running"
        super().power_on(context, instance, network_info, block_device_info, accel_info)

    def reboot(  # noqa: PLR0917 - nova's signature
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        reboot_type: Any,
        block_device_info: Any = None,
        bad_volumes_callback: Any = None,
        accel_info: Any = None,
    ) -> None:
        """Restart the container (LXD images)."""
        name = container_name(instance)
        if self.lxd.status(name) is not None:
            self.lxd.set_state(name, "restart", force=reboot_type == "HARD")
        super().reboot(
            context,
            instance,
            network_info,
            reboot_type,
            block_device_info,
            bad_volumes_callback,
            accel_info,
        )

    def get_info(self, instance: Any, use_cache: bool = True) -> hardware.InstanceInfo:
        """The power state: the container's when the server has one."""
        try:
            status = self.lxd.status(container_name(instance))
        except LxdError as exc:
            LOG.warning("LXD state unknown: %s", exc, instance=instance)
            return hardware.InstanceInfo(state=power_state.NOSTATE)
        if status is None:
            if lxd_alias(instance) is not None:
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            return super().get_info(instance, use_cache)
        return hardware.InstanceInfo(state=_STATES.get(status.lower(), power_state.NOSTATE))

    # --- power state events -----------------------------------------------------------------

    def _poll(self) -> None:
        """Emit STOPPED/STARTED lifecycle events when a container's status changes."""
        delay, failing = POLL_INTERVAL, False
        while True:
            time.sleep(delay)
            try:
                statuses = self.lxd.statuses()
            except LxdError as exc:  # once when it starts failing, then quietly backed off
                if not failing:
                    LOG.warning("LXD poll failed (retrying, up to every %ss): %s", POLL_MAX, exc)
                failing, delay = True, min(delay * 2, POLL_MAX)
                continue
            if failing:
                LOG.info("LXD answers again: polling every %ss", POLL_INTERVAL)
            delay, failing = POLL_INTERVAL, False
            self._emit_changes(statuses)

    def _emit_changes(self, statuses: dict[str, str]) -> None:
        """Emit the lifecycle events of one poll's statuses (by container name)."""
        for name, now in statuses.items():
            uuid = name[len(NAME_PREFIX) :]
            before = self._seen.get(uuid)
            self._seen[uuid] = now  # first sight (e.g. after a restart): no event
            if before is None or before == now:
                continue
            if now.lower() == "stopped":
                transition = virtevent.EVENT_LIFECYCLE_STOPPED
            elif now.lower() == "running":
                transition = virtevent.EVENT_LIFECYCLE_STARTED
            else:
                continue
            LOG.info("LXD container %s%s: %s -> %s", NAME_PREFIX, uuid, before, now)
            try:
                self.emit_event(virtevent.LifecycleEvent(uuid, transition))
            except Exception:
                LOG.exception("lifecycle event of %s failed", uuid)
        for uuid in set(self._seen) - {n[len(NAME_PREFIX) :] for n in statuses}:
            self._seen.pop(uuid, None)
