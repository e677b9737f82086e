"""An in-memory stand-in for LXD's REST API (no daemon), and the fixtures that use it.

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

import lxd

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


@pytest.fixture(name="server")
def server_fixture() -> FakeLxd:
    return FakeLxd()


@pytest.fixture(name="client")
def client_fixture(server: FakeLxd) -> lxd.LxdClient:
    result = lxd.LxdClient(endpoint="/fake.socket", timeout=5)
    result.transport._client = SimpleNamespace(api=FakeNode(server, ""))  # type: ignore[assignment]
    return result
