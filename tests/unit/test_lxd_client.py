"""LxdClient and LxdInstance over an in-memory stand-in for LXD's REST API (no daemon).

The stand-in replaces pylxd's API nodes (what :meth:`lxd.LxdTransport._connect` returns), answers
like LXD (sync/async responses, operations, 404s as pylxd exceptions) and records every call.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pylxd.exceptions
import pytest
import requests

import errors
import lxd
from lxd.types import InstanceStatus

IDMAP = '[{"Isuid":true,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":65536}]'


class FakeResponse:
    def __init__(
        self,
        status_code: int = 200,
        body: Any = None,
        content: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self._body = body
        self.content = content
        self.headers = headers or {}

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("not JSON")
        return self._body

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.content), chunk_size):
            yield self.content[start : start + chunk_size]

    def __enter__(self) -> FakeResponse:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def sync(metadata: Any = None, headers: dict[str, str] | None = None) -> FakeResponse:
    return FakeResponse(200, {"type": "sync", "metadata": metadata}, headers=headers)


def fail(status: int, message: str) -> None:
    response = FakeResponse(status, {"type": "error", "error": message})
    if status == 404:
        raise pylxd.exceptions.NotFound(response)
    if status == 409:
        raise pylxd.exceptions.Conflict(response)
    raise pylxd.exceptions.LXDAPIException(response)


class FakeNode:
    def __init__(self, server: FakeLxd, path: str) -> None:
        self._server = server
        self._path = path

    def __getitem__(self, item: str) -> FakeNode:
        return FakeNode(self._server, f"{self._path}/{item}".strip("/"))

    def __getattr__(self, method: str) -> Callable[..., FakeResponse]:
        def call(**kwargs: Any) -> FakeResponse:
            return self._server.handle(method, self._path, kwargs)

        return call


class FakeLxd:
    """A small in-memory LXD."""

    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.files: dict[tuple[str, str], tuple[bytes, str, dict[str, str]]] = {}
        self.profiles: dict[str, dict[str, Any]] = {"default": {"config": {}, "devices": {}}}
        self.pools: dict[str, dict[str, Any]] = {"default": {"driver": "btrfs"}}
        self.aliases = {"github-runner-test": "f" * 64}
        self.images: dict[str, dict[str, Any]] = {
            "f" * 64: {
                "created_at": "2026-11-23T07:44:53Z",
                "uploaded_at": "2026-11-23T07:45:03.739369Z",
                "properties": {"github-runner.kind": "test"},
                "type": "container",
                "size": 123,
            }
        }
        self.ops: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.exec_handler: Callable[[list[str]], tuple[int, bytes, bytes] | str] = lambda cmd: (
            0,
            b"",
            b"",
        )
        self.fail_start = False
        self.fail_create_op = False
        self.raise_on: dict[str, Exception] = {}
        self._ids = itertools.count(1)

    # -- plumbing --

    def op(self, status: str = "Success", err: str = "", metadata: Any = None) -> FakeResponse:
        op_id = f"op{next(self._ids)}"
        self.ops[op_id] = {"id": op_id, "status": status, "err": err, "metadata": metadata}
        return FakeResponse(
            202, {"type": "async", "operation": f"/1.0/operations/{op_id}", "metadata": {}}
        )

    def handle(self, method: str, path: str, kwargs: dict[str, Any]) -> FakeResponse:
        self.calls.append((method, path))
        assert "timeout" in kwargs, f"{method} {path} without a timeout"
        if path in self.raise_on:
            raise self.raise_on[path]
        parts = path.split("/") if path else []
        handler = getattr(self, f"_{parts[0].replace('-', '_')}" if parts else "_root")
        return handler(method, parts[1:], kwargs)

    def _root(self, method: str, parts: list[str], kwargs: dict[str, Any]) -> FakeResponse:
        return sync({"api_version": "1.0", "environment": {"driver": "lxc"}})

    def _operations(self, method: str, parts: list[str], kwargs: dict[str, Any]) -> FakeResponse:
        op = self.ops.get(parts[0])
        if op is None:
            fail(404, "Operation not found")
        assert op is not None
        if method == "delete":
            op["status"] = "Cancelled"
            return sync()
        if op["status"] == "Running":
            time.sleep(0.02)
        return sync(dict(op))

    # -- instances --

    def _instances(self, method: str, parts: list[str], kwargs: dict[str, Any]) -> FakeResponse:
        if not parts:
            if method == "get":
                return sync(copy.deepcopy(list(self.instances.values())))
            return self._create(kwargs["json"])
        name = parts[0]
        inst = self.instances.get(name)
        if inst is None:
            fail(404, "Instance not found")
        assert inst is not None
        rest = parts[1:]
        if not rest:
            return self._instance(method, inst, kwargs)
        if rest[0] == "state":
            if method == "get":
                return sync({"status": inst["status"]})
            return self._state(inst, kwargs["json"])
        if rest[0] == "exec":
            return self._exec(inst, kwargs["json"])
        if rest[0] == "logs":
            key = "/".join(rest)
            if method == "delete":
                self.logs.pop(key, None)
                return sync()
            return FakeResponse(200, content=self.logs[key])
        assert rest[0] == "files", parts
        return self._files(method, name, kwargs)

    def _instance(self, method: str, inst: dict[str, Any], kwargs: dict[str, Any]) -> FakeResponse:
        if method == "get":
            return sync(copy.deepcopy(inst), headers={"ETag": "etag-1"})
        if method == "put":
            return self._put_instance(inst, kwargs["json"])
        if inst["status"] == "Running":
            fail(400, "Instance is running")
        del self.instances[inst["name"]]
        return self.op()

    def _create(self, body: dict[str, Any]) -> FakeResponse:
        base: dict[str, Any] = {"config": {}, "devices": {}, "profiles": [], "type": ""}
        if body["source"]["type"] == "copy":
            if body["source"]["source"] not in self.instances:
                fail(404, "Instance not found")
            base = copy.deepcopy(self.instances[body["source"]["source"]])
        elif body["source"]["alias"] not in self.aliases:
            fail(404, "Image alias not found")
        if body["name"] in self.instances:
            fail(409, f'Instance "{body["name"]}" already exists')
        self.instances[body["name"]] = {
            "name": body["name"],
            "type": body.get("type", base["type"]),
            "status": "Stopped",
            "config": {**base["config"], **body["config"], "volatile.idmap.current": IDMAP},
            "devices": {**base["devices"], **body["devices"]},
            "profiles": body.get("profiles", base["profiles"]),
            "ephemeral": body["ephemeral"],
            "created_at": "2026-11-23T08:00:00.123456789Z",
            "architecture": "x86_64",
            "stateful": False,
            "description": "",
        }
        if self.fail_create_op:
            return self.op("Failure", "Failed creating instance: disk full")
        return self.op()

    def _put_instance(self, inst: dict[str, Any], body: dict[str, Any]) -> FakeResponse:
        for device in body["devices"].values():
            if device.get("type") == "proxy" and "connect" not in device:
                fail(400, "Invalid devices: missing connect")
        inst["config"] = dict(body["config"])
        inst["devices"] = {k: dict(v) for k, v in body["devices"].items()}
        return self.op()

    def _state(self, inst: dict[str, Any], body: dict[str, Any]) -> FakeResponse:
        if body["action"] == "start":
            if self.fail_start:
                return self.op("Failure", "Failed to start: no init")
            inst["status"] = "Running"
        elif body["action"] == "stop":
            if inst["status"] == "Stopped":
                return self.op("Failure", "The instance is already stopped")
            inst["status"] = "Stopped"
            if inst["ephemeral"]:
                del self.instances[inst["name"]]
        return self.op()

    def _exec(self, inst: dict[str, Any], body: dict[str, Any]) -> FakeResponse:
        assert body["record-output"] is True
        assert body["wait-for-websocket"] is False
        if inst["status"] != "Running":
            return self.op("Failure", "Instance is not running")
        outcome = self.exec_handler(body["command"])
        if outcome == "running":
            return self.op("Running")
        if outcome == "not-found":
            return self.op("Failure", "Command not found")
        assert isinstance(outcome, tuple)
        code, out, err = outcome
        n = next(self._ids)
        self.logs[f"logs/exec-output/{n}.stdout"] = out
        self.logs[f"logs/exec-output/{n}.stderr"] = err
        base = f"/1.0/instances/{inst['name']}/logs/exec-output/{n}"
        return self.op(
            metadata={"return": code, "output": {"1": f"{base}.stdout", "2": f"{base}.stderr"}}
        )

    def _files(self, method: str, name: str, kwargs: dict[str, Any]) -> FakeResponse:
        path = kwargs["params"]["path"]
        if method == "post":
            headers = kwargs["headers"]
            kind = headers["X-LXD-type"]
            if kind == "directory" and (name, path) in self.files:
                fail(400, "The path already exists")
            self.files[(name, path)] = (kwargs.get("data") or b"", kind, headers)
            return sync()
        if (name, path) not in self.files:
            fail(404, "Not Found")
        content, kind, _ = self.files[(name, path)]
        return FakeResponse(200, content=content, headers={"X-LXD-type": kind})

    # -- profiles, pools, images --

    def _profiles(self, method: str, parts: list[str], kwargs: dict[str, Any]) -> FakeResponse:
        if not parts:
            body = kwargs["json"]
            self.profiles[body["name"]] = {"config": body["config"], "devices": body["devices"]}
            return sync()
        if parts[0] not in self.profiles:
            fail(404, "Profile not found")
        if method == "get":
            return sync(dict(self.profiles[parts[0]]))
        if method == "put":
            body = kwargs["json"]
            self.profiles[parts[0]] = {"config": body["config"], "devices": body["devices"]}
            return sync()
        del self.profiles[parts[0]]
        return sync()

    def _storage_pools(
        self, method: str, parts: list[str], kwargs: dict[str, Any]
    ) -> FakeResponse:
        if not parts:
            body = kwargs["json"]
            self.pools[body["name"]] = {"driver": body["driver"], "config": body["config"]}
            return sync()
        if parts[0] not in self.pools:
            fail(404, "Storage pool not found")
        return sync(dict(self.pools[parts[0]]))

    def _images(self, method: str, parts: list[str], kwargs: dict[str, Any]) -> FakeResponse:
        if parts[0] == "aliases":
            if parts[1] not in self.aliases:
                fail(404, "Image alias not found")
            return sync({"name": parts[1], "target": self.aliases[parts[1]]})
        if parts[0] not in self.images:
            fail(404, "Image not found")
        if method == "delete":
            del self.images[parts[0]]
            self.aliases = {a: f for a, f in self.aliases.items() if f != parts[0]}
            return self.op()
        return sync(dict(self.images[parts[0]]))


@pytest.fixture
def server() -> FakeLxd:
    return FakeLxd()


@pytest.fixture
def client(server: FakeLxd) -> lxd.LxdClient:
    result = lxd.LxdClient(endpoint="/fake.socket", timeout=5)
    result.transport._client = SimpleNamespace(api=FakeNode(server, ""))  # type: ignore[assignment]
    return result


# --- instances ------------------------------------------------------------------------------


def test_create_start_list_get_delete(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create(
        "app-0-aa", "github-runner-test", config={"user.app": "app"}, devices={"p": {"a": "b"}}
    )
    assert inst.status == InstanceStatus.RUNNING
    assert inst.config["user.app"] == "app"
    assert inst.devices == {"p": {"a": "b"}}
    assert inst.instance_type == "container"
    assert server.instances["app-0-aa"]["ephemeral"] is True
    assert client.exists("app-0-aa")
    assert [i.name for i in client.list(prefix="app-0-")] == ["app-0-aa"]
    assert client.list(user_config={"app": "other"}) == []
    assert client.get("app-0-aa").created_at is not None
    inst.delete()
    assert not client.exists("app-0-aa")
    inst.delete()  # missing: no-op
    with pytest.raises(errors.LXDNotFoundError):
        client.get("app-0-aa")
    with pytest.raises(errors.LXDNotFoundError):
        inst.refresh()


def test_create_without_start_and_without_wait(client: lxd.LxdClient, server: FakeLxd):
    stopped = client.create("c1", "github-runner-test", start=False, ephemeral=False)
    assert stopped.status == InstanceStatus.STOPPED
    requested = client.create("c2", "github-runner-test", wait=False)
    assert requested.status == InstanceStatus.RUNNING  # the fake starts at once
    stopped.start()
    assert stopped.status == InstanceStatus.RUNNING


def test_copy_from_template(client: lxd.LxdClient, server: FakeLxd):
    client.create(
        "tmpl", "github-runner-test", start=False, ephemeral=False, config={"user.t": "1"}
    )
    inst = client.copy("tmpl", "c1", config={"user.app": "app"}, devices={"d": {"type": "x"}})
    assert inst.status == InstanceStatus.RUNNING
    assert inst.config["user.app"] == "app"
    assert inst.config["user.t"] == "1"
    assert server.instances["c1"]["profiles"] == ["default"]
    assert server.instances["c1"]["ephemeral"] is True
    other = client.copy("tmpl", "c2", profiles=["default", "cpu-1-mem-1GiB"], start=False)
    assert other.status == InstanceStatus.STOPPED
    assert server.instances["c2"]["profiles"] == ["default", "cpu-1-mem-1GiB"]
    with pytest.raises(errors.LXDNotFoundError):
        client.copy("missing", "c3")
    assert "c3" not in server.instances
    with pytest.raises(errors.LXDAlreadyExistsError):
        client.copy("tmpl", "c1")


def test_create_missing_image_leaves_nothing(client: lxd.LxdClient, server: FakeLxd):
    with pytest.raises(errors.LXDImageNotFoundError):
        client.create("c1", "nope")
    assert server.instances == {}


@pytest.mark.parametrize("failure", ["fail_start", "fail_create_op"])
def test_failed_create_or_start_is_cleaned_up(
    client: lxd.LxdClient, server: FakeLxd, failure: str
):
    setattr(server, failure, True)
    with pytest.raises(errors.LXDError):
        client.create("c1", "github-runner-test")
    assert server.instances == {}


def test_create_existing_name_keeps_the_original(client: lxd.LxdClient, server: FakeLxd):
    client.create("c1", "github-runner-test", start=False)
    with pytest.raises(errors.LXDAlreadyExistsError):
        client.create("c1", "github-runner-test")
    assert "c1" in server.instances


def test_create_rejects_bad_names_before_calling_lxd(client: lxd.LxdClient, server: FakeLxd):
    with pytest.raises(ValueError):
        client.create("bad_name", "github-runner-test")
    assert server.calls == []


def test_stop_ephemeral_and_stopped(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.stop(timeout=5)
    assert "c1" not in server.instances
    inst.stop()  # gone: no-op
    kept = client.create("c2", "github-runner-test", ephemeral=False)
    kept.stop(force=True)
    assert kept.status == InstanceStatus.STOPPED
    kept.stop()  # already stopped: no-op
    kept.delete(wait=False)
    assert "c2" not in server.instances


def test_delete_failure_that_is_not_a_disappearance_raises(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test", start=False)
    server.raise_on["instances/c1"] = pylxd.exceptions.LXDAPIException(
        FakeResponse(500, {"error": "storage busy"})
    )
    with pytest.raises(errors.LXDError, match="storage busy"):
        inst.delete()


# --- devices and config ---------------------------------------------------------------------


PROXY = {
    "type": "proxy",
    "bind": "instance",
    "listen": "tcp:127.0.0.1:8080",
    "connect": "tcp:127.0.0.1:8080",
}


def test_devices_and_config(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.add_device("p", PROXY)
    assert server.instances["c1"]["devices"]["p"]["connect"] == "tcp:127.0.0.1:8080"
    puts = len([c for c in server.calls if c == ("put", "instances/c1")])
    inst.add_device("p", dict(PROXY))  # same: no write
    assert len([c for c in server.calls if c == ("put", "instances/c1")]) == puts
    with pytest.raises(errors.LXDError, match="missing connect"):
        inst.add_device("bad", {"type": "proxy"})
    assert "bad" not in server.instances["c1"]["devices"]
    inst.remove_device("p")
    inst.remove_device("p")
    assert server.instances["c1"]["devices"] == {}
    inst.set_config({"user.flavor": "small", "user.app": None})
    assert server.instances["c1"]["config"]["user.flavor"] == "small"
    assert inst.config["user.flavor"] == "small"
    assert inst.host_ids_of_root() == (100000, 100000)
    server.instances["c1"]["config"]["volatile.idmap.current"] = "garbage"
    with pytest.raises(errors.LXDError, match="idmap"):
        inst.host_ids_of_root()


# --- exec and waiting -----------------------------------------------------------------------


def test_execute_and_output_cleanup(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: (0, b"out", b"err")
    inst = client.create("c1", "github-runner-test")
    assert inst.execute(["echo"]) == lxd.ExecResult(0, "out", "err")
    assert server.logs == {}  # exec logs are deleted after reading
    server.exec_handler = lambda cmd: "not-found"
    assert inst.execute(["nope"]).exit_code == 127
    with pytest.raises(errors.LXDExecError):
        inst.execute(["nope"], check=True)


def test_execute_timeout_hides_secrets(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: "running"
    inst = client.create("c1", "github-runner-test")
    with pytest.raises(errors.LXDTimeoutError) as info:
        inst.execute(["run.sh", "--jitconfig", "JIT"], timeout=0.2, secret_args=["JIT"])
    assert "JIT" not in str(info.value)
    assert any(op["status"] == "Cancelled" for op in server.ops.values())


def test_execute_on_stopped_instance_fails(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test", start=False)
    with pytest.raises(errors.LXDError, match="not running"):
        inst.execute(["true"])


def test_wait_ready_polls_until_booted(client: lxd.LxdClient, server: FakeLxd):
    states = iter([b"starting\n", b"starting\n", b"degraded\n"])
    server.exec_handler = lambda cmd: (1, next(states), b"")
    inst = client.create("c1", "github-runner-test")
    inst.wait_ready(timeout=5)
    server.exec_handler = lambda cmd: "not-found"  # no systemctl
    inst.wait_ready(timeout=5)
    server.exec_handler = lambda cmd: (0, b"", b"")
    inst.wait_ready(timeout=5, booted=False)


def test_wait_ready_times_out_with_last_state(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: (1, b"starting\n", b"")
    inst = client.create("c1", "github-runner-test")
    with pytest.raises(errors.LXDTimeoutError, match="last state: starting"):
        inst.wait_ready(timeout=0.3)
    inst.delete()
    with pytest.raises(errors.LXDNotFoundError):
        inst.wait_ready(timeout=5, booted=False)


# --- files ----------------------------------------------------------------------------------


def test_files(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.files.push("/tmp/a", b"hello", mode=0o600, uid=1000, gid=1000)
    _, kind, headers = server.files[("c1", "/tmp/a")]
    assert (kind, headers["X-LXD-mode"], headers["X-LXD-uid"]) == ("file", "0600", "1000")
    assert inst.files.pull("/tmp/a") == b"hello"
    assert inst.files.pull("/tmp/a", max_bytes=5) == b"hello"
    with pytest.raises(errors.LXDError, match="larger than 4"):
        inst.files.pull("/tmp/a", max_bytes=4)
    inst.files.mkdir("/tmp/d")
    inst.files.mkdir("/tmp/d")  # exists: kept
    with pytest.raises(errors.LXDError, match="directory"):
        inst.files.pull("/tmp/d")
    server.files[("c1", "/tmp/l")] = (b"/etc/shadow", "symlink", {})
    with pytest.raises(errors.LXDError, match="symlink"):
        inst.files.pull("/tmp/l")
    with pytest.raises(errors.LXDNotFoundError):
        inst.files.pull("/tmp/missing")
    with pytest.raises(errors.LXDNotFoundError):
        client.get("c1").delete() or inst.files.mkdir("/x")


# --- profiles, pools, images, server --------------------------------------------------------


def test_profiles(client: lxd.LxdClient, server: FakeLxd):
    name = client.resource_profile(cpu=2, memory=7, disk=10)
    assert name == "cpu-2-mem-7GiB-disk-10GiB"
    assert server.profiles[name]["config"] == {"limits.cpu": "2", "limits.memory": "7GiB"}
    assert server.profiles[name]["devices"]["root"]["size"] == "10GiB"
    assert client.resource_profile(cpu=2, memory="7GiB", disk="10GiB") == name
    assert not client.create_or_update_profile(
        name, server.profiles[name]["config"], server.profiles[name]["devices"]
    )
    assert client.create_or_update_profile(name, {"limits.cpu": "1"})
    assert server.profiles[name] == {"config": {"limits.cpu": "1"}, "devices": {}}
    assert client.profile_exists(name)
    client.delete_profile(name)
    client.delete_profile(name)
    assert not client.profile_exists(name)


def test_storage_pools(client: lxd.LxdClient, server: FakeLxd):
    assert client.storage_pool_exists("default")
    assert not client.create_storage_pool("default", "btrfs")
    with pytest.raises(errors.LXDError, match="driver btrfs"):
        client.create_storage_pool("default", "dir")
    assert client.create_storage_pool("fast", "btrfs", {"size": "10GiB"})
    assert server.pools["fast"]["config"] == {"size": "10GiB"}
    assert not client.storage_pool_exists("nope")


def test_images(client: lxd.LxdClient, server: FakeLxd):
    info = client.image_info("github-runner-test")
    assert info.fingerprint == "f" * 64
    assert info.properties == {"github-runner.kind": "test"}
    assert info.created_at is not None
    assert info.size == 123
    assert client.image_exists("github-runner-test")
    client.delete_image("github-runner-test")
    assert not client.image_exists("github-runner-test")
    client.delete_image("github-runner-test")  # missing: no-op
    with pytest.raises(errors.LXDImageNotFoundError):
        client.image_info("github-runner-test")


def test_server_info(client: lxd.LxdClient):
    assert client.is_available()
    assert client.server_info()["api_version"] == "1.0"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (requests.exceptions.ReadTimeout("slow"), errors.LXDTimeoutError),
        (requests.exceptions.ConnectionError("refused"), errors.LXDUnavailableError),
        (requests.exceptions.InvalidURL("bad"), errors.LXDError),
    ],
)
def test_transport_errors_are_mapped(
    client: lxd.LxdClient, server: FakeLxd, exc: Exception, expected: type[errors.LXDError]
):
    server.raise_on["instances"] = exc
    with pytest.raises(expected) as info:
        client.list()
    assert info.value.operation == "list"
    assert not isinstance(info.value, errors.LXDTimeoutError) or expected is errors.LXDTimeoutError
