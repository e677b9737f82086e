"""The connection to the LXD daemon: the only module of the project that imports pylxd.

A thin, typed transport over LXD's REST API (through pylxd's connection and raw API nodes).
Every call has a timeout; every failure is one of the project's ``LXD*`` errors:

- the daemon cannot be reached -> :class:`errors.LXDUnavailableError`;
- an object is missing -> :class:`errors.LXDNotFoundError` (or the caller's subclass, e.g.
  :class:`errors.LXDImageNotFoundError` for a missing image);
- a deadline passed -> :class:`errors.LXDTimeoutError`;
- anything else LXD refuses -> :class:`errors.LXDError`.

Commands run through LXD's exec API with ``record-output`` and no websocket
(:meth:`LxdTransport.exec`): measured here 0.03-0.06 s a command against 0.15 s for pylxd's
``execute``, which matters because readiness polling and runner setup run many commands.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import pylxd
import pylxd.exceptions
import requests

import errors
from lxd.types import ExecResult

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
"""Seconds an LXD call (and the operation it starts) may take unless told otherwise."""

OPERATION_SLACK = 5.0
"""Seconds added to an HTTP timeout on top of the LXD-side timeout it carries."""


class _PoolFullFilter(logging.Filter):
    """Drop urllib3's "Connection pool is full" notices for the LXD socket.

    pylxd's unix-socket adapter keeps one connection per pool; parallel runner operations open
    extra ones, which urllib3 discards with a warning. On a local socket that costs nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Connection pool is full")


logging.getLogger("urllib3.connectionpool").addFilter(_PoolFullFilter())


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


class LxdTransport:
    """Requests to the local LXD daemon, its background operations and its exec API.

    Connects lazily: building a transport never fails; the first call raises
    :class:`errors.LXDUnavailableError` if the daemon is down. Thread-safe for concurrent calls.

    Attributes:
        endpoint: LXD's unix socket path or https URL; None for pylxd's default.
        timeout: Default seconds for each call and the operation it waits for.
    """

    def __init__(self, endpoint: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Build the transport.

        Args:
            endpoint: Path of LXD's unix socket or an https URL; None for pylxd's default (the
                ``LXD_DIR`` socket, /var/lib/lxd or the snap's socket).
            timeout: Default seconds for each call and the operation it waits for.
        """
        self.endpoint = endpoint
        self.timeout = timeout
        self._client: pylxd.Client | None = None
        self._lock = threading.Lock()

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
            timeout: Seconds for the HTTP request; the transport's default otherwise.
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

    def exists(
        self,
        path: str,
        operation: str,
        not_found: type[errors.LXDNotFoundError] = errors.LXDNotFoundError,
    ) -> bool:
        """Whether GET ``path`` finds an object (404: it does not exist).

        Args:
            path: The object's path under /1.0, e.g. "profiles/default".
            operation: What the caller is doing, for errors.
            not_found: The error LXD's 404 maps to.

        Returns:
            True if it exists.
        """
        try:
            self.sync("get", path, operation=operation, not_found=not_found)
        except errors.LXDNotFoundError:
            return False
        return True

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
                timeout=wait_s + OPERATION_SLACK,
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

    def exec(
        self,
        instance: str,
        cmd: list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: int | None = None,
        group: int | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run a command in an instance with ``record-output`` (no websocket; stdin is empty).

        A command LXD cannot start is reported the way a shell would: exit 127 when it is not
        found, 126 when it is not executable. Nothing here knows about secrets: callers hide
        them (see :meth:`lxd.instance.LxdInstance.execute`).

        Args:
            instance: The instance's name.
            cmd: The command and its arguments.
            cwd: Its working directory.
            env: Extra environment variables.
            user: The uid to run as (root by default).
            group: The gid to run as (``user`` by default).
            timeout: Seconds it may run; the transport's default when None.

        Returns:
            The exit code and the decoded output.

        Raises:
            LXDTimeoutError: It ran longer than the timeout.
            LXDError: LXD refused or failed the command for another reason.
        """
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
        path = f"instances/{quote(instance, safe='')}/exec"
        try:
            meta = self.run_operation(
                "post", path, json=body, operation="exec", instance=instance, timeout=timeout
            )
        except errors.LXDError as exc:
            lowered = exc.message.lower()
            program = cmd[0] if cmd else ""
            if "command not found" in lowered:
                return ExecResult(127, "", f"{program}: command not found\n")
            if "permission denied" in lowered or "not executable" in lowered:
                return ExecResult(126, "", f"{program}: permission denied\n")
            raise
        result_meta = meta.get("metadata") or {}
        outputs = result_meta.get("output") or {}
        return ExecResult(
            exit_code=int(result_meta.get("return", -1)),
            stdout=self._fetch_output(outputs.get("1"), instance),
            stderr=self._fetch_output(outputs.get("2"), instance),
        )

    def _fetch_output(self, log_path: str | None, instance: str) -> str:
        if not log_path:
            return ""
        response = self.request(
            "get", log_path, is_api=False, operation="exec-output", instance=instance
        )
        try:
            self.request("delete", log_path, operation="exec-output", instance=instance)
        except errors.LXDError:
            logger.debug("could not delete exec log %s", log_path)
        return response.content.decode("utf-8", errors="replace")
