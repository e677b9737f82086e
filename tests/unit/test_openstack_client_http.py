"""OpenstackClient over real HTTP: a Nova stand-in on 127.0.0.1 (no keystone: ``auth_type: none``).

Checks what only the wire shows: the microversion header, the name filter, pagination, the
base64 user data, tags and metadata, errors mapped by status, timeouts, idempotent delete.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from errors import (
    OpenstackBadRequestError,
    OpenstackError,
    OpenstackQuotaError,
    OpenstackTimeoutError,
)
from openstack_backend.client import OpenstackClient


@dataclass
class Nova:
    """What the stand-in holds and answers."""

    servers: list[dict[str, Any]] = field(default_factory=list)
    page: int = 1000  # servers per listing page
    create_answer: tuple[int, dict[str, Any]] | None = None
    delay: float = 0.0
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # shown by GET only, as Nova
    gone: set[str] = field(default_factory=set)  # listed, but a GET of them answers 404
    requests: list[tuple[str, str, str | None, Any]] = field(default_factory=list)


def _version(base: str) -> dict[str, Any]:
    """Nova's version document: 2.1 up to microversion 2.93."""
    links = [{"rel": "self", "href": base}]
    version = {"id": "v2.1", "status": "CURRENT", "min_version": "2.1", "version": "2.93"}
    return {"version": {**version, "links": links}}


def _page(nova: Nova, base: str, marker: str) -> dict[str, Any]:
    """One page of the server listing, after ``marker``, with the next page's link."""
    listed = nova.servers
    if marker:
        listed = listed[[s["id"] for s in listed].index(marker) + 1 :]
    body: dict[str, Any] = {"servers": listed[: nova.page]}
    if len(listed) > nova.page:
        href = f"{base}servers/detail?marker={listed[nova.page - 1]['id']}"
        body["servers_links"] = [{"rel": "next", "href": href}]
    return body


def _handler(nova: Nova) -> type[BaseHTTPRequestHandler]:  # noqa: C901 - the stand-in's routes
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def _send(self, code: int, body: Any = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client timed out
                self.wfile.write(data)

        def _record(self, body: Any = None) -> None:
            version = self.headers.get("OpenStack-API-Version")
            nova.requests.append((self.command, self.path, version, body))
            time.sleep(nova.delay)

        def do_GET(self) -> None:
            self._record()
            base = f"http://127.0.0.1:{self.server.server_port}/compute/v2.1/"
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path.rstrip("/") == "/compute/v2.1":
                return self._send(200, _version(base))
            if url.path == "/compute/v2.1/servers/detail":
                return self._send(200, _page(nova, base, query.get("marker", [""])[0]))
            found = [
                s
                for s in nova.servers
                if url.path.endswith(f"/servers/{s['id']}") and s["id"] not in nova.gone
            ]
            if found:
                fault = nova.faults.get(found[0]["id"])
                return self._send(
                    200, {"server": {**found[0], **({"fault": fault} if fault else {})}}
                )
            return self._send(404, {"itemNotFound": {"code": 404, "message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._record(body)
            if nova.create_answer is not None:
                return self._send(*nova.create_answer)
            spec = body["server"]
            server = {"id": f"id-{len(nova.servers)}", "name": spec["name"], "status": "BUILD"}
            nova.servers.append(server)
            return self._send(202, {"server": server})

        def do_DELETE(self) -> None:
            self._record()
            nova.servers = [s for s in nova.servers if not self.path.endswith(s["id"])]
            return self._send(204)

    return Handler


@pytest.fixture
def nova() -> Nova:
    return Nova()


@pytest.fixture
def client(nova: Nova, tmp_path: Path) -> Iterator[OpenstackClient]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(nova))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  standin:\n    auth_type: none\n"
        f"    auth:\n      endpoint: {endpoint}/\n"
        f"    compute_endpoint_override: {endpoint}/compute/v2.1/\n"
    )
    yield OpenstackClient(clouds, "standin", timeout=1.0)
    server.shutdown()
    server.server_close()


def _server(name: str, ident: str, **extra: Any) -> dict[str, Any]:
    return {"id": ident, "name": name, "status": "ACTIVE", "metadata": {}, "tags": [], **extra}


def test_list_is_one_paginated_listing_at_the_microversion(nova: Nova, client) -> None:
    nova.servers = [_server(f"gh-0-{i:04x}", f"s{i}") for i in range(5)]
    nova.servers.append(_server("gh-01-ffff", "other"))  # Nova's regex could match: not ours
    nova.page = 2
    listed = client.list_servers("gh-0-")
    assert [s.id for s in listed] == [f"s{i}" for i in range(5)]
    gets = [r for r in nova.requests if "/servers/detail" in r[1]]
    assert len(gets) == 3  # the pages of one listing
    assert "name=%5Egh-0-" in gets[0][1]
    assert all(r[2] == "compute 2.93" for r in gets)


def test_servers_in_error_get_their_fault_which_the_listing_lacks(nova: Nova, client) -> None:
    nova.servers = [
        _server("gh-0-aaaa", "s1"),
        _server("gh-0-bbbb", "s2", status="ERROR"),
        _server("gh-0-cccc", "s3", status="ERROR"),
    ]
    nova.faults = {
        sid: {"code": 500, "message": "No valid host was found. "} for sid in ("s2", "s3")
    }
    nova.gone = {"s3"}  # deleted between the listing and the read: listed without its fault
    listed = client.list_servers("gh-0-")
    assert [(s.id, s.status, s.fault) for s in listed] == [
        ("s1", "ACTIVE", None),
        ("s2", "ERROR", "No valid host was found. "),
        ("s3", "ERROR", None),
    ]
    gets = [r[1] for r in nova.requests if r[0] == "GET" and "/servers" in r[1]]
    assert len([g for g in gets if "/servers/detail" in g]) == 1  # still one listing
    assert sorted(g.rsplit("/", 1)[1] for g in gets if "/detail" not in g) == ["s2", "s3"]


def test_create_sends_base64_user_data_tags_and_metadata(nova: Nova, client) -> None:
    view = client.create_server(
        "gh-0-abcd",
        image="img",
        flavor="flv",
        network="net",
        user_data="#!/bin/bash\necho hi\n",
        metadata={"github-runner-app": "gh"},
        tags=("github-runner",),
    )
    assert view.status == "BUILD"
    (post,) = [r for r in nova.requests if r[0] == "POST"]
    spec = post[3]["server"]
    assert spec["user_data"] == "IyEvYmluL2Jhc2gKZWNobyBoaQo="
    assert spec["tags"] == ["github-runner"]
    assert spec["metadata"] == {"github-runner-app": "gh"}
    assert spec["networks"] == [{"uuid": "net"}]
    assert (spec["imageRef"], spec["flavorRef"]) == ("img", "flv")
    assert post[2] == "compute 2.93"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            403,
            "Quota exceeded for instances: Requested 1, but already used 10",
            OpenstackQuotaError,
        ),
        (413, "Quota exceeded for cores", OpenstackQuotaError),
        (400, "Invalid imageRef provided.", OpenstackBadRequestError),
        (500, "Unexpected API Error.", OpenstackError),
    ],
)
def test_create_errors_are_mapped_by_status(
    nova: Nova, client, status: int, message: str, expected: type[OpenstackError]
) -> None:
    nova.create_answer = (status, {"error": {"code": status, "message": message}})
    with pytest.raises(expected) as caught:
        client.create_server(
            "gh-0-abcd", image="i", flavor="f", network="n", user_data="", metadata={}, tags=()
        )
    assert type(caught.value) is expected
    assert caught.value.status == status
    assert caught.value.server == "gh-0-abcd"


def test_delete_is_idempotent_over_the_wire(nova: Nova, client) -> None:
    nova.servers = [_server("gh-0-aaaa", "s1")]
    client.delete_server("s1")
    assert nova.servers == []
    client.delete_server("s1")  # gone: still a success
    client.delete_server("gh-0-never")
    assert sum(1 for r in nova.requests if r[0] == "DELETE") == 1


def test_a_slow_cloud_is_a_timeout_error(nova: Nova, client) -> None:
    client.list_servers("gh-0-")  # discovery done at full speed
    nova.delay = 3.0
    began = time.monotonic()
    with pytest.raises(OpenstackTimeoutError):
        client.list_servers("gh-0-")
    assert time.monotonic() - began < 3.0
