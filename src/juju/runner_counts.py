"""The runner counts the charm reports: action results and the Active status message."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from github_api.types import GitHubRunnerStatus
from runner_manager_type import RunnerInfo


def count_runners(infos: Iterable[RunnerInfo]) -> dict[str, Any]:
    """Count runners by GitHub status.

    Args:
        infos: The runners as GitHub reports them.

    Returns:
        online, offline, unknown, busy and idle counts, and the sorted names (comma-separated).
    """
    runners = list(infos)
    online = [r for r in runners if r.status == GitHubRunnerStatus.ONLINE]
    offline = [r for r in runners if r.status == GitHubRunnerStatus.OFFLINE]
    return {
        "online": len(online),
        "offline": len(offline),
        "unknown": len(runners) - len(online) - len(offline),
        "busy": sum(1 for r in online if r.busy),
        "idle": sum(1 for r in online if not r.busy),
        "runners": ",".join(sorted(r.name for r in runners)),
    }


def status_message(counts: Mapping[str, Any], *, webhook_url: str = "") -> str:
    """Return the Active status message for counts of :func:`count_runners`.

    Args:
        counts: The counts.
        webhook_url: Where the unit's webhook intake listens ("": not running).

    Returns:
        ``N runners: X idle, Y busy``, then ``; webhook <url>`` when the intake runs.
    """
    total = counts["online"] + counts["offline"] + counts["unknown"]
    message = f"{total} runners: {counts['idle']} idle, {counts['busy']} busy"
    return f"{message}; webhook {webhook_url}" if webhook_url else message
