"""Which cloud the runners run on, and the OpenStack options when it is OpenStack.

* ``backend``: ``lxd`` (the default: runners are LXD instances on the unit's machine) or
  ``openstack`` (runners are servers on an OpenStack cloud);
* ``openstack-clouds-yaml-secret-id``: a Juju secret whose ``clouds-yaml`` key holds a
  ``clouds.yaml`` (openstacksdk's format: ``clouds: {<name>: {auth: {auth_url: ...}, ...}}``);
* ``openstack-cloud``: the cloud of that file to use (may stay empty when it holds one cloud);
* ``openstack-flavor``, ``openstack-image``, ``openstack-network``: what each runner server
  is created with (names or IDs).

An option the chosen backend would not honour is refused: ``openstack-*`` options with the LXD
backend are a ConfigError naming them, as is any missing one with the OpenStack backend. The
Juju face (``charm_state``) passes the reader of the secret; the values are checked here, and no
message ever quotes the file's content (it holds passwords).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import SecretStr

from config.state import OpenstackSettings
from errors import ConfigError
from juju.options import get_str

BACKEND_CONFIG_NAME = "backend"
OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME = "openstack-clouds-yaml-secret-id"  # noqa: S105
OPENSTACK_CLOUD_CONFIG_NAME = "openstack-cloud"
OPENSTACK_FLAVOR_CONFIG_NAME = "openstack-flavor"
OPENSTACK_IMAGE_CONFIG_NAME = "openstack-image"
OPENSTACK_NETWORK_CONFIG_NAME = "openstack-network"
SECRET_CLOUDS_YAML_KEY = "clouds-yaml"  # noqa: S105 -- a key name

REQUIRED_OPENSTACK_OPTIONS = (
    OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME,
    OPENSTACK_FLAVOR_CONFIG_NAME,
    OPENSTACK_IMAGE_CONFIG_NAME,
    OPENSTACK_NETWORK_CONFIG_NAME,
)
OPENSTACK_OPTIONS = (*REQUIRED_OPENSTACK_OPTIONS, OPENSTACK_CLOUD_CONFIG_NAME)
# A Juju secret URI (``secret:<id>``, optionally with the model UUID) or a bare secret ID.
_SECRET_ID = re.compile(r"^(?:secret:(?://[0-9a-f-]{36}/)?)?[0-9a-z]{20}$")
# Names or IDs of OpenStack resources: letters, digits and ._:@+/- with inner spaces, 1-255
# characters (no quote, $, backtick or brace: nothing a template or shell could take as code).
_RESOURCE = re.compile(r"^[\w.:@+/-](?:[\w.:@+/ -]{0,253}[\w.:@+/-])?$", re.ASCII)
MAX_CLOUDS_YAML_BYTES = 64 * 1024
# Options only the LXD backend can honour, and what to do instead on a cloud. (``vm-*`` and
# ``base-image`` have defaults, so they are documented as LXD-only rather than refused.)
LXD_ONLY_OPTIONS = {
    "network": "servers get their port on openstack-network",
    "denylist": "it is enforced on the LXD host: use the cloud's security groups",
    "test-mode": "it makes LXD containers",
    "experimental-use-aproxy": "it redirects the LXD bridge's traffic on the host",
}


class Backend(str, enum.Enum):
    """Where runners run."""

    LXD = "lxd"
    OPENSTACK = "openstack"


@dataclass(frozen=True)
class OpenstackOptions:
    """The OpenStack options, checked (the clouds.yaml still to be read from its secret).

    Attributes:
        clouds_yaml_secret_id: The Juju secret holding the clouds.yaml.
        cloud: The cloud of the clouds.yaml to use; "" for its only cloud.
        flavor: The flavor of runner servers.
        image: The image of runner servers.
        network: The network runner servers get a port on.
    """

    clouds_yaml_secret_id: str
    cloud: str
    flavor: str
    image: str
    network: str


@dataclass(frozen=True)
class OpenstackCloud:
    """A cloud to create runner servers on, read from the secret's clouds.yaml.

    Attributes:
        name: The cloud's name in the file.
        clouds_yaml: The whole file, as openstacksdk reads it (holds credentials: never log).
        auth_url: The cloud's keystone URL (safe to show).
    """

    name: str
    clouds_yaml: str
    auth_url: str

    def __repr__(self) -> str:
        """Show the cloud without its credentials."""
        return f"OpenstackCloud(name={self.name!r}, auth_url={self.auth_url!r})"


def parse_backend(config: Mapping[str, Any]) -> Backend:
    """Return the backend the ``backend`` option chooses.

    Args:
        config: The charm's options.

    Returns:
        The backend (LXD when the option is empty).

    Raises:
        ConfigError: Naming ``backend``, for any other value.
    """
    value = get_str(config, BACKEND_CONFIG_NAME).strip().lower() or Backend.LXD.value
    try:
        return Backend(value)
    except ValueError:
        choices = ", ".join(b.value for b in Backend)
        raise ConfigError(BACKEND_CONFIG_NAME, f"{value!r} is not one of {choices}") from None


def parse_openstack_options(config: Mapping[str, Any]) -> OpenstackOptions | None:
    """Check the OpenStack options against the chosen backend.

    Args:
        config: The charm's options.

    Returns:
        The options with the OpenStack backend; None with the LXD backend.

    Raises:
        ConfigError: Naming the option, for an OpenStack option set with the LXD backend, a
            missing one or an LXD-only option set with the OpenStack backend, or a bad value.
    """
    backend = parse_backend(config)
    values = {name: get_str(config, name).strip() for name in OPENSTACK_OPTIONS}
    if backend is Backend.LXD:
        stray = [name for name in OPENSTACK_OPTIONS if values[name]]
        if stray:
            raise ConfigError(
                stray[0],
                f"{', '.join(stray)} only apply to the OpenStack backend: unset them or set "
                f"{BACKEND_CONFIG_NAME}=openstack",
            )
        return None
    for name, instead in LXD_ONLY_OPTIONS.items():
        if config.get(name) not in (None, "", False):
            raise ConfigError(
                name, f"does not apply with {BACKEND_CONFIG_NAME}=openstack ({instead})"
            )
    missing = [name for name in REQUIRED_OPENSTACK_OPTIONS if not values[name]]
    if missing:
        raise ConfigError(
            missing[0], f"{', '.join(missing)} must be set with {BACKEND_CONFIG_NAME}=openstack"
        )
    secret_id = values[OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME]
    if not _SECRET_ID.match(secret_id):
        raise ConfigError(
            OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME,
            f"{secret_id!r} is not a Juju secret ID: create one with `juju add-secret "
            f"openstack-cloud {SECRET_CLOUDS_YAML_KEY}#file=clouds.yaml`",
        )
    for name in (
        OPENSTACK_CLOUD_CONFIG_NAME,
        OPENSTACK_FLAVOR_CONFIG_NAME,
        OPENSTACK_IMAGE_CONFIG_NAME,
        OPENSTACK_NETWORK_CONFIG_NAME,
    ):
        if values[name] and not _RESOURCE.match(values[name]):
            raise ConfigError(
                name,
                f"{values[name]!r} is not a name or ID (1-255 letters, digits, spaces, ._:@+/-)",
            )
    return OpenstackOptions(
        clouds_yaml_secret_id=secret_id,
        cloud=values[OPENSTACK_CLOUD_CONFIG_NAME],
        flavor=values[OPENSTACK_FLAVOR_CONFIG_NAME],
        image=values[OPENSTACK_IMAGE_CONFIG_NAME],
        network=values[OPENSTACK_NETWORK_CONFIG_NAME],
    )


def parse_clouds_yaml(text: str, cloud: str, secret_id: str) -> OpenstackCloud:
    """Check a clouds.yaml and pick the cloud runners are created on.

    Args:
        text: The secret's ``clouds-yaml`` content.
        cloud: The ``openstack-cloud`` option ("" for the file's only cloud).
        secret_id: The secret, for messages.

    Returns:
        The cloud.

    Raises:
        ConfigError: Naming ``openstack-clouds-yaml-secret-id`` (or ``openstack-cloud``), for
            a file that is no clouds.yaml, has no such cloud or a cloud without a usable
            ``auth.auth_url``. Messages never quote the file.
    """
    option = OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME
    fix = f"update it with `juju update-secret {secret_id} {SECRET_CLOUDS_YAML_KEY}#file=...`"
    if not text.strip():
        raise ConfigError(option, f"the secret {secret_id} has no {SECRET_CLOUDS_YAML_KEY!r} key")
    if len(text.encode()) > MAX_CLOUDS_YAML_BYTES:
        raise ConfigError(option, f"the clouds.yaml of {secret_id} is over 64 KiB: {fix}")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(option, f"the clouds.yaml of {secret_id} is not YAML: {fix}") from None
    clouds = document.get("clouds") if isinstance(document, dict) else None
    if not isinstance(clouds, dict) or not clouds:
        raise ConfigError(
            option, f"the clouds.yaml of {secret_id} has no 'clouds' mapping with a cloud: {fix}"
        )
    names = sorted(str(name) for name in clouds)
    if not cloud:
        if len(names) != 1:
            raise ConfigError(
                OPENSTACK_CLOUD_CONFIG_NAME,
                f"the clouds.yaml holds {len(names)} clouds ({', '.join(names)}): choose one",
            )
        cloud = names[0]
    if cloud not in clouds:
        raise ConfigError(
            OPENSTACK_CLOUD_CONFIG_NAME,
            f"the clouds.yaml of {secret_id} has no cloud {cloud!r} (it has {', '.join(names)})",
        )
    entry = clouds[cloud]
    auth = entry.get("auth") if isinstance(entry, dict) else None
    auth_url = auth.get("auth_url") if isinstance(auth, dict) else None
    parts = urlsplit(auth_url) if isinstance(auth_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            option, f"the cloud {cloud!r} of {secret_id} has no http(s) auth.auth_url: {fix}"
        )
    return OpenstackCloud(name=cloud, clouds_yaml=text, auth_url=str(auth_url))


SecretReader = Callable[[str, str], Mapping[str, str]]
"""Read a Juju secret's content: (option naming it, secret ID) -> keys and values."""


def read_openstack(
    config: Mapping[str, Any], read_secret: SecretReader
) -> OpenstackSettings | None:
    """Read the OpenStack cloud the ``backend`` and ``openstack-*`` options choose.

    Reactive mode (a ``mongodb`` relation) works on either backend: the consumers rebuild the
    unit's manager, OpenStack's too (``reactive.manager_section``).

    Args:
        config: The charm's options.
        read_secret: Reads the clouds.yaml secret (raising a ConfigError that names the
            option when it is missing or not granted).

    Returns:
        The cloud with ``backend=openstack``; None with the LXD backend.

    Raises:
        ConfigError: Naming the option, for a bad option or a secret holding no usable
            clouds.yaml.
    """
    options = parse_openstack_options(config)
    if options is None:
        return None
    secret_id = options.clouds_yaml_secret_id
    content = read_secret(OPENSTACK_CLOUDS_YAML_SECRET_ID_CONFIG_NAME, secret_id)
    cloud = parse_clouds_yaml(content.get(SECRET_CLOUDS_YAML_KEY, ""), options.cloud, secret_id)
    return OpenstackSettings(
        cloud=cloud.name,
        clouds_yaml=SecretStr(cloud.clouds_yaml),
        auth_url=cloud.auth_url,
        flavor=options.flavor,
        image=options.image,
        network=options.network,
    )
