"""The charm's state: config options, relations and the Juju proxy environment, validated.

:class:`CharmState` is built once per hook by :meth:`CharmState.from_charm` and is frozen. Every
invalid value raises :class:`errors.ConfigError` (or a subclass) whose message names the option
and says what is wrong, so the charm shows it as is in a Blocked status.

Core modules (the runner manager, the reactive subprocess) import this module, so it must not
import ``ops`` at module level: ``ops`` is imported under ``TYPE_CHECKING`` and inside the one
function that needs its exceptions. The model round-trips through JSON (:meth:`CharmState.to_json`
and :meth:`CharmState.from_json`); secrets are :class:`pydantic.SecretStr` and only
:meth:`CharmState.to_json` writes them in clear.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import platform
import re
from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, SerializationInfo, field_serializer

from errors import ConfigError, ImmutableConfigChangedError, MissingConfigError
from github_type import GitHubOrg, GitHubRepo, api_base_url, parse_github_path
from runner_type import Arch, ProxySetting, SSHDebugConnection, VirtualMachineResources
from runner_type import size_in_bytes as _size_in_bytes

if TYPE_CHECKING:
    import ops

logger = logging.getLogger(__name__)

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
APP_NAME_OPTION = "application-name"

COS_AGENT_RELATION = "cos-agent"
DEBUG_SSH_RELATION = "debug-ssh"

SECRET_URI_PREFIX = "secret:"  # noqa: S105 -- a URI scheme
SECRET_TOKEN_KEY = "token"  # noqa: S105 -- the key name inside the user secret, not a secret

MIN_RECONCILE_INTERVAL = 2

# LXD runs the QEMU monitor of a VM on a unix socket under the instance's log directory; a unix
# socket path holds at most 107 bytes (sun_path is 108 bytes with the terminating NUL). The snap
# layout has the longest prefix. Instance names are also host names: at most 63 characters.
LXD_VM_SOCKET_PATH = "/var/snap/lxd/common/lxd/logs/{name}/qemu.monitor"
UNIX_SOCKET_PATH_MAX = 107
LXD_INSTANCE_NAME_MAX = 63
RUNNER_NAME_SUFFIX = "-{unit}-" + "0" * 8  # runner names are <app>-<unit>-<8 hex digits>

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_REVEAL_SECRETS = "reveal_secrets"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class RunnerStorage(str, Enum):
    """Where runner root disks live (``runner-storage``)."""

    JUJU_STORAGE = "juju-storage"
    MEMORY = "memory"


class BaseImage(str, Enum):
    """Ubuntu release of the runner image (``base-image``)."""

    NOBLE = "noble"
    JAMMY = "jammy"


class RepoPolicyOptions(BaseModel):
    """What the pre-job repository policy allows (see docs/repo-policy.md).

    Attributes:
        allow_pull_request_target: Let ``pull_request_target`` jobs run.
        allow_unprotected_branches: Let push/dispatch/schedule jobs run on unprotected refs.
        default: ``allow`` or ``deny`` jobs of events with no rule of their own.
    """

    model_config = ConfigDict(frozen=True)

    allow_pull_request_target: bool = False
    allow_unprotected_branches: bool = False
    default: str = "deny"


class ReactiveConfig(BaseModel):
    """Configuration of reactive mode (from the mongodb relation).

    Attributes:
        mq_uri: URI of the message queue (kombu URI). Secret: it holds credentials.
        queue_name: Name of the queue jobs arrive on (the application name).
    """

    model_config = ConfigDict(frozen=True)

    mq_uri: SecretStr
    queue_name: str

    @field_serializer("mq_uri", when_used="json")
    def _dump_mq_uri(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the URI in clear only when asked to (see :meth:`CharmState.to_json`)."""
        return _dump_secret(value, info)


class CharmState(BaseModel):
    """The validated state of the charm.

    Attributes:
        token: The GitHub token. Secret.
        path: The repository or organisation runners register with.
        github_url: GitHub (or GHES) base URL, without a trailing slash.
        api_url: The REST API base URL derived from ``github_url``.
        runner_group: The runner group (organisations only).
        labels: Extra runner labels.
        virtual_machines: Number of runners to keep.
        vm_resources: Resources of each runner.
        reconcile_interval: Minutes between reconciliations.
        runner_storage: Where runner disks live.
        base_image: Ubuntu release of the runner image.
        dockerhub_mirror: Docker Hub mirror URL, if any.
        denylist: IPv4 networks runners must not reach (normalised CIDRs).
        aproxy: Whether runners use aproxy.
        test_mode: Whether runners are containers (testing the charm itself).
        repo_policy: What the pre-job repository policy allows.
        proxy: The model's proxy settings.
        is_metrics_enabled: Whether the cos-agent relation exists.
        reactive_config: Reactive mode configuration, once the mongodb relation gives a URI.
        ssh_debug_connections: tmate servers from the debug-ssh relation.
        arch: CPU architecture of the unit.
        app_name: The application name.
        unit_number: The unit number.
    """

    model_config = ConfigDict(frozen=True)

    token: SecretStr
    path: GitHubOrg | GitHubRepo
    github_url: str
    api_url: str
    runner_group: str
    labels: tuple[str, ...]
    virtual_machines: int
    vm_resources: VirtualMachineResources
    reconcile_interval: int
    runner_storage: RunnerStorage
    base_image: BaseImage
    dockerhub_mirror: str | None
    denylist: tuple[str, ...]
    aproxy: bool
    test_mode: bool
    repo_policy: RepoPolicyOptions = RepoPolicyOptions()
    proxy: ProxySetting
    is_metrics_enabled: bool
    reactive_config: ReactiveConfig | None
    ssh_debug_connections: tuple[SSHDebugConnection, ...]
    arch: Arch
    app_name: str
    unit_number: int

    @field_serializer("token", when_used="json")
    def _dump_token(self, value: SecretStr, info: SerializationInfo) -> str:
        """Write the token in clear only when asked to (see :meth:`to_json`)."""
        return _dump_secret(value, info)

    def to_json(self) -> str:
        """Serialise the state for another process, secrets included.

        Only for handing the state to a process the charm starts (the reactive runner), through
        a file readable by root only or a pipe. ``model_dump_json()`` without this context
        keeps the secrets masked.

        Returns:
            The JSON document.
        """
        return self.model_dump_json(context={_REVEAL_SECRETS: True})

    @classmethod
    def from_json(cls, data: str | bytes) -> CharmState:
        """Re-create a state written by :meth:`to_json`.

        Args:
            data: The JSON document.

        Returns:
            The state.
        """
        return cls.model_validate_json(data)

    def credentials_fingerprint(self) -> str:
        """Return a digest of what a runner registration depends on (token, path, labels).

        When it changes, every runner must be replaced. The digest, unlike the token, may be
        stored in plain charm state.

        Returns:
            A hex SHA-256 digest.
        """
        return _digest(
            {
                "token": self.token.get_secret_value(),
                "path": self.path.path(),
                "group": self.runner_group,
                "github_url": self.github_url,
                "labels": list(self.labels),
            }
        )

    def credentials_content(self) -> dict[str, str]:
        """Return the registration settings as Juju secret content (non-empty strings).

        The charm keeps them in a unit-owned secret to remove the runners they registered once
        they change (see :meth:`with_credentials`).

        Returns:
            Secret content: token, path, group, github-url and labels (a JSON list).
        """
        return {
            "token": self.token.get_secret_value(),
            "path": self.path.path(),
            "group": self.runner_group,
            "github-url": self.github_url,
            "labels": json.dumps(list(self.labels)),
        }

    def with_credentials(self, content: Mapping[str, str]) -> CharmState:
        """Return a copy of this state with the registration settings of ``content``.

        Args:
            content: What :meth:`credentials_content` returned, possibly for another state.

        Returns:
            The copy.

        Raises:
            ConfigError: If the content is not what :meth:`credentials_content` writes.
        """
        try:
            update = {
                "token": SecretStr(content["token"]),
                "path": parse_github_path(content["path"], content["group"]),
                "runner_group": content["group"],
                "github_url": content["github-url"],
                "api_url": api_base_url(content["github-url"]),
                "labels": tuple(json.loads(content["labels"])),
            }
        except (KeyError, ValueError) as exc:
            raise ConfigError(
                TOKEN_CONFIG_NAME, "the previous credentials the charm saved are unreadable"
            ) from exc
        return self.model_copy(update=update)

    def runner_shape_fingerprint(self) -> str:
        """Return a digest of what an idle runner depends on besides its registration.

        When it changes (resources, image, mirror, network policy, proxy, debug servers), idle
        runners are replaced.

        Returns:
            A hex SHA-256 digest.
        """
        return _digest(
            {
                "vm": [self.vm_resources.cpu, self.vm_resources.memory, self.vm_resources.disk],
                "base_image": self.base_image.value,
                "dockerhub_mirror": self.dockerhub_mirror,
                "denylist": list(self.denylist),
                "aproxy": self.aproxy,
                "test_mode": self.test_mode,
                "proxy": [self.proxy.http, self.proxy.https, self.proxy.no_proxy],
                "ssh": [
                    [c.host, c.port, c.rsa_fingerprint, c.ed25519_fingerprint]
                    for c in self.ssh_debug_connections
                ],
                "metrics": self.is_metrics_enabled,
            }
        )

    @classmethod
    def from_charm(
        cls,
        charm: ops.CharmBase,
        database_uri: str | None = None,
        *,
        deployed_runner_storage: str | None = None,
        environ: Mapping[str, str] | None = None,
        machine: str | None = None,
    ) -> CharmState:
        """Build and validate the state of the charm.

        Args:
            charm: The charm.
            database_uri: The message queue URI from the mongodb relation (the charm reads it
                with ``MongoDBRequirer.uri()``); None or empty: no reactive mode.
            deployed_runner_storage: ``runner-storage`` as it was at deploy time, if known.
            environ: The environment holding the JUJU_CHARM_*_PROXY variables (os.environ).
            machine: The machine architecture (``platform.machine()``).

        Returns:
            The state.

        Raises:
            ConfigError: If any value is invalid; the message names the option.
        """
        config = charm.config
        app_name = charm.app.name
        unit_number = int(charm.unit.name.rsplit("/", 1)[1])
        validate_app_name(app_name, unit_number)

        token = _read_token(charm, _get_str(config, TOKEN_CONFIG_NAME))
        group = _get_str(config, GROUP_CONFIG_NAME).strip()
        if not group:
            raise ConfigError(GROUP_CONFIG_NAME, "must not be empty (use `default`)")
        path = _parse_path(_get_str(config, PATH_CONFIG_NAME), group)
        github_url = _parse_github_url(_get_str(config, GITHUB_URL_CONFIG_NAME))

        runner_storage = _parse_enum(config, RUNNER_STORAGE_CONFIG_NAME, RunnerStorage)
        if deployed_runner_storage and deployed_runner_storage != runner_storage.value:
            raise ImmutableConfigChangedError(
                RUNNER_STORAGE_CONFIG_NAME,
                f"cannot change after deployment (deployed with {deployed_runner_storage!r}, "
                f"now {runner_storage.value!r}); set it back with `juju config {app_name} "
                f"{RUNNER_STORAGE_CONFIG_NAME}={deployed_runner_storage}` or deploy a new "
                "application",
            )

        proxy = _proxy_from_env(os.environ if environ is None else environ)
        aproxy = _get_bool(config, USE_APROXY_CONFIG_NAME)
        if aproxy and not (proxy.http or proxy.https):
            raise ConfigError(
                USE_APROXY_CONFIG_NAME,
                "needs the model proxy, which is not set: set juju-http-proxy or "
                "juju-https-proxy with `juju model-config`, or turn this option off",
            )

        reactive_config = (
            ReactiveConfig(mq_uri=SecretStr(database_uri), queue_name=app_name)
            if database_uri
            else None
        )

        return cls(
            token=SecretStr(token),
            path=path,
            github_url=github_url,
            api_url=api_base_url(github_url),
            runner_group=group,
            labels=_parse_labels(_get_str(config, LABELS_CONFIG_NAME)),
            virtual_machines=_get_int(config, VIRTUAL_MACHINES_CONFIG_NAME, minimum=0),
            vm_resources=VirtualMachineResources(
                cpu=_get_int(config, VM_CPU_CONFIG_NAME, minimum=1),
                memory=_parse_size(config, VM_MEMORY_CONFIG_NAME),
                disk=_parse_size(config, VM_DISK_CONFIG_NAME),
            ),
            reconcile_interval=_get_int(
                config, RECONCILE_INTERVAL_CONFIG_NAME, minimum=MIN_RECONCILE_INTERVAL
            ),
            runner_storage=runner_storage,
            base_image=_parse_enum(config, BASE_IMAGE_CONFIG_NAME, BaseImage),
            dockerhub_mirror=_parse_mirror(_get_str(config, DOCKERHUB_MIRROR_CONFIG_NAME)),
            denylist=_parse_denylist(_get_str(config, DENYLIST_CONFIG_NAME)),
            aproxy=aproxy,
            test_mode=_parse_test_mode(_get_str(config, TEST_MODE_CONFIG_NAME)),
            repo_policy=_parse_repo_policy(config),
            proxy=proxy,
            is_metrics_enabled=bool(charm.model.relations.get(COS_AGENT_RELATION)),
            reactive_config=reactive_config,
            ssh_debug_connections=read_ssh_debug_connections(charm),
            arch=_parse_arch(platform.machine() if machine is None else machine),
            app_name=app_name,
            unit_number=unit_number,
        )


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    """Serialise a secret in clear only under the reveal context."""
    context = info.context
    if isinstance(context, dict) and context.get(_REVEAL_SECRETS):
        return value.get_secret_value()
    return str(value)


def _digest(data: Mapping[str, Any]) -> str:
    """Return the SHA-256 of a canonical JSON encoding of ``data``."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def max_app_name_length(unit_number: int) -> int:
    """Return the longest application name whose runner names LXD can handle.

    Args:
        unit_number: The unit number (part of every runner name).

    Returns:
        The maximum number of characters.
    """
    suffix = len(RUNNER_NAME_SUFFIX.format(unit=unit_number))
    socket_fixed = len(LXD_VM_SOCKET_PATH.format(name="")) + suffix
    return min(UNIX_SOCKET_PATH_MAX - socket_fixed, LXD_INSTANCE_NAME_MAX - suffix)


def validate_app_name(app_name: str, unit_number: int) -> None:
    """Check that runner names built from the application name fit LXD's limits.

    Args:
        app_name: The application name.
        unit_number: The unit number.

    Raises:
        ConfigError: If the name is too long.
    """
    limit = max_app_name_length(unit_number)
    length = len(app_name.encode())
    if length > limit:
        raise ConfigError(
            APP_NAME_OPTION,
            f"{app_name!r} is {length} characters, at most {limit} fit: runners are named "
            f"<app>-{unit_number}-<8 hex digits>, a name that must fit LXD's "
            f"{LXD_INSTANCE_NAME_MAX}-character instance name limit and the "
            f"{UNIX_SOCKET_PATH_MAX + 1}-byte unix socket path {LXD_VM_SOCKET_PATH}; deploy "
            "under a shorter application name",
        )


def _get_str(config: Mapping[str, Any], name: str) -> str:
    """Return a string option."""
    value = config.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(name, f"{value!r} is not a string")
    return value


def _get_int(config: Mapping[str, Any], name: str, minimum: int) -> int:
    """Return an integer option of at least ``minimum``."""
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not an integer")
    if value < minimum:
        raise ConfigError(name, f"{value} is less than the minimum of {minimum}")
    return value


def _get_bool(config: Mapping[str, Any], name: str) -> bool:
    """Return a boolean option."""
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(name, f"{value!r} is not true or false")
    return value


def _read_token(charm: ops.CharmBase, value: str) -> str:
    """Return the GitHub token, reading it from a Juju user secret when given a secret URI."""
    import ops  # noqa: PLC0415 -- ops stays out of this module's import-time dependencies

    value = value.strip()
    if not value:
        raise MissingConfigError(TOKEN_CONFIG_NAME)
    if value.startswith(SECRET_URI_PREFIX):
        try:
            content = charm.model.get_secret(id=value).get_content(refresh=True)
        except (ops.SecretNotFoundError, ops.ModelError) as exc:
            logger.warning("cannot read the token secret %s: %s", value, type(exc).__name__)
            raise ConfigError(
                TOKEN_CONFIG_NAME,
                f"cannot read the secret {value}: check that it exists and run "
                f"`juju grant-secret {value} {charm.app.name}`",
            ) from exc
        token = content.get(SECRET_TOKEN_KEY, "").strip()
        if not token:
            raise ConfigError(
                TOKEN_CONFIG_NAME,
                f"the secret {value} has no {SECRET_TOKEN_KEY!r} key: update it with "
                f"`juju update-secret {value} {SECRET_TOKEN_KEY}=<github token>`",
            )
        value = token
    if any(char.isspace() for char in value):
        raise ConfigError(TOKEN_CONFIG_NAME, "contains whitespace: set the token alone")
    return value


def _parse_path(value: str, group: str) -> GitHubOrg | GitHubRepo:
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


def _parse_https_url(name: str, value: str, example: str, allow_loopback_http: bool) -> str:
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
    if parts.scheme == "http" and allow_loopback_http and parts.hostname in _LOOPBACK_HOSTS:
        return url
    raise error


def _parse_github_url(value: str) -> str:
    """Parse the ``github-url`` option."""
    if not value.strip():
        raise MissingConfigError(GITHUB_URL_CONFIG_NAME)
    return _parse_https_url(
        GITHUB_URL_CONFIG_NAME,
        value,
        "https://github.com or https://ghes.example.com",
        allow_loopback_http=True,
    )


def _parse_mirror(value: str) -> str | None:
    """Parse the ``dockerhub-mirror`` option."""
    if not value.strip():
        return None
    return _parse_https_url(
        DOCKERHUB_MIRROR_CONFIG_NAME,
        value,
        "https://mirror.example.com:5000",
        allow_loopback_http=False,
    )


def _parse_labels(value: str) -> tuple[str, ...]:
    """Parse the ``labels`` option."""
    labels: list[str] = []
    for raw in value.split(","):
        label = raw.strip()
        if not label:
            continue
        if not _LABEL.match(label):
            raise ConfigError(
                LABELS_CONFIG_NAME,
                f"{label!r} is not a label: use letters, digits, '.', '_' and '-' "
                "(at most 100 characters), separated by commas",
            )
        if label not in labels:
            labels.append(label)
    return tuple(labels)


def _parse_size(config: Mapping[str, Any], name: str) -> str:
    """Parse a binary size option such as ``vm-memory``."""
    value = _get_str(config, name).strip()
    try:
        size = _size_in_bytes(value)
    except ValueError as exc:
        raise ConfigError(name, f"{value!r} is not a size like 7GiB") from exc
    if size == 0:
        raise ConfigError(name, f"{value!r} is zero")
    return value


def _parse_enum(config: Mapping[str, Any], name: str, enum: type[Any]) -> Any:
    """Parse an option that takes one of a few values."""
    value = _get_str(config, name).strip()
    try:
        return enum(value)
    except ValueError as exc:
        allowed = " or ".join(repr(member.value) for member in enum)
        raise ConfigError(name, f"{value!r} is not {allowed}") from exc


def _parse_denylist(value: str) -> tuple[str, ...]:
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


def _parse_repo_policy(config: Mapping[str, Any]) -> RepoPolicyOptions:
    """Parse the ``repo-policy-*`` options."""
    default = _get_str(config, POLICY_DEFAULT_CONFIG_NAME).strip().lower() or "deny"
    if default not in ("allow", "deny"):
        raise ConfigError(POLICY_DEFAULT_CONFIG_NAME, f"{default!r} is neither 'allow' nor 'deny'")
    return RepoPolicyOptions(
        allow_pull_request_target=_get_bool(config, POLICY_ALLOW_PR_TARGET_CONFIG_NAME),
        allow_unprotected_branches=_get_bool(config, POLICY_ALLOW_UNPROTECTED_CONFIG_NAME),
        default=default,
    )


def _parse_test_mode(value: str) -> bool:
    """Parse the ``test-mode`` option."""
    value = value.strip()
    if value in ("", "insecure"):
        return value == "insecure"
    raise ConfigError(TEST_MODE_CONFIG_NAME, f"{value!r} is not '' (off) or 'insecure'")


def _proxy_from_env(environ: Mapping[str, str]) -> ProxySetting:
    """Read the model's proxy settings Juju passes to the charm."""
    return ProxySetting(
        http=environ.get("JUJU_CHARM_HTTP_PROXY") or None,
        https=environ.get("JUJU_CHARM_HTTPS_PROXY") or None,
        no_proxy=environ.get("JUJU_CHARM_NO_PROXY") or None,
    )


def _parse_arch(machine: str) -> Arch:
    """Map the machine architecture to GitHub's naming."""
    arch = {"x86_64": Arch.X64, "amd64": Arch.X64, "aarch64": Arch.ARM64, "arm64": Arch.ARM64}
    try:
        return arch[machine.lower()]
    except KeyError:
        raise ConfigError(
            "architecture",
            f"the unit's architecture {machine!r} is not supported: deploy on amd64 or arm64",
        ) from None


def read_ssh_debug_connections(charm: ops.CharmBase) -> tuple[SSHDebugConnection, ...]:
    """Read the tmate servers of the debug-ssh relations.

    Units that have not published all of host, port, rsa_fingerprint and ed25519_fingerprint
    (or a bad port) are skipped with a warning: they appear at a later relation-changed.

    Args:
        charm: The charm.

    Returns:
        The servers, sorted by host and port.
    """
    connections: set[SSHDebugConnection] = set()
    for relation in charm.model.relations.get(DEBUG_SSH_RELATION, []):
        for unit in relation.units:
            data = relation.data[unit]
            host = data.get("host", "")
            port = data.get("port", "")
            rsa = data.get("rsa_fingerprint", "")
            ed25519 = data.get("ed25519_fingerprint", "")
            if not (host and port and rsa and ed25519):
                logger.info("debug-ssh unit %s has not sent all its data yet", unit.name)
                continue
            if not port.isdigit() or not 0 < int(port) < 65536:
                logger.warning("debug-ssh unit %s sent an invalid port %r", unit.name, port)
                continue
            connections.add(
                SSHDebugConnection(
                    host=host, port=int(port), rsa_fingerprint=rsa, ed25519_fingerprint=ed25519
                )
            )
    return tuple(sorted(connections, key=lambda c: (c.host, c.port)))
