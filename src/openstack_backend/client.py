"""The OpenStack cloud through openstacksdk: the only module that imports ``openstack``.

Built from a ``clouds.yaml`` file and a cloud name; environment variables (``OS_*``) are not
read, so the file is the whole configuration. Every call has the session timeout
(``api_timeout``); compute calls use microversion 2.93 at most (tags in listings need 2.26,
tags at creation 2.52). The SDK's and keystoneauth's errors become ``errors.OpenstackError``
and its subclasses.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import keystoneauth1.exceptions as ks_exceptions
import openstack.config
import openstack.connection
import openstack.exceptions as os_exceptions

from errors import (
    OpenstackBadRequestError,
    OpenstackError,
    OpenstackNotFoundError,
    OpenstackQuotaError,
    OpenstackTimeoutError,
)
from openstack_backend.seam import ServerView

logger = logging.getLogger(__name__)

COMPUTE_MICROVERSION = "2.93"
DEFAULT_TIMEOUT = 30.0
_QUOTA_WORDS = ("quota exceeded", "quota_exceeded", "exceeds quota")
T = TypeVar("T")


def map_error(exc: Exception, operation: str, server: str = "") -> OpenstackError:
    """Return the project error for an SDK or keystoneauth error.

    Args:
        exc: The SDK's exception.
        operation: The call that failed.
        server: The server concerned, if any.

    Returns:
        ``OpenstackQuotaError`` for a quota refusal (403/413 saying "Quota exceeded"),
        ``OpenstackNotFoundError`` (404), ``OpenstackBadRequestError`` (400),
        ``OpenstackTimeoutError`` (no answer in time, or no connection), else ``OpenstackError``.
    """
    if isinstance(exc, (ks_exceptions.ConnectTimeout, ks_exceptions.ConnectFailure)):
        return OpenstackTimeoutError(f"{operation}: cloud unreachable: {exc}", None, operation)
    if isinstance(exc, ks_exceptions.RequestTimeout):
        return OpenstackTimeoutError(f"{operation}: no answer in time", None, operation, server)
    status = getattr(exc, "status_code", None)
    text = f"{getattr(exc, 'details', None) or ''} {exc}".strip()
    message = f"{operation}: {text}"
    if status in (403, 413) and any(word in text.lower() for word in _QUOTA_WORDS):
        return OpenstackQuotaError(message, status, operation, server)
    if status == 404 or isinstance(exc, os_exceptions.ResourceNotFound):
        return OpenstackNotFoundError(message, status or 404, operation, server)
    if status == 400:
        return OpenstackBadRequestError(message, status, operation, server)
    return OpenstackError(message, status, operation, server)


@contextmanager
def _mapped(operation: str, server: str = "") -> Iterator[None]:
    try:
        yield
    except (os_exceptions.SDKException, ks_exceptions.ClientException) as exc:
        raise map_error(exc, operation, server) from exc


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def server_view(server: Any) -> ServerView:
    """Return the view of an SDK server resource.

    Args:
        server: An ``openstack.compute.v2.server.Server``.

    Returns:
        The view.
    """
    fault = server.fault if isinstance(server.fault, dict) else None
    return ServerView(
        name=str(server.name or ""),
        id=str(server.id or ""),
        status=str(server.status or ""),
        created_at=_parse_time(server.created_at),
        fault=str(fault.get("message", "")) or None if fault else None,
        metadata={str(k): str(v) for k, v in (server.metadata or {}).items()},
        tags=tuple(str(t) for t in (server.tags or ())),
    )


class OpenstackClient:
    """An ``OpenstackCloud`` over openstacksdk (connects lazily, on the first call)."""

    def __init__(self, clouds_yaml: Path, cloud: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Keep where the configuration is; nothing is read or sent yet.

        Args:
            clouds_yaml: Path of the ``clouds.yaml`` file.
            cloud: The cloud's name in it.
            timeout: Seconds every call may take (the session's ``api_timeout``).
        """
        self.clouds_yaml = clouds_yaml
        self.cloud = cloud
        self.timeout = timeout

    @functools.cached_property
    def _conn(self) -> Any:
        with _mapped("connect"):
            config = openstack.config.OpenStackConfig(
                config_files=[str(self.clouds_yaml)], load_envvars=False
            )
            region = config.get_one(
                cloud=self.cloud,
                api_timeout=self.timeout,
                compute_api_version=COMPUTE_MICROVERSION,
            )
            return openstack.connection.Connection(config=region)

    def _call(self, operation: str, fn: Callable[[], T], server: str = "") -> T:
        with _mapped(operation, server):
            return fn()

    def list_servers(self, prefix: str) -> list[ServerView]:
        """List the servers whose name starts with ``prefix`` (one listing, all pages).

        Args:
            prefix: Name prefix of the servers to keep.

        Returns:
            The servers' views.
        """

        def listing() -> list[ServerView]:
            # Nova filters names by regular expression; the prefix check below is exact.
            servers = self._conn.compute.servers(details=True, name=f"^{_regex(prefix)}")
            return [v for v in map(server_view, servers) if v.name.startswith(prefix)]

        return [self._with_fault(view) for view in self._call("list_servers", listing)]

    def _with_fault(self, view: ServerView) -> ServerView:
        """Add the fault of a server in ERROR: Nova's detailed listing does not carry it.

        One ``GET /servers/{id}`` per server in ERROR (none for healthy ones). The fault only
        explains: when it cannot be read (the server went meanwhile, the call failed), the view
        stays without it.
        """
        if view.fault or view.status.upper() != "ERROR":
            return view
        try:
            server = self._conn.compute.get_server(view.id)
        except (os_exceptions.SDKException, ks_exceptions.ClientException) as exc:
            logger.info("fault of server %s not read: %s", view.name, exc)
            return view
        return dataclasses.replace(view, fault=server_view(server).fault)

    def create_server(
        self,
        name: str,
        *,
        image: str,
        flavor: str,
        network: str,
        user_data: str,
        metadata: Mapping[str, str],
        tags: tuple[str, ...],
    ) -> ServerView:
        """Ask Nova for a server; see ``OpenstackCloud.create_server``.

        Returns:
            The view of the server (BUILD).
        """
        encoded = base64.b64encode(user_data.encode()).decode()
        return self._call(
            "create_server",
            lambda: server_view(
                self._conn.compute.create_server(
                    name=name,
                    image_id=image,
                    flavor_id=flavor,
                    networks=[{"uuid": network}],
                    user_data=encoded,
                    metadata=dict(metadata),
                    tags=list(tags),
                )
            ),
            name,
        )

    def delete_server(self, server: str) -> None:
        """Delete a server by id or name; one already gone is not an error.

        Args:
            server: The server's id or name.
        """

        def delete() -> None:
            found = self._conn.compute.find_server(server, ignore_missing=False)
            self._conn.compute.delete_server(found, ignore_missing=True)

        try:
            self._call("delete_server", delete, server)
        except OpenstackNotFoundError:
            return  # already gone

    def image_id(self, image: str) -> str:
        """Return the id of an image given by name or id."""
        return self._find("image", lambda: self._conn.image.find_image(image, False), image)

    def flavor_id(self, flavor: str) -> str:
        """Return the id of a flavor given by name or id."""
        return self._find("flavor", lambda: self._conn.compute.find_flavor(flavor, False), flavor)

    def network_id(self, network: str) -> str:
        """Return the id of a network given by name or id."""
        return self._find(
            "network", lambda: self._conn.network.find_network(network, False), network
        )

    def _find(self, kind: str, lookup: Callable[[], Any], wanted: str) -> str:
        try:
            found = self._call(f"find_{kind}", lookup)
        except OpenstackNotFoundError as exc:
            raise OpenstackNotFoundError(
                f"no {kind} {wanted!r} in the cloud", 404, f"find_{kind}"
            ) from exc
        return str(found.id)


def _regex(text: str) -> str:
    """Escape ``text`` for Nova's name filter (a Python/MySQL regular expression)."""
    return "".join(f"\\{c}" if not (c.isalnum() or c in "-_") else c for c in text)
