"""Fakes of the core seams (LXD, GitHub, policy service) for RunnerManager and Runner tests.

They keep state like the real services do, so tests assert on outcomes, not on calls.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import SecretStr

import errors
from github_api.types import (
    GitHubPath,
    GitHubRepo,
    GitHubRunnerStatus,
    JITConfig,
    JobInfo,
    RegistrationToken,
    RunnerApplication,
    SelfHostedRunner,
)
from harness.local import local_charm_state
from lxd.types import ExecResult, ImageInfo, InstanceStatus
from manager.state import CharmState
from runner_type import VirtualMachineResources

NOW = datetime.now(timezone.utc)


def make_state(**overrides: Any) -> CharmState:
    """A valid CharmState for tests."""
    values: dict[str, Any] = {
        "token": SecretStr("ghp_test_token"),
        "labels": ("fast",),
        "virtual_machines": 2,
        "vm_resources": VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB"),
        "app_name": "gh",
    }
    return local_charm_state(**{**values, **overrides})


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
        return self._instance.files_pushed[path][0]


@dataclass
class FakeInstance:
    lxd: FakeLxd
    name: str
    created_at: datetime
    config: dict[str, str]
    devices: dict[str, dict[str, str]]
    status: InstanceStatus = InstanceStatus.RUNNING
    files_pushed: dict[str, tuple[bytes, int, int, int]] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    pre_job_running: bool = False

    @property
    def last_status(self) -> InstanceStatus:
        return self.status

    @property
    def files(self) -> FakeFiles:
        return FakeFiles(self)

    def refresh(self) -> FakeInstance:
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        if self.lxd.fail_ready:
            raise errors.LXDTimeoutError("not ready", "wait", self.name)

    def set_config(self, values: Mapping[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value

    def add_device(self, name: str, device: Mapping[str, str]) -> None:
        self.devices[name] = dict(device)

    def execute(self, cmd: list[str], **kwargs: Any) -> ExecResult:
        self.commands.append(cmd)
        if cmd[:2] == ["test", "-e"]:
            return ExecResult(0 if self.pre_job_running else 1, "", "")
        if "Runner.Listener --version" in " ".join(cmd):
            version = self.lxd.image_runner_version
            return ExecResult(0 if version else 127, version or "", "")
        if "tar -czf /tmp/github-runner-logs.tar.gz" in " ".join(cmd):
            self.files_pushed["/tmp/github-runner-logs.tar.gz"] = (
                b"logs of " + self.name.encode(),
                0o644,
                0,
                0,
            )
        if kwargs.get("check") and self.lxd.fail_exec:
            raise errors.LXDError("exec failed", "exec", self.name)
        return ExecResult(0, "", "")

    def delete(self, wait: bool = True, timeout: float | None = None) -> None:
        with self.lxd.lock:
            if self.name not in self.lxd.instances:
                raise errors.LXDNotFoundError("gone", "delete", self.name)
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
        self.fail_ready = False
        self.fail_exec = False
        self._creates = itertools.count(1)

    def create(self, name: str, image_alias: str, **kwargs: Any) -> FakeInstance:
        if image_alias not in self.images:
            raise errors.LXDImageNotFoundError(f"no image {image_alias}", "create", name)
        n = next(self._creates)
        if self.fail_create_every and n % self.fail_create_every == 0:
            raise errors.LXDError("create failed", "create", name)
        inst = FakeInstance(
            lxd=self,
            name=name,
            created_at=datetime.now(timezone.utc),
            config={
                **kwargs.get("config", {}),
                "volatile.idmap.current": (
                    '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536}]'
                ),
            },
            devices=dict(kwargs.get("devices", {})),
        )
        inst.profiles = list(kwargs.get("profiles", []))  # type: ignore[attr-defined]
        with self.lock:
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

    def list(
        self, prefix: str | None = None, user_config: Mapping[str, str] | None = None
    ) -> list[FakeInstance]:
        with self.lock:
            return sorted(
                (
                    i
                    for i in self.instances.values()
                    if prefix is None or i.name.startswith(prefix)
                ),
                key=lambda i: i.name,
            )

    def wait_instances_settled(self, prefix: str, timeout: float) -> list[str]:
        return []

    def get(self, name: str) -> FakeInstance:
        try:
            return self.instances[name]
        except KeyError:
            raise errors.LXDNotFoundError(f"no instance {name}", "get", name) from None

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


@dataclass
class FakeRecord:
    id: int
    name: str
    labels: tuple[str, ...]
    online: bool = False
    busy: bool = False


class FakeGithub:
    """Holds runner records like GitHub, with switchable failures."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[int, FakeRecord] = {}
        self._ids = itertools.count(1)
        self.calls: list[str] = []
        self.fail_list: Exception | None = None
        self.fail_jit: Exception | None = None
        self.jobs: dict[int, list[JobInfo]] = {}
        self.version = "2.330.0"

    def _call(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)

    def list_runners(self, path: GitHubPath, prefix: str) -> list[SelfHostedRunner]:
        self._call("list_runners")
        if self.fail_list:
            raise self.fail_list
        return [
            SelfHostedRunner(
                id=r.id,
                name=r.name,
                status=GitHubRunnerStatus.ONLINE if r.online else GitHubRunnerStatus.OFFLINE,
                busy=r.busy,
                labels=r.labels,
            )
            for r in self.records.values()
            if r.name.startswith(prefix)
        ]

    def by_name(self, name: str) -> FakeRecord | None:
        return next((r for r in self.records.values() if r.name == name), None)

    def add_record(self, name: str, online: bool = True, busy: bool = False) -> FakeRecord:
        rec = FakeRecord(next(self._ids), name, ("self-hosted",), online, busy)
        self.records[rec.id] = rec
        return rec

    def delete_runner(self, path: GitHubPath, runner_id: int, runner_name: str = "") -> None:
        self._call("delete_runner")
        with self.lock:
            rec = self.records.get(runner_id)
            if rec is None:
                return
            if rec.busy:
                raise errors.RunnerBusyError(runner_name or rec.name)
            del self.records[runner_id]

    def get_jit_config(self, path: GitHubPath, name: str, labels: Iterable[str]) -> JITConfig:
        self._call("get_jit_config")
        if self.fail_jit:
            raise self.fail_jit
        with self.lock:
            if any(r.name == name for r in self.records.values()):
                raise errors.GithubConflictError("exists", status=409)
            rec = FakeRecord(next(self._ids), name, tuple(labels))
            self.records[rec.id] = rec
        return JITConfig(runner_id=rec.id, encoded_jit_config=f"jit-{rec.id}")

    def get_registration_token(self, path: GitHubPath) -> RegistrationToken:
        self._call("get_registration_token")
        return RegistrationToken("reg-token", datetime.now(timezone.utc) + timedelta(hours=1))

    def get_runner_application(
        self, path: GitHubPath, os_name: str = "linux", arch: str = "x64"
    ) -> RunnerApplication:
        self._call("get_runner_application")
        return RunnerApplication(
            os=os_name,
            architecture=arch,
            download_url="http://127.0.0.1:1/runner.tar.gz",
            filename=f"actions-runner-{os_name}-{arch}-{self.version}.tar.gz",
        )

    def list_jobs_of_run(self, repo: GitHubRepo, run_id: int) -> list[JobInfo]:
        self._call("list_jobs_of_run")
        return self.jobs.get(run_id, [])


class FakeRepoPolicy:
    def __init__(self) -> None:
        self.issued = 0

    def get_one_time_token(self) -> str:
        self.issued += 1
        return f"one-time-{self.issued}"


def runner_tarball(path: Path, version: str = "2.330.0") -> Path:
    """Write a minimal valid runner tarball."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, body in (
            ("config.sh", b"#!/bin/sh\n"),
            ("run.sh", b"#!/bin/sh\n"),
            ("bin/Runner.Listener", version.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path
