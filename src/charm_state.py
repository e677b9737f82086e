"""Build the unit's state from Juju: config options, relations and the Juju proxy environment.

:func:`from_charm` reads them once per hook into the plain, frozen :class:`CharmState` of
``config.state`` (which the core reads without Juju). Every invalid value raises
:class:`errors.ConfigError` (or a subclass) whose message names the option and says what is
wrong, so the charm shows it as is in a Blocked status.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import re
from collections.abc import Mapping
from typing import Any

import ops
from pydantic import SecretStr

import errors
from config.state import (
    BaseImage,
    CharmState,
    GithubAppCredentials,
    ReactiveConfig,
    RepoPolicyOptions,
    RunnerStorage,
)
from errors import ConfigError, ImmutableConfigChangedError
from github_api.types import api_base_url
from juju.auth_options import (
    SECRET_PRIVATE_KEY_KEY,
    SECRET_TOKEN_KEY,
    SECRET_WEBHOOK_KEY,
    choose_auth,
    parse_private_key,
    parse_webhook_secret,
    parse_webhook_secret_id,
)
from juju.intake_host import webhook_url
from juju.openstack_options import OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME, read_openstack
from juju.option_urls import HOSTNAME
from juju.options import (
    APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
    BASE_IMAGE_CONFIG_NAME,
    DENYLIST_CONFIG_NAME,
    DOCKERHUB_MIRROR_CONFIG_NAME,
    GITHUB_URL_CONFIG_NAME,
    GROUP_CONFIG_NAME,
    LABELS_CONFIG_NAME,
    MAX_RECONCILE_INTERVAL,
    MAX_VIRTUAL_MACHINES,
    MAX_VM_CPU,
    NETWORK_CONFIG_NAME,
    PATH_CONFIG_NAME,
    POLICY_ALLOW_PR_TARGET_CONFIG_NAME,
    POLICY_ALLOW_UNPROTECTED_CONFIG_NAME,
    POLICY_DEFAULT_CONFIG_NAME,
    RECONCILE_INTERVAL_CONFIG_NAME,
    RUNNER_STORAGE_CONFIG_NAME,
    TEST_MODE_CONFIG_NAME,
    TOKEN_CONFIG_NAME,
    TOKEN_SECRET_ID_CONFIG_NAME,
    USE_APROXY_CONFIG_NAME,
    VIRTUAL_MACHINES_CONFIG_NAME,
    VM_CPU_CONFIG_NAME,
    VM_DISK_CONFIG_NAME,
    VM_MEMORY_CONFIG_NAME,
    WEBHOOK_SECRET_CONFIG_NAME,
    get_bool,
    get_int,
    get_str,
    parse_arch,
    parse_denylist,
    parse_enum,
    parse_github_url,
    parse_group,
    parse_labels,
    parse_mirror,
    parse_network,
    parse_path,
    parse_size,
    parse_test_mode,
    parse_token,
    parse_warm_floor,
    proxy_from_env,
)
from runner_type import SSHDebugConnection, VirtualMachineResources

logger = logging.getLogger(__name__)

APP_NAME_OPTION = "application-name"

COS_AGENT_RELATION = "cos-agent"
DEBUG_SSH_RELATION = "debug-ssh"

SECRET_URI_PREFIX = "secret:"  # noqa: S105 -- a URI scheme

MIN_RECONCILE_INTERVAL = 2
# tmate host key fingerprints (``SHA256:<base64>``): they reach the runner's env file.
FINGERPRINT_PATTERN = re.compile(r"^[A-Za-z0-9+/=:_-]{1,128}$")

# LXD runs the QEMU monitor of a VM on a unix socket under the instance's log directory; a unix
# socket path holds at most 107 bytes (sun_path is 108 bytes with the terminating NUL). The snap
# layout has the longest prefix. Instance names are also host names: at most 63 characters.
LXD_VM_SOCKET_PATH = "/var/snap/lxd/common/lxd/logs/{name}/qemu.monitor"
UNIX_SOCKET_PATH_MAX = 107
LXD_INSTANCE_NAME_MAX = 63
RUNNER_NAME_SUFFIX = "-{unit}-" + "0" * 8  # runner names are <app>-<unit>-<8 hex digits>


def from_charm(
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

    token, github_app = read_credentials(charm)
    group = parse_group(get_str(config, GROUP_CONFIG_NAME))
    path = parse_path(get_str(config, PATH_CONFIG_NAME), group)
    github_url = parse_github_url(get_str(config, GITHUB_URL_CONFIG_NAME))

    runner_storage = parse_enum(config, RUNNER_STORAGE_CONFIG_NAME, RunnerStorage)
    if deployed_runner_storage and deployed_runner_storage != runner_storage.value:
        raise ImmutableConfigChangedError(
            RUNNER_STORAGE_CONFIG_NAME,
            f"cannot change after deployment (deployed with {deployed_runner_storage!r}, "
            f"now {runner_storage.value!r}); set it back with `juju config {app_name} "
            f"{RUNNER_STORAGE_CONFIG_NAME}={deployed_runner_storage}` or deploy a new "
            "application",
        )

    proxy = proxy_from_env(os.environ if environ is None else environ)
    aproxy = get_bool(config, USE_APROXY_CONFIG_NAME)
    if aproxy and not (proxy.http or proxy.https):
        raise ConfigError(
            USE_APROXY_CONFIG_NAME,
            "needs the model proxy, which is not set: set juju-http-proxy or "
            "juju-https-proxy with `juju model-config`, or turn this option off",
        )

    virtual_machines = get_int(
        config, VIRTUAL_MACHINES_CONFIG_NAME, minimum=0, maximum=MAX_VIRTUAL_MACHINES
    )
    base_virtual_machines, max_total_virtual_machines = parse_warm_floor(config, virtual_machines)

    reactive_config = (
        ReactiveConfig(mq_uri=SecretStr(database_uri), queue_name=app_name)
        if database_uri
        else None
    )

    return CharmState(
        token=SecretStr(token),
        github_app=github_app,
        path=path,
        github_url=github_url,
        api_url=api_base_url(github_url),
        runner_group=group,
        labels=parse_labels(get_str(config, LABELS_CONFIG_NAME)),
        virtual_machines=virtual_machines,
        base_virtual_machines=base_virtual_machines,
        max_total_virtual_machines=max_total_virtual_machines,
        vm_resources=VirtualMachineResources(
            cpu=get_int(config, VM_CPU_CONFIG_NAME, minimum=1, maximum=MAX_VM_CPU),
            memory=parse_size(config, VM_MEMORY_CONFIG_NAME),
            disk=parse_size(config, VM_DISK_CONFIG_NAME),
        ),
        reconcile_interval=get_int(
            config,
            RECONCILE_INTERVAL_CONFIG_NAME,
            minimum=MIN_RECONCILE_INTERVAL,
            maximum=MAX_RECONCILE_INTERVAL,
        ),
        runner_storage=runner_storage,
        runner_network=parse_network(get_str(config, NETWORK_CONFIG_NAME)),
        base_image=parse_enum(config, BASE_IMAGE_CONFIG_NAME, BaseImage),
        dockerhub_mirror=parse_mirror(get_str(config, DOCKERHUB_MIRROR_CONFIG_NAME)),
        denylist=parse_denylist(get_str(config, DENYLIST_CONFIG_NAME)),
        aproxy=aproxy,
        test_mode=parse_test_mode(get_str(config, TEST_MODE_CONFIG_NAME)),
        repo_policy=_parse_repo_policy(config),
        proxy=proxy,
        is_metrics_enabled=bool(charm.model.relations.get(COS_AGENT_RELATION)),
        reactive_config=reactive_config,
        webhook_secret=read_webhook_secret(charm),
        ssh_debug_connections=read_ssh_debug_connections(charm),
        arch=parse_arch(platform.machine() if machine is None else machine),
        openstack=read_openstack(
            charm.config, lambda name, sid: _secret_content(charm, name, sid)
        ),
        app_name=app_name,
        unit_number=unit_number,
    )


def status_for_error(exc: errors.GithubRunnerError) -> ops.StatusBase:
    """Map a project error to the unit status that says why (the only such mapping)."""
    retry = "; retrying at the next reconcile"
    if isinstance(
        exc,
        errors.ConfigError
        | errors.GithubTokenError
        | errors.GithubPermissionError
        | errors.GithubRateLimitError
        | errors.LXDUnavailableError,
    ):
        return ops.BlockedStatus(str(exc))
    if isinstance(exc, errors.GithubClientError):
        return ops.WaitingStatus(f"GitHub API error: {exc}{retry}")
    if isinstance(exc, errors.LXDError):
        return ops.WaitingStatus(f"LXD error: {exc}{retry}")
    if isinstance(exc, errors.RunnerError | errors.ReactiveError):
        return ops.WaitingStatus(f"{exc}{retry}")
    return ops.BlockedStatus(str(exc))


def read_webhook_secret(charm: ops.CharmBase) -> SecretStr | None:
    """Read the webhook secret the ``webhook-secret`` option's Juju secret holds.

    Args:
        charm: The charm.

    Returns:
        The secret's ``webhook-secret`` key, or None when the option is not set.

    Raises:
        ConfigError: Naming ``webhook-secret``, if it is no secret ID, the secret cannot be
            read or its value is bad.
    """
    value = get_str(charm.config, WEBHOOK_SECRET_CONFIG_NAME).strip()
    if not value:
        return None
    secret_id = parse_webhook_secret_id(value)
    content = _secret_content(charm, WEBHOOK_SECRET_CONFIG_NAME, secret_id)
    return SecretStr(parse_webhook_secret(content.get(SECRET_WEBHOOK_KEY, ""), secret_id))


def intake_url(charm: ops.CharmBase, port: int | None) -> str:
    """Return the URL of the unit's webhook intake on its ingress address ("": not running).

    Args:
        charm: The charm.
        port: The intake's port (None: not running).

    Returns:
        ``http://<address>:<port>/webhook``, or "" without a port or an address.
    """
    binding = charm.model.get_binding("juju-info")
    address = binding.network.ingress_address if binding is not None else None
    return webhook_url(str(address), port) if port and address else ""


def watches_secret(config: Mapping[str, Any], secret: ops.Secret) -> bool:
    """Return whether an option names the secret whose revision changed.

    Args:
        config: The charm's options.
        secret: The secret of the ``secret-changed`` event.

    Returns:
        Whether ``token`` (as a secret URI), ``token-secret-id``,
        ``github-app-private-key-secret-id``, ``webhook-secret`` or
        ``openstack-clouds-yaml-secret-id`` names it.
    """
    unique = secret.unique_identifier or _secret_key(secret.id or "")
    if not unique:
        return False
    names = (
        TOKEN_CONFIG_NAME,
        TOKEN_SECRET_ID_CONFIG_NAME,
        APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
        WEBHOOK_SECRET_CONFIG_NAME,
        OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME,
    )
    values = (str(config.get(name) or "").strip() for name in names)
    return any(value and _secret_key(value) == unique for value in values)


def _secret_key(uri: str) -> str:
    """The unique part of a secret URI (``secret:<id>``, ``secret://<model>/<id>``, ``<id>``)."""
    return uri.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


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


def read_credentials(charm: ops.CharmBase) -> tuple[str, GithubAppCredentials | None]:
    """Read the one way of authenticating to GitHub the options set (see ``juju.auth_options``).

    Args:
        charm: The charm.

    Returns:
        The token, or "" and the GitHub App's credentials (the key read from its secret).

    Raises:
        ConfigError: If not exactly one way is set, a secret cannot be read, or a value is bad.
    """
    choice = choose_auth(charm.config)
    if choice.app is not None:
        app = choice.app
        content = _secret_content(
            charm, APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME, app.private_key_secret_id
        )
        pem = content.get(SECRET_PRIVATE_KEY_KEY, "")
        if not pem.strip():
            raise ConfigError(
                APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
                f"the secret {app.private_key_secret_id} has no {SECRET_PRIVATE_KEY_KEY!r} key: "
                f"update it with `juju update-secret {app.private_key_secret_id} "
                f"{SECRET_PRIVATE_KEY_KEY}#file=<app>.private-key.pem`",
            )
        key = parse_private_key(pem, app.private_key_secret_id)
        credentials = GithubAppCredentials(
            client_id=app.client_id,
            installation_id=app.installation_id,
            private_key=SecretStr(key),
        )
        return "", credentials
    if choice.token_secret_id:
        return _token_from_secret(charm, TOKEN_SECRET_ID_CONFIG_NAME, choice.token_secret_id), None
    if choice.token.startswith(SECRET_URI_PREFIX):
        return _token_from_secret(charm, TOKEN_CONFIG_NAME, choice.token), None
    return parse_token(choice.token), None


def _secret_content(charm: ops.CharmBase, option: str, secret_id: str) -> dict[str, str]:
    """Read a user secret the option names, or say how to grant it."""
    try:
        return charm.model.get_secret(id=secret_id).get_content(refresh=True)
    except (ops.SecretNotFoundError, ops.ModelError) as exc:
        logger.warning(
            "cannot read the secret %s of %s: %s", secret_id, option, type(exc).__name__
        )
        raise ConfigError(
            option,
            f"cannot read the secret {secret_id}: check that it exists and run "
            f"`juju grant-secret {secret_id} {charm.app.name}`",
        ) from exc


def _token_from_secret(charm: ops.CharmBase, option: str, secret_id: str) -> str:
    """Return the token a user secret holds under its ``token`` key."""
    token = _secret_content(charm, option, secret_id).get(SECRET_TOKEN_KEY, "").strip()
    if not token:
        raise ConfigError(
            option,
            f"the secret {secret_id} has no {SECRET_TOKEN_KEY!r} key: update it with "
            f"`juju update-secret {secret_id} {SECRET_TOKEN_KEY}=<github token>`",
        )
    return parse_token(token, option)


def _parse_repo_policy(config: Mapping[str, Any]) -> RepoPolicyOptions:
    """Parse the ``repo-policy-*`` options."""
    default = get_str(config, POLICY_DEFAULT_CONFIG_NAME).strip().lower() or "deny"
    if default not in ("allow", "deny"):
        raise ConfigError(POLICY_DEFAULT_CONFIG_NAME, f"{default!r} is neither 'allow' nor 'deny'")
    return RepoPolicyOptions(
        allow_pull_request_target=get_bool(config, POLICY_ALLOW_PR_TARGET_CONFIG_NAME),
        allow_unprotected_branches=get_bool(config, POLICY_ALLOW_UNPROTECTED_CONFIG_NAME),
        default=default,
    )


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
            if not _valid_ssh_host(host) or not all(
                FINGERPRINT_PATTERN.match(f) for f in (rsa, ed25519)
            ):
                logger.warning("debug-ssh unit %s sent an invalid host or fingerprint", unit.name)
                continue
            connections.add(
                SSHDebugConnection(
                    host=host, port=int(port), rsa_fingerprint=rsa, ed25519_fingerprint=ed25519
                )
            )
    return tuple(sorted(connections, key=lambda c: (c.host, c.port)))


def _valid_ssh_host(host: str) -> bool:
    """Return whether a debug-ssh host is a DNS name or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(HOSTNAME.match(host.lower())) and len(host) <= 253
    return True
