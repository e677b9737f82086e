"""The GitHub App's JSON Web Token: RS256 over the app's private key (PyJWT + cryptography).

GitHub's rules (docs "Generating a JSON Web Token (JWT) for a GitHub App"): ``iss`` is the app's
client ID (or its numeric app ID), ``iat`` is backdated 60 seconds against clock drift, and
``exp`` is at most 10 minutes after the current time. The token here expires 9 minutes from now,
so a clock a little ahead of GitHub's is not told "'exp' is too far in the future".
"""

from __future__ import annotations

import re

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

CLOCK_SKEW = 60
"""Seconds ``iat`` is set in the past."""
JWT_LIFETIME = 540
"""Seconds from now to ``exp`` (GitHub's maximum is 600)."""
MIN_KEY_BITS = 2048
# GitHub client IDs are ``Iv1.<hex>`` or ``Iv23<alnum>``; app IDs are integers.
CLIENT_ID_PATTERN = re.compile(r"^(?:[0-9]{1,12}|Iv[0-9A-Za-z.]{4,60})$")


def load_app_key(pem: str) -> RSAPrivateKey:
    """Load the app's private key (the ``.pem`` file GitHub generates).

    Args:
        pem: The PEM text. Secret.

    Returns:
        The key.

    Raises:
        ValueError: If it is not an unencrypted RSA private key in PEM of at least 2048 bits;
            the message says which, never the key.
    """
    text = pem.strip()
    if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
        raise ValueError("not a PEM private key (no -----BEGIN ... PRIVATE KEY----- block)")
    try:
        key = load_pem_private_key(text.encode(), password=None)
    except TypeError as exc:
        raise ValueError("the PEM key is encrypted: GitHub's keys have no passphrase") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"the PEM key cannot be read ({type(exc).__name__})") from exc
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"not an RSA key ({type(key).__name__}): GitHub App keys are RSA")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"the RSA key has {key.key_size} bits, at least {MIN_KEY_BITS} needed")
    return key


def app_jwt_claims(client_id: str, now: float) -> dict[str, int | str]:
    """Return the claims of the app's JWT at ``now``.

    Args:
        client_id: The app's client ID (or app ID): the issuer.
        now: The current time, seconds since the epoch.

    Returns:
        ``iat`` (now - 60 s), ``exp`` (now + 9 min) and ``iss``.
    """
    issued = int(now)
    return {"iat": issued - CLOCK_SKEW, "exp": issued + JWT_LIFETIME, "iss": client_id}


def make_app_jwt(client_id: str, key: RSAPrivateKey, now: float) -> str:
    """Sign the app's JWT with RS256.

    Args:
        client_id: The app's client ID (or app ID).
        key: The app's private key.
        now: The current time, seconds since the epoch.

    Returns:
        The compact JWT. Secret (it authenticates as the app for 10 minutes).
    """
    return jwt.encode(app_jwt_claims(client_id, now), key, algorithm="RS256")
