"""Which OpenStack runners are inside their pre-job policy check: what a flush waits for.

As for LXD runners (``manager.removal.wait_repo_checks``), it is decided on the unit's side only.
Each server carries, in its Nova metadata, the SHA-256 of the one-time token the manager gave
its runner (``openstack_backend.runners.POLICY_DIGEST_KEY``, written at creation); the unit's
policy service says which checks it is answering, by the digests of the tokens they present
(``GET /checks-in-flight``). A runner is in its check while both match. The service counts a
check only once it has accepted (spent) the token, so a job that read its runner's token from
the metadata service cannot hold a flush by replaying it: a spent token is refused uncounted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from errors import RepoPolicyError
from openstack_backend.runners import POLICY_DIGEST_KEY, OneTimeTokens
from openstack_backend.seam import ServerView

logger = logging.getLogger(__name__)

_MAX_DELAY = 2.0


class PolicyService(OneTimeTokens, Protocol):
    """The unit's policy service as the OpenStack manager uses it (``repo_policy.client``)."""

    def checks_in_flight(self) -> frozenset[str]:
        """Return the token digests of the checks the service is answering.

        Raises:
            RepoPolicyError: If the service cannot tell.
        """
        ...  # pragma: no cover


def servers_in_check(servers: Iterable[ServerView], in_flight: Collection[str]) -> list[str]:
    """Return the names of the servers whose runner is inside its policy check.

    Args:
        servers: The unit's servers, as listed (their metadata holds the digests).
        in_flight: The digests of the checks being answered.

    Returns:
        Their names.
    """
    return [s.name for s in servers if s.metadata.get(POLICY_DIGEST_KEY) in in_flight]


def wait_repo_checks(
    policy: PolicyService | None, list_servers: Callable[[], list[ServerView]], wait: float
) -> None:
    """Wait (at most ``wait`` seconds) until no server of the unit is in its policy check.

    Without a policy service no check runs; a service that cannot tell is not waited for (a
    flush never hangs on it). The servers are listed only while some check is in flight.

    Args:
        policy: The unit's policy service (None: no pre-job check).
        list_servers: Lists the unit's servers.
        wait: The bound, in seconds (``RunnerManagerSettings.repo_check_wait``).
    """
    if policy is None:
        return
    deadline = time.monotonic() + wait
    delay = 0.2
    while True:
        try:
            in_flight = policy.checks_in_flight()
        except RepoPolicyError as exc:
            logger.warning("proceeding with flush; checks in flight unknown: %s", exc)
            return
        in_check = servers_in_check(list_servers(), in_flight) if in_flight else []
        if not in_check:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            logger.warning("proceeding with flush; policy check still running on %s", in_check)
            return
        logger.info("flush waits for the policy checks of %s", in_check)
        time.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_DELAY)
