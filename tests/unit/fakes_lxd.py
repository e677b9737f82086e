"""Fake of the LXD seam (:mod:`lxd.seam`): instances that keep state like the daemon does.

``FakeLxd`` satisfies ``LxdCloud``, ``FakeInstance`` ``LxdInstanceHandle`` and ``FakeFiles``
``LxdInstanceFiles``: mypy and tests/unit/test_fakes_conform.py check it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import errors
from lxd.types import Device, ExecResult, ImageInfo, InstanceStatus, InstanceType
from tests.unit.fakes_core import NOW

# What LXD writes for an unprivileged container: uids and gids, each in its own entry.
IDMAP = (
    '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536},'
    '{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":65536}]'
)


class FakeFiles:
    def __init__(self, instance: FakeInstance) -> None:
        self._instance = instance

    def push(
        self, path: str, content: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        self._instance.files_pushed[path] = (content, mode, uid, gid)

    def pull(self, path: str, max_bytes: int | None = None) -> bytes:
        if path not in self._instance.files_pushed:
            raise errors.LXDNotFoundError(f"no file {path}", "pull", self._instance.name)
        content = self._instance.files_pushed[path][0]
        if max_bytes is not None and len(content) > max_bytes:
            raise errors.LXDError(f"pull: {path} is larger than {max_bytes} bytes", "pull")
        return content


@dataclass
class FakeInstance:
    lxd: FakeLxd
    name: str
    created_at: datetime
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    status: InstanceStatus = InstanceStatus.RUNNING
    ephemeral: bool = True
    profiles: list[str] = field(default_factory=list)
    files_pushed: dict[str, tuple[bytes, int, int, int]] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    pre_job_running: bool = False
    addressed: bool = False  # wait_address returned

    @property
    def last_status(self) -> InstanceStatus:
        return self.status

    @property
    def files(self) -> FakeFiles:
        return FakeFiles(self)

    def refresh(self) -> FakeInstance:
        if self.name not in self.lxd.instances:
            raise errors.LXDNotFoundError(f"no instance {self.name}", "get", self.name)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        if self.lxd.fail_ready:
            raise errors.LXDTimeoutError("not ready", "wait", self.name)

    def wait_address(self, nic: str, timeout: float = 60.0) -> str:
        if self.lxd.fail_address:
            raise errors.LXDTimeoutError(f"no address on {nic}", "wait", self.name)
        self.addressed = True
        return "198.18.0.100"

    def set_config(self, values: Mapping[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value

    def add_device(self, name: str, device: Device) -> None:
        self.devices[name] = dict(device)

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
        self.commands.append(cmd)
        if cmd[:2] == ["test", "-e"]:
            return ExecResult(0 if self.pre_job_running else 1, "", "")
        if "Runner.Listener --version" in " ".join(cmd):
            version = self.lxd.image_runner_version
            return ExecResult(0 if version else 127, version or "", "")
        if "> /tmp/github-runner-logs.log" in " ".join(cmd):
            self.files_pushed["/tmp/github-runner-logs.log"] = (
                b"logs of " + self.name.encode(),
                0o644,
                0,
                0,
            )
        if check and self.lxd.fail_exec_with is not None:
            raise self.lxd.fail_exec_with
        if check and self.lxd.fail_exec:
            raise errors.LXDError("exec failed", "exec", self.name)
        return ExecResult(0, "", "")

    def stop(self, *, force: bool = False) -> None:
        with self.lxd.lock:
            if self.name not in self.lxd.instances:
                return
            self.status = InstanceStatus.STOPPED
            if self.ephemeral:
                del self.lxd.instances[self.name]
                self.lxd.deleted.append(self.name)

    def delete(self) -> None:
        with self.lxd.lock:
            if self.name not in self.lxd.instances:
                return  # like LXD's seam: deleting a missing instance is a no-op
            del self.lxd.instances[self.name]
            self.lxd.deleted.append(self.name)


class FakeLxd:
    """Holds instances, profiles and images like an LXD daemon."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: dict[str, FakeInstance] = {}
        self.deleted: list[str] = []
        self.profiles: set[str] = set()
        self.images = {"github-runner-test": "f" * 64}
        self.image_runner_version: str | None = "2.330.0"
        self.fail_create_every: int = 0  # fail every Nth create (0: never)
        self.fail_copy = False  # cloning from a template fails (a broken template)
        self.copies: list[tuple[str, str]] = []  # (template, clone) of every copy
        self.fail_ready = False
        self.fail_address = False  # no DHCP lease ever comes
        self.missing_networks: set[str] = set()  # runner_profile refuses these
        self.network_dhcp = True  # LXD runs DHCP on every network: runner IPv4 filtered
        self.fail_exec = False
        self.fail_exec_with: Exception | None = None  # raised by a checked exec (any error)
        self._creates = itertools.count(1)

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
    ) -> FakeInstance:
        if image_alias not in self.images:
            raise errors.LXDImageNotFoundError(f"no image {image_alias}", "create", name)
        n = next(self._creates)
        if self.fail_create_every and n % self.fail_create_every == 0:
            raise errors.LXDError("create failed", "create", name)
        return self._add(
            name,
            config={**(config or {}), "volatile.idmap.current": IDMAP},
            devices={key: dict(value) for key, value in (devices or {}).items()},
            status=InstanceStatus.RUNNING if start else InstanceStatus.STOPPED,
            ephemeral=ephemeral,
            profiles=list(profiles),
        )

    def copy(
        self,
        source: str,
        name: str,
        *,
        profiles: Iterable[str] | None = None,
        config: Mapping[str, str] | None = None,
        devices: Mapping[str, Device] | None = None,
    ) -> FakeInstance:
        template = self.get(source)
        if self.fail_copy:
            raise errors.LXDError("copy failed", "copy", name)
        self.copies.append((source, name))
        return self._add(
            name,
            config={**template.config, **(config or {})},
            devices={**template.devices, **{k: dict(v) for k, v in (devices or {}).items()}},
            status=InstanceStatus.RUNNING,
            ephemeral=True,
            profiles=list(template.profiles if profiles is None else profiles),
        )

    def _add(
        self,
        name: str,
        *,
        config: dict[str, str],
        devices: dict[str, dict[str, str]],
        status: InstanceStatus,
        ephemeral: bool,
        profiles: list[str],
    ) -> FakeInstance:
        inst = FakeInstance(
            self,
            name,
            datetime.now(timezone.utc),
            config,
            devices,
            status,
            ephemeral=ephemeral,
            profiles=profiles,
        )
        with self.lock:
            if name in self.instances:
                raise errors.LXDAlreadyExistsError(f"{name} exists", "create", name)
            self.instances[name] = inst
        return inst

    def add_instance(
        self,
        name: str,
        age: timedelta = timedelta(minutes=30),
        status: InstanceStatus = InstanceStatus.RUNNING,
    ) -> FakeInstance:
        inst = FakeInstance(
            self,
            name,
            datetime.now(timezone.utc) - age,
            {"user.github-runner.created": "true"},
            {},
            status,
        )
        self.instances[name] = inst
        return inst

    def get(self, name: str) -> FakeInstance:
        try:
            return self.instances[name]
        except KeyError:
            raise errors.LXDNotFoundError(f"no instance {name}", "get", name) from None

    def exists(self, name: str) -> bool:
        return name in self.instances

    def wait_instances_settled(self, prefix: str, timeout: float) -> list[str]:
        return []

    def runner_profile(self, network: str, pool: str = "default") -> str:
        if network in self.missing_networks:
            raise errors.LXDNotFoundError(f"no network {network}", "get-network")
        name = f"runner-net-{network}-pool-{pool}" + ("-ipf" if self.network_dhcp else "")
        self.profiles.add(name)
        return name

    def resource_profile(
        self, cpu: int, memory: int | str, disk: int | str | None = None, pool: str = "default"
    ) -> str:
        name = f"cpu-{cpu}-mem-{memory}" + (f"-disk-{disk}" if disk else "")
        self.profiles.add(name)
        return name

    def image_exists(self, alias: str) -> bool:
        return alias in self.images

    def image_info(self, alias: str) -> ImageInfo:
        if alias not in self.images:
            raise errors.LXDImageNotFoundError(alias, "image", None)
        return ImageInfo(
            alias=alias, fingerprint=self.images[alias], created_at=NOW, uploaded_at=NOW
        )

    # Last: a method named ``list`` shadows the builtin for the annotations after it.
    def list(self, prefix: str | None = None) -> list[FakeInstance]:
        with self.lock:
            return sorted(
                (
                    i
                    for i in self.instances.values()
                    if prefix is None or i.name.startswith(prefix)
                ),
                key=lambda i: i.name,
            )
