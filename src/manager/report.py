"""What the last reconcile or flush of the RunnerManager did."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconcile_plan import ReconcilePlan


@dataclass
class ReconcileReport:
    """What the last reconcile or flush did (for action results and metrics).

    Attributes:
        created: Names of runners created.
        deleted: Names of runners deleted, by reason.
        failed: Names of runners whose creation or deletion failed.
        create_seconds: Seconds each successful creation took.
        plan: The plan executed.
        duration: Seconds the operation took.
    """

    created: list[str] = field(default_factory=list)
    deleted: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    create_seconds: list[float] = field(default_factory=list)
    plan: ReconcilePlan | None = None
    duration: float = 0.0
