"""A fake of the systemctl seam (``juju.systemd.Systemctl``)."""

from __future__ import annotations

from collections.abc import Sequence

from juju.systemd import Systemctl


class FakeSystemctl:
    """Records systemctl calls; answers from a table of exit codes by verb (0 otherwise)."""

    def __init__(self, codes: dict[str, int] | None = None) -> None:
        """Answer ``codes[verb]`` (e.g. ``{"is-active": 3}``: inactive)."""
        self.calls: list[list[str]] = []
        self.codes = codes or {}

    def __call__(self, args: Sequence[str]) -> int:
        """Record and answer."""
        self.calls.append(list(args))
        return self.codes.get(args[0], 0)


def _seam_check(fake: FakeSystemctl) -> Systemctl:
    """Let mypy check that the fake satisfies the seam."""
    return fake
