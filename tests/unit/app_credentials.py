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
CLOUDS_YAML = (
    "clouds:\n  testcloud:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n"
    "      username: runner\n      password: cloud-pass\n      project_name: runners\n"
)
CLOUDS_SECRET = testing.Secret(
    tracked_content={"clouds-yaml": CLOUDS_YAML}, id=_secret_id("clouds")
)
SECRETS = [
    KEY_SECRET,
    NOT_A_KEY_SECRET,
    TOKEN_SECRET,
    WEBHOOK_SECRET,
    SHORT_WEBHOOK_SECRET,
    CLOUDS_SECRET,
]


def openstack_config(**overrides: str) -> dict[str, str]:
    """Options of a unit on the OpenStack backend (the cloud in ``CLOUDS_SECRET``).

    The overrides come first: a bad-value table names its option by the first key.
    """
    base = {
        "backend": "openstack",
        "openstack-clouds-yaml-secret-id": CLOUDS_SECRET.id,
        "openstack-flavor": "runner-small",
        "openstack-image": "github-runner-noble",
        "openstack-network": "runners",
    }
    return {**overrides, **{k: v for k, v in base.items() if k not in overrides}}


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
