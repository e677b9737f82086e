"""How long a runner may stay idle before a credential it holds expires.

A runner holds, from its creation until its job starts:

* its GitHub registration (the JIT configuration, or the credentials ``config.sh`` wrote):
  it does not expire while the runner stays connected (GitHub drops an ephemeral runner only
  after a day *offline*); the registration token of the ``config.sh`` fallback expires after an
  hour but is used up at creation, never held;
* the policy service's one-time token, minted during the creation, after the instance (so the
  instance's age is never less than the token's): valid ``DEFAULT_TOKEN_TTL`` (24 h; the charm
  never sets ``token_ttl``). A runner that takes a job after that fails it with 403.

So only the one-time token bounds an idle runner's life. The plan replaces an idle runner once
it is older than the token's lifetime less two margins: one reconcile interval (a runner that
crosses the limit just after a reconcile is seen by the next one) and ``credential_margin``
(1 h by default: a slow or failed reconcile, a job that takes time between assignment and its
pre-job check, clock differences between the manager and the service).
"""

from __future__ import annotations

from datetime import timedelta

from config.settings import RunnerManagerSettings
from repo_policy.config import DEFAULT_TOKEN_TTL

TOKEN_LIFETIME = timedelta(seconds=DEFAULT_TOKEN_TTL)


def max_idle_age(settings: RunnerManagerSettings, reconcile_interval: int) -> timedelta | None:
    """Return the age past which an idle runner is replaced (None: nothing it holds expires).

    Args:
        settings: The manager settings (policy service URL, credential margin).
        reconcile_interval: Minutes between reconciles.

    Returns:
        The limit, or None without a policy service. Never less than half the token's life,
        so that an absurdly long reconcile interval does not replace runners at every pass.
    """
    if not settings.repo_policy_url:
        return None
    limit = TOKEN_LIFETIME - settings.credential_margin - timedelta(minutes=reconcile_interval)
    return max(limit, TOKEN_LIFETIME / 2)
