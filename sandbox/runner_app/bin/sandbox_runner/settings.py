"""Runner settings: the ``.runner``/``.credentials`` files, JIT configs and tuning env vars."""

from __future__ import annotations

import base64
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNER_FILE = ".runner"
CREDENTIALS_FILE = ".credentials"
ENV_FILE = ".env"

ENV_POLL_WAIT = "SANDBOX_RUNNER_POLL_WAIT"
ENV_HEARTBEAT = "SANDBOX_RUNNER_HEARTBEAT"
ENV_HTTP_TIMEOUT = "SANDBOX_RUNNER_HTTP_TIMEOUT"
ENV_MAX_IDLE = "SANDBOX_RUNNER_MAX_IDLE"
ENV_JOB_TIMEOUT = "SANDBOX_RUNNER_JOB_TIMEOUT"
ENV_UNREACHABLE = "SANDBOX_RUNNER_UNREACHABLE_TIMEOUT"
ENV_SERVER_URL = "SANDBOX_RUNNER_SERVER_URL"


class SettingsError(Exception):
    """The runner is not configured, or its configuration is unusable."""


def root_dir() -> Path:
    """The runner's directory (the parent of ``bin/``).

    Returns:
        The path.
    """
    return Path(__file__).resolve().parent.parent.parent


def version() -> str:
    """The version written into the tarball (``bin/runner-info.json``).

    Returns:
        e.g. "2.330.0"; "0.0.0-dev" when run from the source tree.
    """
    info = root_dir() / "bin" / "runner-info.json"
    try:
        return str(json.loads(info.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "0.0.0-dev"


def arch() -> str:
    """The runner architecture label, as actions/runner names it.

    Returns:
        "x64", "arm64", "arm" or the machine name.
    """
    machine = platform.machine().lower()
    return {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, "arm" if machine.startswith("arm") else machine
    )


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {value!r}") from exc


@dataclass
class Tuning:
    """Intervals and limits; env vars win over values from the server."""

    poll_wait: float = 20.0
    heartbeat: float = 5.0
    http_timeout: float = 10.0
    max_idle: float = 0.0
    job_timeout: float = 3600.0
    unreachable_timeout: float = 120.0

    @classmethod
    def load(cls, runner: dict[str, Any]) -> Tuning:
        """Tuning from the runner settings then the environment.

        Args:
            runner: the ``.runner`` settings (may carry pollWait and heartbeatInterval).

        Returns:
            The tuning.

        Raises:
            SettingsError: for values that are not numbers.
        """
        base = cls()
        try:
            poll = float(runner.get("pollWait", base.poll_wait))
            beat = float(runner.get("heartbeatInterval", base.heartbeat))
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"bad pollWait or heartbeatInterval: {exc}") from exc
        return cls(
            poll_wait=_float_env(ENV_POLL_WAIT, poll),
            heartbeat=max(0.1, _float_env(ENV_HEARTBEAT, beat)),
            http_timeout=max(1.0, _float_env(ENV_HTTP_TIMEOUT, base.http_timeout)),
            max_idle=_float_env(ENV_MAX_IDLE, base.max_idle),
            job_timeout=_float_env(ENV_JOB_TIMEOUT, base.job_timeout),
            unreachable_timeout=_float_env(ENV_UNREACHABLE, base.unreachable_timeout),
        )


@dataclass
class Settings:
    """What a configured runner knows: who it is, where the server is, its credential."""

    runner: dict[str, Any]
    credential: str

    @property
    def server_url(self) -> str:
        """The sandbox root URL (``SANDBOX_RUNNER_SERVER_URL`` overrides it)."""
        return os.environ.get(ENV_SERVER_URL) or str(self.runner["serverUrl"])

    @property
    def runner_id(self) -> int:
        """The runner id."""
        return int(self.runner["agentId"])

    @property
    def name(self) -> str:
        """The runner name."""
        return str(self.runner["agentName"])

    @property
    def ephemeral(self) -> bool:
        """Whether the runner exits after one job."""
        return bool(self.runner.get("ephemeral", False))

    @property
    def work_folder(self) -> Path:
        """The work folder (absolute)."""
        folder = Path(str(self.runner.get("workFolder") or "_work"))
        return folder if folder.is_absolute() else root_dir() / folder


def _credential(credentials: dict[str, Any]) -> str:
    token = credentials.get("data", {}).get("token")
    if not isinstance(token, str) or not token:
        raise SettingsError("credentials carry no token")
    return token


def load(directory: Path | None = None) -> Settings:
    """Read the settings files written by ``config.sh``.

    Args:
        directory: the runner directory (default: this runner's).

    Returns:
        The settings.

    Raises:
        SettingsError: if the runner is not configured.
    """
    directory = directory or root_dir()
    try:
        runner = json.loads((directory / RUNNER_FILE).read_text())
        credentials = json.loads((directory / CREDENTIALS_FILE).read_text())
    except FileNotFoundError as exc:
        raise SettingsError("Not configured. Run config.sh to configure the runner.") from exc
    except (OSError, ValueError) as exc:
        raise SettingsError(f"Unreadable runner settings: {exc}") from exc
    return Settings(runner, _credential(credentials))


def save(runner: dict[str, Any], credentials: dict[str, Any], directory: Path) -> None:
    """Write the settings files (the credentials readable by the owner only).

    Args:
        runner: ``.runner`` content.
        credentials: ``.credentials`` content.
        directory: the runner directory.
    """
    (directory / RUNNER_FILE).write_text(json.dumps(runner, indent=2) + "\n")
    path = directory / CREDENTIALS_FILE
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(credentials, indent=2) + "\n")


def remove(directory: Path) -> None:
    """Delete the settings files.

    Args:
        directory: the runner directory.
    """
    for name in (RUNNER_FILE, CREDENTIALS_FILE):
        path = directory / name
        if path.exists():
            path.unlink()


def from_jitconfig(encoded: str) -> Settings:
    """Decode ``--jitconfig``: base64 JSON of file name -> base64 file content.

    Args:
        encoded: the encoded JIT config.

    Returns:
        The settings (kept in memory; nothing is written).

    Raises:
        SettingsError: if it cannot be decoded.
    """
    try:
        files = json.loads(base64.b64decode(encoded.strip(), validate=True))
        runner = json.loads(base64.b64decode(files[RUNNER_FILE]))
        credentials = json.loads(base64.b64decode(files[CREDENTIALS_FILE]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"Invalid JIT configuration: {exc}") from exc
    return Settings(runner, _credential(credentials))


def read_env_file(directory: Path | None = None) -> dict[str, str]:
    """Read ``.env`` (KEY=VALUE lines; blank lines and # comments ignored).

    Args:
        directory: the runner directory (default: this runner's).

    Returns:
        The variables.
    """
    path = (directory or root_dir()) / ENV_FILE
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values
