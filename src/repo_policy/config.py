"""The policy service's configuration: a JSON file the charm writes from its config options."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from errors import RepoPolicyConfigError

ALLOW = "allow"
DENY = "deny"
DEFAULT_TOKEN_TTL = 24 * 3600.0


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy allows beyond its fixed rules. Every default is the safe choice.

    Attributes:
        allow_pull_request_target: Let ``pull_request_target`` jobs run (they run with the
            repository's secrets and may check out a fork's code). Default False.
        allow_unprotected_branches: Let ``push``, ``workflow_dispatch`` and ``schedule`` jobs
            run on refs that are not branches protected with required reviews. Default False.
        allow_organization_forks: Let pull requests from forks owned by another organisation
            run when their author may write (all of that organisation's members can push to
            the fork, unchecked). Default False.
        default: ``allow`` or ``deny`` for events the policy has no rule for. Default ``deny``.
        token_ttl: Seconds a one-time token stays valid (it must outlive an idle runner).
    """

    allow_pull_request_target: bool = False
    allow_unprotected_branches: bool = False
    allow_organization_forks: bool = False
    default: str = DENY
    token_ttl: float = DEFAULT_TOKEN_TTL

    @classmethod
    def from_json(cls, data: Any) -> PolicyConfig:
        """Build and validate a configuration from decoded JSON (unknown keys are refused).

        Args:
            data: The decoded JSON object.

        Returns:
            The configuration.

        Raises:
            RepoPolicyConfigError: If a key is unknown or a value has the wrong type.
        """
        if not isinstance(data, dict):
            raise RepoPolicyConfigError("the configuration must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RepoPolicyConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        flags = (
            "allow_pull_request_target",
            "allow_unprotected_branches",
            "allow_organization_forks",
        )
        for key in flags:
            if key in data and not isinstance(data[key], bool):
                raise RepoPolicyConfigError(f"{key} must be true or false")
        default = data.get("default", DENY)
        if default not in (ALLOW, DENY):
            raise RepoPolicyConfigError("default must be 'allow' or 'deny'")
        ttl = data.get("token_ttl", DEFAULT_TOKEN_TTL)
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, (int, float))
            or not 60 <= ttl <= 7 * 86400
        ):
            raise RepoPolicyConfigError("token_ttl must be a number of seconds in [60, 604800]")
        return cls(
            allow_pull_request_target=bool(data.get("allow_pull_request_target", False)),
            allow_unprotected_branches=bool(data.get("allow_unprotected_branches", False)),
            allow_organization_forks=bool(data.get("allow_organization_forks", False)),
            default=str(default),
            token_ttl=float(ttl),
        )


def load_config(path: Path) -> PolicyConfig:
    """Read a configuration file; a missing file gives the defaults.

    Args:
        path: The JSON file.

    Returns:
        The configuration.

    Raises:
        RepoPolicyConfigError: If the file cannot be read or is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return PolicyConfig()
    except OSError as exc:
        raise RepoPolicyConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RepoPolicyConfigError(f"{path} is not valid JSON") from exc
    return PolicyConfig.from_json(data)


class WatchedFile:
    """A small file re-read whenever its modification time, size or inode changes.

    Used for the configuration and the two token files, so that the charm changes them by
    rewriting the files, without restarting the service. Thread-safe.
    """

    def __init__(self, path: Path) -> None:
        """Watch ``path`` (nothing is read before the first :meth:`read`).

        Args:
            path: The file.
        """
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._text: str | None = None

    def read(self) -> str | None:
        """Return the file's content (None while it does not exist).

        Returns:
            The text, or None.

        Raises:
            OSError: If the file exists but cannot be read.
        """
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if stamp != self._stamp:
                self._text = self.path.read_text(encoding="utf-8")
                self._stamp = stamp
            return self._text


class ConfigSource:
    """The current configuration of a file, re-read when the file changes."""

    def __init__(self, path: Path | None) -> None:
        """Watch a configuration file (None: the defaults, always).

        Args:
            path: The JSON file.
        """
        self._file = WatchedFile(path) if path is not None else None
        self._last_text: str | None = None
        self._config = PolicyConfig()

    def get(self) -> PolicyConfig:
        """Return the configuration.

        Returns:
            The file's configuration (defaults when it does not exist).

        Raises:
            RepoPolicyConfigError: If the file is invalid (the service then refuses every job).
        """
        if self._file is None:
            return PolicyConfig()
        try:
            text = self._file.read()
        except OSError as exc:
            raise RepoPolicyConfigError(f"cannot read {self._file.path}: {exc.strerror}") from exc
        if text is None:
            return PolicyConfig()
        if text != self._last_text:
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise RepoPolicyConfigError(f"{self._file.path} is not valid JSON") from exc
            self._config = PolicyConfig.from_json(data)
            self._last_text = text
        return self._config
