"""Parse and validate the charm's option values: each bad value raises ConfigError naming it."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from errors import ConfigError, MissingConfigError
from github_api.types import GitHubOrg, GitHubRepo, parse_github_path
from juju.option_urls import UrlRules, parse_no_proxy, parse_proxy, parse_url
from runner_type import Arch, ProxySetting
from runner_type import size_in_bytes as _size_in_bytes

TOKEN_CONFIG_NAME = "token"  # noqa: S105 -- an option name
TOKEN_SECRET_ID_CONFIG_NAME = "token-secret-id"  # noqa: S105 -- an option name
APP_CLIENT_ID_CONFIG_NAME = "github-app-client-id"
APP_INSTALLATION_ID_CONFIG_NAME = "github-app-installation-id"
APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME = "github-app-private-key-secret-id"  # noqa: S105
PATH_CONFIG_NAME = "path"
GITHUB_URL_CONFIG_NAME = "github-url"
GROUP_CONFIG_NAME = "group"
LABELS_CONFIG_NAME = "labels"
VIRTUAL_MACHINES_CONFIG_NAME = "virtual-machines"
BASE_VIRTUAL_MACHINES_CONFIG_NAME = "base-virtual-machines"
MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME = "max-total-virtual-machines"
VM_CPU_CONFIG_NAME = "vm-cpu"
VM_MEMORY_CONFIG_NAME = "vm-memory"
VM_DISK_CONFIG_NAME = "vm-disk"
RECONCILE_INTERVAL_CONFIG_NAME = "reconcile-interval"
RUNNER_STORAGE_CONFIG_NAME = "runner-storage"
NETWORK_CONFIG_NAME = "network"
BASE_IMAGE_CONFIG_NAME = "base-image"
DOCKERHUB_MIRROR_CONFIG_NAME = "dockerhub-mirror"
DENYLIST_CONFIG_NAME = "denylist"
USE_APROXY_CONFIG_NAME = "experimental-use-aproxy"
TEST_MODE_CONFIG_NAME = "test-mode"
POLICY_ALLOW_PR_TARGET_CONFIG_NAME = "repo-policy-allow-pull-request-target"
POLICY_ALLOW_UNPROTECTED_CONFIG_NAME = "repo-policy-allow-unprotected-branches"
POLICY_DEFAULT_CONFIG_NAME = "repo-policy-default"
WEBHOOK_SECRET_CONFIG_NAME = "webhook-secret"  # noqa: S105 -- an option name

# The model proxy reaches the charm as JUJU_CHARM_*_PROXY; users set it as these model options.
PROXY_ENV_OPTIONS = {
    "JUJU_CHARM_HTTP_PROXY": "juju-http-proxy",
    "JUJU_CHARM_HTTPS_PROXY": "juju-https-proxy",
    "JUJU_CHARM_NO_PROXY": "juju-no-proxy",
}

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
GROUP_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_.~+/=-]{1,512}$")
# An LXD network is a Linux interface: 15 characters (lxd.network.validate_network_name).
NETWORK_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Upper bounds: far above any real use, low enough that no value builds a huge plan or file.
MAX_OPTION_LENGTH = 4096
MAX_LABELS = 50
MAX_DENYLIST_ENTRIES = 256
MAX_VIRTUAL_MACHINES = 500
MAX_VM_CPU = 256
MAX_RECONCILE_INTERVAL = 24 * 60
MAX_SIZES = {"vm-memory": 1 << 40, "vm-disk": 64 << 40}  # 1 TiB, 64 TiB
DEFAULT_MAX_SIZE = 64 << 40

GITHUB_URL_RULES = UrlRules(
    schemes=("https",),
    example="https://github.com or https://ghes.example.com",
    loopback_schemes=("http",),
)
MIRROR_URL_RULES = UrlRules(schemes=("https",), example="https://mirror.example.com:5000")


def get_str(config: Mapping[str, Any], name: str) -> str:
    """Return a string option: one line of printable characters, at most 4096 of them."""
    value = config.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(name, f"{value!r} is not a string")
    if len(value) > MAX_OPTION_LENGTH:
        raise ConfigError(
            name, f"is {len(value)} characters long, at most {MAX_OPTION_LENGTH} are allowed"
        )
    if CONTROL_CHARACTERS.search(value):
        raise ConfigError(
            name,
            "contains a control character (newline, carriage return, tab, NUL...): "
            "set it on one line",
        )
    return value


def get_int(config: Mapping[str, Any], name: str, minimum: int, maximum: int | None = None) -> int:
    """Return an integer option between ``minimum`` and ``maximum``."""
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not an integer")
    if value < minimum:
        raise ConfigError(name, f"{value} is less than the minimum of {minimum}")
    if maximum is not None and value > maximum:
        shown = value if value < 10**12 else f"{str(value)[:12]}..."
        raise ConfigError(name, f"{shown} is more than the maximum of {maximum}")
    return value


def parse_warm_floor(config: Mapping[str, Any], virtual_machines: int) -> tuple[int, int]:
    """Parse ``base-virtual-machines`` and ``max-total-virtual-machines`` (reactive mode).

    An option absent from ``config`` counts as its default, 0. ``max-total-virtual-machines``
    0 means ``virtual-machines`` is the ceiling, as before these options existed.

    Args:
        config: The charm's options.
        virtual_machines: The ``virtual-machines`` value.

    Returns:
        The warm floor (idle runners kept ready) and the ceiling of runners and consumers.

    Raises:
        ConfigError: If a value is negative or not an integer, or the floor exceeds the
            ceiling.
    """
    values = {
        name: get_int({name: config.get(name, 0)}, name, minimum=0, maximum=MAX_VIRTUAL_MACHINES)
        for name in (BASE_VIRTUAL_MACHINES_CONFIG_NAME, MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME)
    }
    base = values[BASE_VIRTUAL_MACHINES_CONFIG_NAME]
    ceiling = values[MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME] or virtual_machines
    if base > ceiling:
        source = (
            MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME
            if values[MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME]
            else f"{VIRTUAL_MACHINES_CONFIG_NAME} ({MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME} unset)"
        )
        raise ConfigError(
            BASE_VIRTUAL_MACHINES_CONFIG_NAME,
            f"{base} is more than the ceiling of {ceiling} set by {source}: lower it or raise "
            "the ceiling",
        )
    return base, values[MAX_TOTAL_VIRTUAL_MACHINES_CONFIG_NAME]


def parse_token(value: str, option: str = TOKEN_CONFIG_NAME) -> str:
    """Check a GitHub token's characters (never echoed in a message).

    Args:
        value: The token, from the option or a Juju secret.
        option: The option it came through (named in errors).

    Returns:
        The token.

    Raises:
        ConfigError: If it holds whitespace or a character no GitHub token has.
    """
    if any(char.isspace() for char in value):
        raise ConfigError(option, "contains whitespace: set the token alone")
    if not TOKEN_PATTERN.match(value):
        raise ConfigError(
            option,
            "contains characters a GitHub token never has (quotes, $, `...): set the token alone",
        )
    return value


def parse_group(value: str) -> str:
    """Parse the ``group`` option (a runner group name)."""
    group = value.strip()
    if not group:
        raise ConfigError(GROUP_CONFIG_NAME, "must not be empty (use `default`)")
    if not GROUP_PATTERN.match(group):
        raise ConfigError(
            GROUP_CONFIG_NAME,
            f"{group[:200]!r} is not a runner group name: use letters, digits, spaces, '.', "
            "'_' and '-' (at most 100 characters)",
        )
    return group


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


def parse_github_url(value: str) -> str:
    """Parse the ``github-url`` option (https; http only for a loopback stand-in)."""
    if not value.strip():
        raise MissingConfigError(GITHUB_URL_CONFIG_NAME)
    return parse_url(GITHUB_URL_CONFIG_NAME, value, GITHUB_URL_RULES)


def parse_mirror(value: str) -> str | None:
    """Parse the ``dockerhub-mirror`` option."""
    if not value.strip():
        return None
    return parse_url(DOCKERHUB_MIRROR_CONFIG_NAME, value, MIRROR_URL_RULES)


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
    if len(labels) > MAX_LABELS:
        raise ConfigError(LABELS_CONFIG_NAME, f"has {len(labels)} labels, at most {MAX_LABELS}")
    return tuple(labels)


def parse_size(config: Mapping[str, Any], name: str) -> str:
    """Parse a binary size option such as ``vm-memory``; return it rebuilt (``007GiB``: 7GiB)."""
    value = get_str(config, name).strip()
    match = re.fullmatch(r"(\d{1,20})([KMGT]iB)", value)
    try:
        size = _size_in_bytes(value)
    except ValueError:
        size = -1
    if match is None or size < 0:
        raise ConfigError(name, f"{value[:100]!r} is not a size like 7GiB")
    if size == 0:
        raise ConfigError(name, f"{value!r} is zero")
    limit = MAX_SIZES.get(name, DEFAULT_MAX_SIZE)
    if size > limit:
        raise ConfigError(name, f"{value[:30]!r} is more than the maximum of {limit >> 30}GiB")
    return f"{int(match.group(1))}{match.group(2)}"


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
    if len(networks) > MAX_DENYLIST_ENTRIES:
        raise ConfigError(
            DENYLIST_CONFIG_NAME,
            f"has {len(networks)} networks, at most {MAX_DENYLIST_ENTRIES}: merge them",
        )
    return tuple(networks)


def parse_network(value: str) -> str:
    """Parse the ``network`` option: "" (the unit's own bridge) or an LXD network name."""
    name = value.strip()
    if name and not NETWORK_PATTERN.match(name):
        raise ConfigError(
            NETWORK_CONFIG_NAME,
            f"{name[:40]!r} is not an LXD network name: 1-15 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (or empty: the charm makes its own bridge)",
        )
    return name


def parse_test_mode(value: str) -> bool:
    """Parse the ``test-mode`` option."""
    value = value.strip()
    if value in ("", "insecure"):
        return value == "insecure"
    raise ConfigError(TEST_MODE_CONFIG_NAME, f"{value!r} is not '' (off) or 'insecure'")


def proxy_from_env(environ: Mapping[str, str]) -> ProxySetting:
    """Read and check the model's proxy settings Juju passes to the charm.

    Args:
        environ: The environment holding ``JUJU_CHARM_HTTP_PROXY`` and the others.

    Returns:
        The proxies, rebuilt from their parts.

    Raises:
        ConfigError: A value is not a proxy URL (or a no-proxy list); the error names the
            model option (``juju-http-proxy``...).
    """
    options = PROXY_ENV_OPTIONS
    return ProxySetting(
        http=parse_proxy(options["JUJU_CHARM_HTTP_PROXY"], environ.get("JUJU_CHARM_HTTP_PROXY")),
        https=parse_proxy(
            options["JUJU_CHARM_HTTPS_PROXY"], environ.get("JUJU_CHARM_HTTPS_PROXY")
        ),
        no_proxy=parse_no_proxy(
            options["JUJU_CHARM_NO_PROXY"], environ.get("JUJU_CHARM_NO_PROXY")
        ),
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
