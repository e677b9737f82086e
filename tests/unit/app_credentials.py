"""A GitHub App's credentials for charm tests: a real RSA key, its Juju secrets and options."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ops import testing

CLIENT_ID = "Iv23liTestClient"
INSTALLATION_ID = 4242
SECRET_TOKEN = "ghp_from-a-secret-0123456789"


@lru_cache(maxsize=1)
def private_key() -> rsa.RSAPrivateKey:
    """The app's key (made once per test session)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem() -> str:
    """The app's key as the .pem file GitHub hands out (PKCS#1)."""
    return (
        private_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        .decode()
    )


def public_pem() -> str:
    """The public half, as the sandbox registers it."""
    return (
        private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _secret_id(name: str) -> str:
    """A fixed Juju secret ID: random ones may spell a test's credential ("pw") by chance."""
    return f"secret:{name:0<20}"


KEY_SECRET = testing.Secret(
    tracked_content={"private-key": private_pem()}, id=_secret_id("appkey")
)
NOT_A_KEY_SECRET = testing.Secret(
    tracked_content={"private-key": "-----BEGIN nonsense"}, id=_secret_id("notakey")
)
TOKEN_SECRET = testing.Secret(tracked_content={"token": SECRET_TOKEN}, id=_secret_id("token"))
WEBHOOK_VALUE = "whsec-0123456789abcdef"
WEBHOOK_SECRET = testing.Secret(
    tracked_content={"webhook-secret": f" {WEBHOOK_VALUE}\n"}, id=_secret_id("webhook")
)
SHORT_WEBHOOK_SECRET = testing.Secret(
    tracked_content={"webhook-secret": "short"}, id=_secret_id("shortwebhook")
)
SECRETS = [KEY_SECRET, NOT_A_KEY_SECRET, TOKEN_SECRET, WEBHOOK_SECRET, SHORT_WEBHOOK_SECRET]


def app_config(**overrides: Any) -> dict[str, Any]:
    """Options that authenticate as the app (``token`` emptied), with overrides first."""
    return {
        **overrides,
        "token": "",
        **{
            key: value
            for key, value in {
                "github-app-client-id": CLIENT_ID,
                "github-app-installation-id": str(INSTALLATION_ID),
                "github-app-private-key-secret-id": KEY_SECRET.id,
            }.items()
            if key not in overrides
        },
    }
