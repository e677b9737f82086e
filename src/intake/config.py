"""The intake's configuration: one JSON file (mode 0600) the charm writes.

.. code-block:: json

    {"host": "127.0.0.1", "port": 8090,
     "secret_file": "/path/webhook-secret", "mq_uri_file": "/path/mq-uri",
     "flavors": [{"queue_name": "runner-small", "labels": ["small", "x64"]}],
     "ledger": "/path/intake-ledger.sqlite", "max_body_bytes": 1048576,
     "api_url": "https://api.github.com"}

Secrets are never in the file itself: it names the files holding the webhook secret and the
broker URI. Optional keys: ``threads`` (waitress worker threads, default 4),
``publish_timeout`` (seconds for the broker to confirm, default 5: GitHub gives a delivery 10 s)
and, per flavor, ``arch`` (``x64`` or ``arm64``; default: the architecture label among its
labels, else x64).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from intake import errors as intake_errors
from intake.routing import Flavor
from runner_type import Arch

# GitHub caps webhook payloads at 25 MB.
MAX_BODY_LIMIT = 25 * 1024 * 1024
_QUEUE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"


def _check_host(host: str) -> str:
    ipaddress.ip_address(host)  # raises ValueError: only an address, never a name
    return host


def _check_api_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("has credentials")
    if parts.query or parts.fragment:
        raise ValueError("has a query or fragment")
    return url.rstrip("/")


Label = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]


class FlavorConfig(BaseModel):
    """One flavor in the configuration file.

    Attributes:
        queue_name: The flavor's queue (its application name).
        labels: The labels its runners carry.
        arch: The runners' architecture (default: from the labels, else x64).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue_name: Annotated[str, StringConstraints(pattern=_QUEUE_NAME)]
    labels: list[Label] = Field(max_length=64)
    arch: Arch | None = None

    def flavor(self) -> Flavor:
        """Return the routing flavor.

        Returns:
            The flavor.
        """
        return Flavor(queue_name=self.queue_name, labels=frozenset(self.labels), arch=self.arch)


class IntakeConfig(BaseModel):
    """The intake's configuration.

    Attributes:
        host: Address to listen on (an IP address).
        port: TCP port (0: any free one).
        secret_file: File holding the webhook secret.
        mq_uri_file: File holding the broker URI.
        flavors: The flavors jobs are routed to.
        ledger: The job ledger's sqlite file.
        max_body_bytes: Largest request body accepted (413 beyond).
        api_url: The GitHub API base every job URL must start with.
        threads: Waitress worker threads.
        publish_timeout: Seconds for the broker to take and confirm a message.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, AfterValidator(_check_host)] = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    secret_file: Path
    mq_uri_file: Path
    flavors: list[FlavorConfig] = Field(min_length=1, max_length=64)
    ledger: Path
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=MAX_BODY_LIMIT)
    api_url: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_api_url)]
    threads: int = Field(default=4, ge=1, le=64)
    publish_timeout: float = Field(default=5.0, gt=0, le=60)

    @classmethod
    def load(cls, path: Path) -> IntakeConfig:
        """Read and check the configuration file.

        Args:
            path: The JSON file.

        Returns:
            The configuration.

        Raises:
            IntakeConfigError: The file is unreadable, not JSON or not a valid configuration.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise intake_errors.IntakeConfigError(
                str(path), f"cannot read: {exc.strerror}"
            ) from exc
        except ValueError as exc:
            raise intake_errors.IntakeConfigError(str(path), "not UTF-8 JSON") from exc
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False)
            )
            raise intake_errors.IntakeConfigError(str(path), problems[:500]) from exc

    def routing_flavors(self) -> list[Flavor]:
        """Return the flavors to route to, in configuration order.

        Returns:
            The flavors.
        """
        return [flavor.flavor() for flavor in self.flavors]

    def read_secret(self) -> bytes:
        """Read the webhook secret.

        Returns:
            The secret, without surrounding whitespace.

        Raises:
            IntakeConfigError: The file is unreadable or empty.
        """
        return _read_secret_file(self.secret_file, "webhook secret").encode()

    def read_mq_uri(self) -> str:
        """Read the broker URI.

        Returns:
            The URI, without surrounding whitespace.

        Raises:
            IntakeConfigError: The file is unreadable or empty.
        """
        return _read_secret_file(self.mq_uri_file, "broker URI")


def _read_secret_file(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise intake_errors.IntakeConfigError(str(path), f"cannot read the {what}") from exc
    if not value:
        raise intake_errors.IntakeConfigError(str(path), f"the {what} file is empty")
    return value
