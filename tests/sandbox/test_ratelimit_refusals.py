"""The control API counts the requests the primary rate limit refused (the soak reports it)."""

from __future__ import annotations

import requests

from sandbox.server import SandboxServer

RUNNERS = "/repos/canonical/demo/actions/runners"


def _stats(sandbox: SandboxServer) -> dict[str, object]:
    answer: dict[str, object] = requests.get(
        f"{sandbox.base_url}/_sandbox/stats", timeout=5
    ).json()
    return answer


def test_refusals_are_counted_and_survive_clearing(
    sandbox: SandboxServer, admin: requests.Session
) -> None:
    assert _stats(sandbox)["rate_limited"] == 0
    requests.post(
        f"{sandbox.base_url}/_sandbox/faults",
        json={"rate_limit": {"remaining": 1, "reset_in": 60}},
        timeout=5,
    )
    statuses = [admin.get(f"{sandbox.api_url}{RUNNERS}").status_code for _ in range(3)]
    assert statuses == [200, 403, 403]
    assert _stats(sandbox)["rate_limited"] == 2
    requests.delete(f"{sandbox.base_url}/_sandbox/faults", timeout=5)
    assert admin.get(f"{sandbox.api_url}{RUNNERS}").status_code == 200
    assert _stats(sandbox)["rate_limited"] == 2
