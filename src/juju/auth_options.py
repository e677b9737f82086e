"""How the charm authenticates to GitHub: exactly one of three ways, chosen from the options.

* ``token``: the token itself (or, as before, the URI of a Juju secret whose ``token`` key
  holds it);
* ``token-secret-id``: a Juju secret whose ``token`` key holds the token (upstream's option);
* ``github-app-client-id`` + ``github-app-installation-id`` +
  ``github-app-private-key-secret-id``: a GitHub App installation, the PEM key in a Juju secret
  (key ``private-key``).

Anything else (none, two ways, part of the app's options) is a ConfigError naming the options.
Reading the secrets is the Juju face's (``charm_state``); the values are checked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from errors import ConfigError, MissingConfigError
from github_api.app_jwt import CLIENT_ID_PATTERN, load_app_key
from juju.options import (
    APP_CLIENT_ID_CONFIG_NAME,
    APP_INSTALLATION_ID_CONFIG_NAME,
    APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
    TOKEN_CONFIG_NAME,
    TOKEN_SECRET_ID_CONFIG_NAME,
    WEBHOOK_SECRET_CONFIG_NAME,
    get_str,
)

APP_OPTIONS = (
    APP_CLIENT_ID_CONFIG_NAME,
    APP_INSTALLATION_ID_CONFIG_NAME,
    APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
)
SECRET_TOKEN_KEY = "token"  # noqa: S105 -- the key name inside the user secret
SECRET_PRIVATE_KEY_KEY = "private-key"  # noqa: S105 -- a key name
SECRET_WEBHOOK_KEY = "webhook-secret"  # noqa: S105 -- a key name
WEBHOOK_SECRET_PATTERN = re.compile(r"^[\x21-\x7e]{16,256}$")  # printable ASCII, no space
# A Juju secret URI (``secret:<id>``, optionally with the model UUID) or a bare secret ID.
SECRET_ID_PATTERN = re.compile(r"^(?:secret:(?://[0-9a-f-]{36}/)?)?[0-9a-z]{20}$")
MAX_INSTALLATION_ID = 2**53

APP_CHOICE = "github-app-* options"
_ONE_WAY = (
    f"set exactly one way of authenticating: {TOKEN_CONFIG_NAME}, "
    f"{TOKEN_SECRET_ID_CONFIG_NAME}, or all three of {', '.join(APP_OPTIONS)}"
)


@dataclass(frozen=True)
class AppOptions:
    """The GitHub App options, checked (the key still to be read from its secret).

    Attributes:
        client_id: The app's client ID (or app ID).
        installation_id: The installation.
        private_key_secret_id: The Juju secret holding the PEM key.
    """

    client_id: str
    installation_id: int
    private_key_secret_id: str


@dataclass(frozen=True)
class AuthChoice:
    """The one way of authenticating the options set.

    Attributes:
        token: The ``token`` option's value (a token or a secret URI), if that is the way.
        token_secret_id: The ``token-secret-id`` secret, if that is the way.
        app: The app's options, if that is the way.
    """

    token: str = ""
    token_secret_id: str = ""
    app: AppOptions | None = None


def choose_auth(config: Mapping[str, Any]) -> AuthChoice:
    """Return the one way of authenticating the options set.

    Args:
        config: The charm's options.

    Returns:
        The choice, its values checked.

    Raises:
        ConfigError: If no way, more than one, or part of the app's options is set (naming the
            options), or a value is malformed.
    """
    token = get_str(config, TOKEN_CONFIG_NAME).strip()
    secret_id = get_str(config, TOKEN_SECRET_ID_CONFIG_NAME).strip()
    app_values = {name: get_str(config, name).strip() for name in APP_OPTIONS}
    app_set = [name for name, value in app_values.items() if value]
    ways = [
        name
        for name, is_set in (
            (TOKEN_CONFIG_NAME, bool(token)),
            (TOKEN_SECRET_ID_CONFIG_NAME, bool(secret_id)),
            (APP_CHOICE, bool(app_set)),
        )
        if is_set
    ]
    if len(ways) > 1:  # named after the second way: the option that conflicts
        second = app_set[0] if ways[1] == APP_CHOICE else ways[1]
        raise ConfigError(second, f"{' and '.join(ways)} are both set: {_ONE_WAY}")
    if not ways:
        unset = MissingConfigError(TOKEN_CONFIG_NAME)
        unset.message += f" (or {TOKEN_SECRET_ID_CONFIG_NAME}, or the {APP_CHOICE})"
        raise unset
    if token:
        return AuthChoice(token=token)
    if secret_id:
        return AuthChoice(token_secret_id=parse_secret_id(TOKEN_SECRET_ID_CONFIG_NAME, secret_id))
    missing = [name for name in APP_OPTIONS if name not in app_set]
    if missing:
        raise ConfigError(
            missing[0],
            f"a GitHub App needs all of {', '.join(APP_OPTIONS)}: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
        )
    return AuthChoice(
        app=AppOptions(
            client_id=parse_client_id(app_values[APP_CLIENT_ID_CONFIG_NAME]),
            installation_id=parse_installation_id(app_values[APP_INSTALLATION_ID_CONFIG_NAME]),
            private_key_secret_id=parse_secret_id(
                APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
                app_values[APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME],
            ),
        )
    )


def parse_secret_id(option: str, value: str) -> str:
    """Check a Juju secret ID option (``secret:<20 characters>`` or the bare ID).

    Args:
        option: The option's name.
        value: Its value.

    Returns:
        The secret URI.

    Raises:
        ConfigError: If it is not a Juju secret ID.
    """
    if not SECRET_ID_PATTERN.match(value):
        raise ConfigError(
            option,
            f"{value[:60]!r} is not a Juju secret ID (secret:<id>, as `juju add-secret` prints)",
        )
    return value if value.startswith("secret:") else f"secret:{value}"


def parse_client_id(value: str) -> str:
    """Check ``github-app-client-id`` (``Iv1.<hex>``, ``Iv23<...>``, or a numeric app ID).

    Args:
        value: The option's value.

    Raises:
        ConfigError: If it is no GitHub App client ID.
    """
    if not CLIENT_ID_PATTERN.match(value):
        raise ConfigError(
            APP_CLIENT_ID_CONFIG_NAME,
            f"{value[:60]!r} is not a GitHub App client ID (Iv1.… or Iv23…, shown on the app's "
            "settings page; the numeric app ID works too)",
        )
    return value


def parse_installation_id(value: str) -> int:
    """Check ``github-app-installation-id`` (a positive integer).

    Args:
        value: The option's value.

    Raises:
        ConfigError: If it is not a positive integer.
    """
    if not value.isascii() or not value.isdigit() or not 0 < int(value) < MAX_INSTALLATION_ID:
        raise ConfigError(
            APP_INSTALLATION_ID_CONFIG_NAME,
            f"{value[:60]!r} is not an installation ID (the number at the end of the "
            "installation's settings URL, .../settings/installations/<id>)",
        )
    return int(value)


def parse_private_key(pem: str, secret_id: str) -> str:
    """Check the app's private key read from its secret.

    Args:
        pem: The PEM text. Secret: never quoted.
        secret_id: The secret it came from (named in errors).

    Returns:
        The key, stripped.

    Raises:
        ConfigError: If it is not an RSA private key in PEM (saying what it is instead).
    """
    try:
        load_app_key(pem)
    except ValueError as exc:
        raise ConfigError(
            APP_PRIVATE_KEY_SECRET_ID_CONFIG_NAME,
            f"the {SECRET_PRIVATE_KEY_KEY!r} of {secret_id} is not a valid RSA PEM private key: "
            f"{exc}; set the .pem file GitHub generated with `juju update-secret {secret_id} "
            f"{SECRET_PRIVATE_KEY_KEY}#file=<app>.private-key.pem`",
        ) from None
    return pem.strip() + "\n"


def parse_webhook_secret_id(value: str) -> str:
    """Check the ``webhook-secret`` option: a Juju secret ID, never quoted back.

    A user may paste the webhook secret itself here: the message does not echo the value.

    Args:
        value: The option's value.

    Returns:
        The secret URI.

    Raises:
        ConfigError: If it is not a Juju secret ID.
    """
    if not SECRET_ID_PATTERN.match(value):
        raise ConfigError(
            WEBHOOK_SECRET_CONFIG_NAME,
            "is not a Juju secret ID (secret:<id>, as `juju add-secret` prints): keep the "
            f"webhook secret under the {SECRET_WEBHOOK_KEY!r} key of a Juju secret and set its ID",
        )
    return value if value.startswith("secret:") else f"secret:{value}"


def parse_webhook_secret(value: str, secret_id: str) -> str:
    """Check the webhook secret read from the ``webhook-secret`` option's Juju secret.

    Args:
        value: The secret's ``webhook-secret`` key. Secret: never quoted.
        secret_id: The Juju secret it came from (named in errors).

    Returns:
        The webhook secret, stripped (GitHub signs with the text set on its webhook).

    Raises:
        ConfigError: If it is missing, shorter than 16 characters, longer than 256, or holds
            anything but printable ASCII without spaces.
    """
    secret = value.strip()
    update = (
        f"set it with `juju update-secret {secret_id} {SECRET_WEBHOOK_KEY}=<value>` "
        "(e.g. from `openssl rand -hex 32`), the same value as on GitHub's webhook"
    )
    if not secret:
        raise ConfigError(
            WEBHOOK_SECRET_CONFIG_NAME,
            f"the secret {secret_id} has no {SECRET_WEBHOOK_KEY!r} key: {update}",
        )
    if not WEBHOOK_SECRET_PATTERN.match(secret):
        raise ConfigError(
            WEBHOOK_SECRET_CONFIG_NAME,
            f"the {SECRET_WEBHOOK_KEY!r} of {secret_id} must be 16 to 256 printable ASCII "
            f"characters without spaces ({len(secret)} characters given): {update}",
        )
    return secret
