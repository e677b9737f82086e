"""Metrics pushed by runners that share no filesystem with the unit (OpenStack servers).

An LXD runner writes ``pre-job-metrics.json`` and ``post-job-metrics.json`` into its store,
which is mounted into the instance. A server on a cloud has no such mount: it sends the same
two files to the unit instead, ``PUT /metrics/<runner>/<file>`` with
``Authorization: Bearer <runner's push token>``, and the receiver writes them into the runner's
store, where :func:`metrics.runner.extract` reads and validates them exactly as it does an LXD
runner's (size, no symlinks, schema; anything bad quarantines the store).

Why a push rather than pulling the files over SSH the way upstream does: a pull needs an SSH
key in every server, a route from the unit to every server and a reconcile that waits on each
server's sshd (servers being deleted never answer); a push needs only the route the runner
already has to the unit's policy service, and the file lands while the job is still fresh.

The push token is an HMAC of the runner's name under a key only the unit holds, so the
receiver keeps no table of tokens, a runner cannot write another runner's store, and the token
is worthless once the runner's store is gone. It is not the GitHub token and authorises
nothing else. Each file is accepted once (a second PUT answers 409) and at most
``FILE_SIZE_BYTES_LIMIT`` bytes; nothing in the store is followed if it is a symlink.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from errors import MetricsStorageError, MetricsStorageNotFoundError
from metrics.storage import OPEN_DIR_FLAGS, StorageManager, validate_runner_name
from metrics.type import (
    FILE_SIZE_BYTES_LIMIT,
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
)

logger = logging.getLogger(__name__)

PUSHED_FILES = (PRE_JOB_METRICS_FILE_NAME, POST_JOB_METRICS_FILE_NAME)
KEY_BYTES = 32
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
}


def load_or_create_key(path: Path) -> bytes:
    """Return the unit's push key, created (0600, random) on first use.

    Args:
        path: The key file.

    Returns:
        The key.
    """
    try:
        key = path.read_bytes()
        if len(key) == KEY_BYTES:
            return key
        logger.warning("metrics push key %s has a bad length: replacing it", path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    tmp.replace(path)
    return key


def push_token(key: bytes, runner_name: str) -> str:
    """Return the token with which a runner pushes its metrics.

    Args:
        key: The unit's push key.
        runner_name: The runner.

    Returns:
        The token (hex).
    """
    return hmac.new(key, f"metrics-push:{runner_name}".encode(), hashlib.sha256).hexdigest()


class MetricsPushReceiver:
    """Writes pushed metric files into the stores of the unit's runners."""

    def __init__(self, storage: StorageManager, key: bytes) -> None:
        """Build the receiver.

        Args:
            storage: The unit's metrics stores.
            key: The unit's push key.
        """
        self._storage = storage
        self._key = key

    def receive(self, runner_name: str, file_name: str, token: str, body: bytes) -> int:
        """Store one pushed file.

        Args:
            runner_name: The runner the file is for (from the URL).
            file_name: The file (from the URL).
            token: The bearer token of the request.
            body: The file's content.

        Returns:
            The HTTP status: 204 stored, 400 bad name, 403 bad token, 404 no such runner or
            file, 409 already pushed, 413 too large, 500 the store could not be written.
        """
        try:
            validate_runner_name(runner_name)
        except MetricsStorageError:
            return 400
        if not hmac.compare_digest(token.encode(), push_token(self._key, runner_name).encode()):
            return 403
        if file_name not in PUSHED_FILES:
            return 404
        if len(body) > FILE_SIZE_BYTES_LIMIT:
            return 413
        try:
            store = self._storage.get(runner_name)
        except MetricsStorageNotFoundError:
            return 404
        try:
            _write_once(store.path, file_name, body)
        except FileExistsError:
            return 409
        except OSError as exc:
            logger.warning("cannot store %s of %s: %s", file_name, runner_name, exc)
            return 500
        logger.info("stored pushed %s of %s (%d bytes)", file_name, runner_name, len(body))
        return 204


def _write_once(store: Path, file_name: str, body: bytes) -> None:
    """Create a file in a store, never through a symlink, never over an existing entry.

    One write of at most ``FILE_SIZE_BYTES_LIMIT`` bytes, straight to the file's name: a
    temporary entry would be an unexpected entry to a concurrent ``extract()``.
    """
    dir_fd = os.open(store, OPEN_DIR_FLAGS)
    try:
        fd = os.open(file_name, _WRITE_FLAGS, 0o644, dir_fd=dir_fd)
        try:
            written = os.write(fd, body)
            if written != len(body):
                raise OSError(f"short write ({written} of {len(body)} bytes)")
        except OSError:
            os.unlink(file_name, dir_fd=dir_fd)
            raise
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


class MetricsPushApp:
    """``PUT /metrics/<runner>/<file>`` as a WSGI callable (the policy service mounts it)."""

    PREFIX = "/metrics/"

    def __init__(self, receiver: MetricsPushReceiver) -> None:
        """Build the app.

        Args:
            receiver: Where pushed files go.
        """
        self._receiver = receiver

    def handles(self, path: str) -> bool:
        """Tell whether a request path is this app's."""
        return path.startswith(self.PREFIX)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        status = self._answer(environ)
        start_response(f"{status} {_REASONS[status]}", [("Content-Length", "0")])
        return [b""]

    def _answer(self, environ: dict[str, Any]) -> int:
        parts = str(environ.get("PATH_INFO", ""))[len(self.PREFIX) :].split("/")
        if len(parts) != 2:
            return 404
        if environ.get("REQUEST_METHOD") != "PUT":
            return 405
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not auth.startswith("Bearer "):
            return 401
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return 411
        if length < 0:
            return 400
        if length > FILE_SIZE_BYTES_LIMIT:
            return 413
        body = environ["wsgi.input"].read(length)
        return self._receiver.receive(parts[0], parts[1], auth[len("Bearer ") :].strip(), body)
