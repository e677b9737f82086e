"""Webhook delivery faults: drop a seeded share of the deliveries of some actions.

A rule ``{"drop_ratio": 0.2, "seed": 19, "actions"?: ["queued"]}`` draws once from
``random.Random(seed)`` for every delivery whose action it matches (in delivery order) and drops
the delivery when the draw is below ``drop_ratio``: the same seed and the same order of
deliveries drop the same ones. Redeliveries are never dropped (they are not drawn for).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("queued", "in_progress", "completed")
FIELDS = ("drop_ratio", "seed", "actions")


@dataclass
class DropRule:
    """A seeded drop rule."""

    drop_ratio: float
    seed: int
    actions: tuple[str, ...] = ACTIONS
    draws: int = 0
    dropped: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Seed the rule's generator."""
        self._random = random.Random(self.seed)  # noqa: S311 - test faults, not secrets

    def decide(self, action: str) -> bool:
        """Draw for one delivery.

        Args:
            action: the delivery's action.

        Returns:
            Whether to drop it (False, without a draw, for other actions).
        """
        if action not in self.actions:
            return False
        self.draws += 1
        drop = self._random.random() < self.drop_ratio
        self.dropped += drop
        return drop

    def as_dict(self) -> dict[str, Any]:
        """The rule for the control API.

        Returns:
            drop_ratio, seed, actions, draws and dropped.
        """
        return {
            "drop_ratio": self.drop_ratio,
            "seed": self.seed,
            "actions": list(self.actions),
            "draws": self.draws,
            "dropped": self.dropped,
        }


def parse_rule(body: Any) -> DropRule:
    """Read a rule from a control request.

    Args:
        body: ``{"drop_ratio": 0..1, "seed": int, "actions"?: [action, ...]}``.

    Returns:
        The rule.

    Raises:
        ValueError: for an unknown field, a ratio outside 0..1, a seed that is not an integer
            or an unknown action (the message says which).
    """
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object {drop_ratio, seed, actions?}")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: {list(FIELDS)}")
    ratio = body.get("drop_ratio")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ValueError(f"drop_ratio must be a number from 0 to 1, got {ratio!r}")
    seed = body.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    actions = body.get("actions", list(ACTIONS))
    if (
        not isinstance(actions, list)
        or not actions
        or not all(isinstance(a, str) and a in ACTIONS for a in actions)
    ):
        raise ValueError(f"actions must be a non-empty list of {list(ACTIONS)}, got {actions!r}")
    return DropRule(float(ratio), seed, tuple(dict.fromkeys(actions)))


class DeliveryFaults:
    """The current drop rule, if any (thread-safe)."""

    def __init__(self) -> None:
        """No rule."""
        self._lock = threading.Lock()
        self.rule: DropRule | None = None

    def set(self, rule: DropRule) -> None:
        """Replace the rule.

        Args:
            rule: the new rule.
        """
        with self._lock:
            self.rule = rule

    def clear(self) -> None:
        """Remove the rule."""
        with self._lock:
            self.rule = None

    def decide(self, action: str) -> bool:
        """Whether to drop a (first) delivery of an action.

        Args:
            action: the delivery's action.

        Returns:
            True to drop it.
        """
        with self._lock:
            return self.rule.decide(action) if self.rule is not None else False

    def snapshot(self) -> dict[str, Any] | None:
        """The rule for the control API.

        Returns:
            The rule's fields and counters, or None.
        """
        with self._lock:
            return self.rule.as_dict() if self.rule is not None else None
