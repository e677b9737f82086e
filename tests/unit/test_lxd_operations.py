"""Which instances LXD operations are changing (the settle step before a reconcile judges)."""

from __future__ import annotations

from typing import Any

from lxd import LxdClient, LxdTransport


class ScriptedTransport(LxdTransport):
    """A transport whose daemon answers are scripted (no socket is opened)."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__(endpoint="/nonexistent.socket")
        self.answers = answers

    def sync(self, method: str, path: str, **kwargs: Any) -> Any:
        assert (method, path) == ("get", "operations")
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def scripted_client(answers: list[dict[str, Any]]) -> LxdClient:
    return LxdClient(transport=ScriptedTransport(answers))


def op(description: str, *names: str) -> dict[str, Any]:
    return {
        "description": description,
        "resources": {"instances": [f"/1.0/instances/{n}" for n in names]},
    }


def test_busy_instances_ignores_commands_and_other_units() -> None:
    client = scripted_client(
        [
            {
                "running": [
                    op("Creating instance", "gh-0-aaaa"),
                    op("Executing command", "gh-0-bbbb"),
                    op("Stopping instance", "gh-1-cccc", "gh-0-dddd"),
                ]
            }
        ]
    )
    assert client.busy_instances("gh-0-") == ["gh-0-aaaa", "gh-0-dddd"]


def test_wait_settles_once_operations_finish() -> None:
    client = scripted_client([{"running": [op("Creating instance", "gh-0-a")]}, {"running": []}])
    assert client.wait_instances_settled("gh-0-", timeout=5) == []


def test_wait_is_bounded() -> None:
    client = scripted_client([{"running": [op("Starting instance", "gh-0-a")]}])
    assert client.wait_instances_settled("gh-0-", timeout=0.3) == ["gh-0-a"]
