"""Fakes of the core seams (LXD, GitHub, policy service) for RunnerManager and Runner tests.

They keep state like the real services do, so tests assert on outcomes, not on calls.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from config.state import CharmState
from harness.local import local_charm_state
from runner_type import VirtualMachineResources

NOW = datetime.now(timezone.utc)


def make_state(**overrides: Any) -> CharmState:
    """A valid CharmState for tests."""
    values: dict[str, Any] = {
        "token": SecretStr("ghp_test_token"),
        "labels": ("fast",),
        "virtual_machines": 2,
        "vm_resources": VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB"),
        "app_name": "gh",
    }
    return local_charm_state(**{**values, **overrides})


class FakeRepoPolicy:
    def __init__(self) -> None:
        self.issued = 0
        self.in_flight: set[str] = set()  # digests of the checks being answered
        self.in_flight_polls: int | None = None  # answers left before in_flight empties
        self.in_flight_calls = 0

    def get_one_time_token(self) -> str:
        self.issued += 1
        return f"one-time-{self.issued}"

    def checks_in_flight(self) -> frozenset[str]:
        self.in_flight_calls += 1
        answer = frozenset(self.in_flight)
        if self.in_flight_polls is not None:
            self.in_flight_polls -= 1
            if self.in_flight_polls <= 0:
                self.in_flight.clear()
        return answer


def runner_tarball(path: Path, version: str = "2.330.0") -> Path:
    """Write a minimal valid runner tarball."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, body in (
            ("config.sh", b"#!/bin/sh\n"),
            ("run.sh", b"#!/bin/sh\n"),
            ("bin/Runner.Listener", version.encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path
