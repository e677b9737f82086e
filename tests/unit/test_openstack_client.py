"""The openstacksdk client's pure parts: error mapping, server views, the name filter."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import keystoneauth1.exceptions as ks_exceptions
import openstack.exceptions as os_exceptions
import pytest
from openstack.compute.v2.server import Server

from errors import (
    OpenstackBadRequestError,
    OpenstackError,
    OpenstackNotFoundError,
    OpenstackQuotaError,
    OpenstackTimeoutError,
)
from openstack_backend.client import OpenstackClient, _regex, map_error, server_view


@pytest.mark.parametrize(
    ("exc", "expected", "status"),
    [
        (
            os_exceptions.ForbiddenException(
                "Quota exceeded for instances: Requested 1, but already used 10 of 10"
            ),
            OpenstackQuotaError,
            None,
        ),
        (os_exceptions.ForbiddenException("Policy does not allow"), OpenstackError, None),
        (os_exceptions.NotFoundException("no such image"), OpenstackNotFoundError, 404),
        (
            os_exceptions.ResourceNotFound("No Flavor found for m1.huge"),
            OpenstackNotFoundError,
            404,
        ),
        (ks_exceptions.ConnectTimeout("timed out"), OpenstackTimeoutError, None),
        (ks_exceptions.ConnectFailure("refused"), OpenstackTimeoutError, None),
    ],
)
def test_sdk_errors_map_to_project_errors(
    exc: Exception, expected: type[OpenstackError], status: int | None
) -> None:
    if isinstance(exc, os_exceptions.HttpException) and exc.status_code is None:
        exc.status_code = {os_exceptions.ForbiddenException: 403}.get(type(exc))
    mapped = map_error(exc, "create_server", "gh-0-ab")
    assert type(mapped) is expected
    assert mapped.operation == "create_server"
    if status is not None:
        assert mapped.status == status


def test_bad_request_is_its_own_error() -> None:
    exc = os_exceptions.BadRequestException("Invalid imageRef provided.")
    exc.status_code = 400
    mapped = map_error(exc, "create_server")
    assert isinstance(mapped, OpenstackBadRequestError)
    assert mapped.status == 400
    assert "Invalid imageRef" in str(mapped)


def test_server_view_reads_every_field_of_a_listing() -> None:
    server = Server(
        id="abc",
        name="gh-0-1234",
        status="ERROR",
        created="2026-12-04T00:10:00Z",
        fault={"code": 500, "message": "No valid host was found."},
        metadata={"github-runner-app": "gh", "github-runner-unit": "0"},
        tags=["github-runner"],
    )
    view = server_view(server)
    assert view.name == "gh-0-1234"
    assert view.status == "ERROR"
    assert view.created_at == datetime(2026, 12, 4, 0, 10, tzinfo=timezone.utc)
    assert view.fault == "No valid host was found."
    assert view.metadata == {"github-runner-app": "gh", "github-runner-unit": "0"}
    assert view.tags == ("github-runner",)


def test_server_view_without_fault_or_date() -> None:
    view = server_view(Server(id="x", name="gh-0-1", status="BUILD"))
    assert view.fault is None
    assert view.created_at is None
    assert view.tags == ()


@pytest.mark.parametrize("prefix", ["gh-0-", "a.b-1-", "x*y+-2-"])
def test_name_filter_matches_the_prefix_literally(prefix: str) -> None:
    pattern = re.compile(f"^{_regex(prefix)}")
    assert pattern.match(prefix + "ab12")
    assert not pattern.match("z" + prefix)
    if "." in prefix:
        assert not pattern.match(prefix.replace(".", "x") + "ab12")


def test_missing_clouds_yaml_is_a_project_error(tmp_path: Path) -> None:
    client = OpenstackClient(tmp_path / "absent.yaml", "nowhere", timeout=1)
    with pytest.raises(OpenstackError):
        client.list_servers("gh-0-")
