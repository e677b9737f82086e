"""Parse and validate the charm's option values: each bad value raises ConfigError naming it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from errors import ConfigError, MissingConfigError
from github_api.types import GitHubOrg, GitHubRepo, parse_github_path
from runner_type import Arch, ProxySetting
from runner_type import size_in_bytes as _size_in_bytes

TOKEN_CONFIG_NAME = "token"  # noqa: S105 -- an option name
PATH_CONFIG_NAME = "path"
GITHUB_URL_CONFIG_NAME = "github-url"
GROUP_CONFIG_NAME = "group"
LABELS_CONFIG_NAME = "labels"
VIRTUAL_MACHINES_CONFIG_NAME = "virtual-machines"
VM_CPU_CONFIG_NAME = "vm-cpu"
VM_MEMORY_CONFIG_NAME = "vm-memory"
VM_DISK_CONFIG_NAME = "vm-disk"
RECONCILE_INTERVAL_CONFIG_NAME = "reconcile-interval"
RUNNER_STORAGE_CONFIG_NAME = "runner-storage"
BASE_IMAGE_CONFIG_NAME = "base-image"
DOCKERHUB_MIRROR_CONFIG_NAME = "dockerhub-mirror"
DENYLIST_CONFIG_NAME = "denylist"
USE_APROXY_CONFIG_NAME = "experimental-use-aproxy"
TEST_MODE_CONFIG_NAME = "test-mode"
POLICY_ALLOW_PR_TARGET_CONFIG_NAME = "repo-policy-allow-pull-request-target"
POLICY_ALLOW_UNPROTECTED_CONFIG_NAME = "repo-policy-allow-unprotected-branches"
POLICY_DEFAULT_CONFIG_NAME = "repo-policy-default"

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def get_str(config: Mapping[str, Any], name: str) -> str:
    """Return a string option."""
    value = config.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(name, f"{value!r} is not a string")
    return value


def get_int(config: Mapping[str, Any], name: str, minimum: int) -> int:
    """Return an integer option of at least ``minimum``."""
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not an integer")
    if value < minimum:
        raise ConfigError(name, f"{value} is less than the minimum of {minimum}")
    return value


def get_bool(config: Mapping[str, Any], name: str) -> bool:
    """Return a boolean option."""
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(name, f"{value!r} is not true or false")
    return value


def parse_path(value: str, group: str) -> GitHubOrg | GitHubRepo:
    """Parse the ``path`` option."""
    value = value.strip()
    if not value:
        raise MissingConfigError(PATH_CONFIG_NAME)
    try:
        return parse_github_path(value, group)
    except ValueError as exc:
        raise ConfigError(
            PATH_CONFIG_NAME,
            f"{value!r} is neither an organisation name (my-org) nor a repository (owner/repo)",
        ) from exc


def parse_https_url(name: str, value: str, example: str, allow_loopback_http: bool) -> str:
    """Parse an https URL option."""
    url = value.strip().rstrip("/")
    shown = "the value" if "@" in value else repr(value)  # never echo credentials
    error = ConfigError(name, f"{shown} is not an https URL like {example} (no credentials)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise error from exc
    if not parts.hostname or parts.query or parts.fragment or parts.username:
        raise error
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and allow_loopback_http and parts.hostname in LOOPBACK_HOSTS:
        return url
    raise error


def parse_github_url(value: str) -> str:
    """Parse the ``github-url`` option."""
    if not value.strip():
        raise MissingConfigError(GITHUB_URL_CONFIG_NAME)
    return parse_https_url(
        GITHUB_URL_CONFIG_NAME,
        value,
        "https://github.com or https://ghes.example.com",
        allow_loopback_http=True,
    )


def parse_mirror(value: str) -> str | None:
    """Parse the ``dockerhub-mirror`` option."""
    if not value.strip():
        return None
    return parse_https_url(
        DOCKERHUB_MIRROR_CONFIG_NAME,
        value,
        "https://mirror.example.com:5000",
        allow_loopback_http=False,
    )


def parse_labels(value: str) -> tuple[str, ...]:
    """Parse the ``labels`` option."""
    labels: list[str] = []
    for raw in value.split(","):
        label = raw.strip()
        if not label:
            continue
        if not LABEL_PATTERN.match(label):
            raise ConfigError(
                LABELS_CONFIG_NAME,
                f"{label!r} is not a label: use letters, digits, '.', '_' and '-' "
                "(at most 100 characters), separated by commas",
            )
        if label not in labels:
            labels.append(label)
    return tuple(labels)


def parse_size(config: Mapping[str, Any], name: str) -> str:
    """Parse a binary size option such as ``vm-memory``."""
    value = get_str(config, name).strip()
    try:
        size = _size_in_bytes(value)
    except ValueError as exc:
        raise ConfigError(name, f"{value!r} is not a size like 7GiB") from exc
    if size == 0:
        raise ConfigError(name, f"{value!r} is zero")
    return value


def parse_enum(config: Mapping[str, Any], name: str, enum: type[Any]) -> Any:
    """Parse an option that takes one of a few values."""
    value = get_str(config, name).strip()
    try:
        return enum(value)
    except ValueError as exc:
        allowed = " or ".join(repr(member.value) for member in enum)
        raise ConfigError(name, f"{value!r} is not {allowed}") from exc


def parse_denylist(value: str) -> tuple[str, ...]:
    """Parse the ``denylist`` option."""
    networks: list[str] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = ipaddress.IPv4Network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(
                DENYLIST_CONFIG_NAME, f"{entry!r} is not an IPv4 network like 10.0.0.0/8"
            ) from exc
        if str(network) not in networks:
            networks.append(str(network))
    return tuple(networks)


def parse_test_mode(value: str) -> bool:
    """Parse the ``test-mode`` option."""
    value = value.strip()
    if value in ("", "insecure"):
        return value == "insecure"
    raise ConfigError(TEST_MODE_CONFIG_NAME, f"{value!r} is not '' (off) or 'insecure'")


def proxy_from_env(environ: Mapping[str, str]) -> ProxySetting:
    """Read the model's proxy settings Juju passes to the charm."""
    return ProxySetting(
        http=environ.get("JUJU_CHARM_HTTP_PROXY") or None,
        https=environ.get("JUJU_CHARM_HTTPS_PROXY") or None,
        no_proxy=environ.get("JUJU_CHARM_NO_PROXY") or None,
    )


def parse_arch(machine: str) -> Arch:
    """Map the machine architecture to GitHub's naming."""
    arch = {"x86_64": Arch.X64, "amd64": Arch.X64, "aarch64": Arch.ARM64, "arm64": Arch.ARM64}
    try:
        return arch[machine.lower()]
    except KeyError:
        raise ConfigError(
            "architecture",
            f"the unit's architecture {machine!r} is not supported: deploy on amd64 or arm64",
        ) from None
