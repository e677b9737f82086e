"""Check GitHub's ``X-Hub-Signature-256`` header: HMAC-SHA256 of the raw body with the secret."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """Return the header value GitHub sends for a body.

    Args:
        secret: The webhook secret.
        body: The raw request body.

    Returns:
        ``sha256=<hex digest>``.
    """
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """Tell whether a signature header matches a body, in constant time.

    Args:
        secret: The webhook secret.
        body: The raw request body.
        header: The ``X-Hub-Signature-256`` value, or None when missing.

    Returns:
        True when the header is GitHub's signature of the body with the secret.
    """
    if not header:
        return False
    expected = sign(secret, body).encode("ascii")
    # compare_digest takes the same time whatever the first differing byte is.
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))
