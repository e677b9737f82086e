"""HTTP client of the sandbox's private runner protocol (/_runner/...), with timeouts."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any


class ProtocolError(Exception):
    """The server answered with an error status, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


# Loopback traffic must not go through any proxy the environment sets.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(
    url: str,
    method: str,
    body: dict[str, Any] | None,
    authorization: str,
    timeout: float,
) -> tuple[int, Any]:
    """Send one JSON request.

    Args:
        url: absolute URL.
        method: HTTP method.
        body: JSON body or None.
        authorization: the Authorization header value.
        timeout: seconds for the whole exchange.

    Returns:
        (status, parsed JSON body or None).

    Raises:
        ProtocolError: on an error status or a transport failure.
    """
    data = json.dumps(body).encode() if body is not None else b""
    if not url.startswith(("http://", "https://")):
        raise ProtocolError(0, f"not an http(s) URL: {url}")
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", authorization)
    req.add_header("User-Agent", "sandbox-runner")
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(detail).get("message", detail))
        raise ProtocolError(exc.code, detail) from exc
    except (OSError, ValueError) as exc:
        raise ProtocolError(0, f"cannot reach {url}: {exc}") from exc
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(status, "response is not JSON") from exc


class RunnerClient:
    """Calls made with the runner credential."""

    def __init__(self, server_url: str, credential: str, timeout: float):
        self.base = server_url.rstrip("/") + "/_runner"
        self._auth = f"RunnerCredential {credential}"
        self.timeout = timeout

    def _call(
        self, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[int, Any]:
        return request(self.base + path, "POST", body or {}, self._auth, timeout or self.timeout)

    def connect(self, version: str, arch: str) -> dict[str, Any]:
        """Announce the runner (it shows online).

        Args:
            version: runner app version.
            arch: architecture.

        Returns:
            The runner as the server sees it.
        """
        _, body = self._call("/connect", {"version": version, "arch": arch, "os": "linux"})
        return dict(body or {})

    def poll(self, wait: float) -> dict[str, Any] | None:
        """Long-poll for a job.

        Args:
            wait: seconds the server may hold the request.

        Returns:
            The job message, or None when none came.
        """
        status, body = self._call(f"/poll?wait={wait:g}", timeout=wait + self.timeout)
        return dict(body) if status == 200 and body else None

    def heartbeat(self) -> bool:
        """Keep the runner online while it runs a job.

        Returns:
            Whether the job's cancellation was requested.
        """
        _, body = self._call("/heartbeat")
        return bool(isinstance(body, dict) and body.get("cancel"))

    def log(self, job_id: int, text: str) -> None:
        """Append to the job log.

        Args:
            job_id: the job.
            text: the text.
        """
        self._call(f"/jobs/{job_id}/log", {"text": text})

    def step(self, job_id: int, step: dict[str, Any]) -> None:
        """Report a step's state.

        Args:
            job_id: the job.
            step: number, name, status, conclusion, started_at, completed_at.
        """
        self._call(f"/jobs/{job_id}/steps", step)

    def complete(self, job_id: int, conclusion: str) -> None:
        """Report the job's conclusion.

        Args:
            job_id: the job.
            conclusion: success, failure or cancelled.
        """
        self._call(f"/jobs/{job_id}/complete", {"conclusion": conclusion})


def register(server_url: str, token: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Exchange a registration token for the runner's settings and credential.

    Args:
        server_url: sandbox root URL.
        token: registration token.
        body: url_path, name, labels, runner_group, ephemeral, work_folder, replace, arch.
        timeout: seconds.

    Returns:
        {".runner": {...}, ".credentials": {...}}.
    """
    url = server_url.rstrip("/") + "/_runner/register"
    _, answer = request(url, "POST", body, f"RemoteAuth {token}", timeout)
    return dict(answer or {})


def deregister(server_url: str, token: str, runner_id: int, timeout: float) -> None:
    """Remove the runner with a remove token.

    Args:
        server_url: sandbox root URL.
        token: remove token.
        runner_id: the runner.
        timeout: seconds.
    """
    url = server_url.rstrip("/") + "/_runner/deregister"
    request(url, "POST", {"runner_id": runner_id}, f"RemoteAuth {token}", timeout)
