"""Types describing one runner: its configuration, status and resources (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from github_api.types import GitHubPath

_SIZE = re.compile(r"^(\d+)(KiB|MiB|GiB|TiB)$")
_FACTORS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def size_in_bytes(size: str) -> int:
    """Convert an LXD-style binary size such as ``7GiB`` into bytes.

    Args:
        size: The size string.

    Returns:
        The number of bytes.

    Raises:
        ValueError: If the string is not a size like ``512MiB`` or ``7GiB``.
    """
    match = _SIZE.match(size.strip())
    if not match:
        raise ValueError(f"{size!r} is not a size like 7GiB")
    return int(match.group(1)) * _FACTORS[match.group(2)]


class Arch(str, Enum):
    """CPU architecture of the runners, in GitHub's naming."""

    X64 = "x64"
    ARM64 = "arm64"


DEFAULT_LABELS = ("self-hosted", "linux")


def runner_labels(
    configured: Iterable[str], app_name: str, base_image: str, arch: Arch
) -> tuple[str, ...]:
    """Return the labels a runner registers with: the one list runners and job intake share.

    Args:
        configured: The labels of the ``labels`` option.
        app_name: The application name.
        base_image: The base image name (``noble``); empty to leave it out.
        arch: The unit's architecture.

    Returns:
        ``self-hosted``, ``linux``, the architecture, the application and base image names, then
        the configured labels not already there, in that order.
    """
    labels: list[str] = []
    for label in (*DEFAULT_LABELS, arch.value, app_name, base_image, *configured):
        if label and label not in labels:
            labels.append(label)
    return tuple(labels)


@dataclass(frozen=True)
class VirtualMachineResources:
    """Resources of one runner instance.

    Attributes:
        cpu: Number of virtual CPUs.
        memory: Memory, e.g. ``7GiB``.
        disk: Root disk, e.g. ``10GiB``.
    """

    cpu: int
    memory: str
    disk: str

    def profile_name(self) -> str:
        """Return the LXD profile name that holds these limits."""
        return f"cpu-{self.cpu}-mem-{self.memory}-disk-{self.disk}"


@dataclass(frozen=True)
class ProxySetting:
    """HTTP proxy settings passed into runners.

    Attributes:
        http: The HTTP proxy URL.
        https: The HTTPS proxy URL.
        no_proxy: Comma-separated hosts that bypass the proxy.
    """

    http: str | None = None
    https: str | None = None
    no_proxy: str | None = None

    def __repr__(self) -> str:
        """Show the proxies with any credentials in their URLs hidden."""
        return (
            f"ProxySetting(http={_without_credentials(self.http)!r}, "
            f"https={_without_credentials(self.https)!r}, no_proxy={self.no_proxy!r})"
        )


def _without_credentials(url: str | None) -> str | None:
    """Replace the ``user:password@`` part of a URL with ``***@``."""
    if url is None or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***@" + url.rsplit("@", 1)[1]
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


@dataclass(frozen=True)
class SSHDebugConnection:
    """A tmate server runners may use for debug sessions (debug-ssh relation).

    Attributes:
        host: The server address.
        port: The server port.
        rsa_fingerprint: RSA host key fingerprint.
        ed25519_fingerprint: ED25519 host key fingerprint.
    """

    host: str
    port: int
    rsa_fingerprint: str
    ed25519_fingerprint: str


@dataclass(frozen=True)
class RunnerConfig:
    """Configuration of one runner instance.

    Attributes:
        app_name: Application name of the charm.
        name: The runner's name (``<app>-<unit>-<hex>``), also its LXD instance name.
        path: The GitHub repository or organisation.
        labels: Custom labels of the runner.
        github_url: The GitHub (or GHES) web URL the runner registers with.
        base_image: The base image name (``noble``), offered as a label.
        dockerhub_mirror: Docker Hub mirror URL, if any.
        proxies: Proxy settings.
        ssh_debug_connections: tmate servers for debug sessions.
        image_generation: The image generation recorded on the instance.
        aproxy: Whether outbound 80/443 is redirected to the proxy (experimental-use-aproxy).
    """

    app_name: str
    name: str
    path: GitHubPath
    labels: tuple[str, ...]
    github_url: str
    base_image: str = ""
    dockerhub_mirror: str | None = None
    proxies: ProxySetting = field(default_factory=ProxySetting)
    ssh_debug_connections: tuple[SSHDebugConnection, ...] = ()
    image_generation: str = ""
    aproxy: bool = False


@dataclass(frozen=True)
class RunnerStatus:
    """Status of one runner, joined from LXD and GitHub.

    Attributes:
        runner_id: GitHub's runner id, if registered.
        exist: Whether GitHub knows the runner.
        online: Whether GitHub reports it online.
        busy: Whether it runs a job.
    """

    runner_id: int | None = None
    exist: bool = False
    online: bool = False
    busy: bool = False
