"""Table of reconcile and flush plans (pure function, no I/O)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconcile_plan import (
    DeleteReason,
    GithubView,
    InstanceState,
    InstanceView,
    PlanTimeouts,
    RunnerState,
    judge,
    plan_flush,
    plan_reconcile,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(minutes=30)
YOUNG = NOW - timedelta(seconds=20)


def inst(
    name: str, created: datetime = OLD, state: InstanceState = InstanceState.RUNNING
) -> InstanceView:
    return InstanceView(name=name, state=state, created_at=created)


def rec(name: str, online: bool = True, busy: bool = False, rid: int | None = None) -> GithubView:
    return GithubView(
        id=rid if rid is not None else abs(hash(name)) % 10_000,
        name=name,
        online=online,
        busy=busy,
    )


def deleted(plan) -> dict[str, DeleteReason]:
    return {d.runner.name: d.reason for d in plan.deletions}


@pytest.mark.parametrize(
    ("instances", "records", "desired", "create", "delta", "deletions"),
    [
        pytest.param([], [], 3, 3, 3, {}, id="scale-up-from-zero"),
        pytest.param([inst("a")], [rec("a")], 3, 2, 2, {}, id="scale-up-partial"),
        pytest.param([inst("a")], [rec("a")], 1, 0, 0, {}, id="steady"),
        pytest.param(
            [
                inst("a", NOW - timedelta(minutes=40)),
                inst("b", NOW - timedelta(minutes=10)),
                inst("c"),
            ],
            [rec("a"), rec("b"), rec("c", busy=True)],
            1,
            0,
            -2,
            {"a": DeleteReason.SURPLUS, "b": DeleteReason.SURPLUS},
            id="scale-down-keeps-busy",
        ),
        pytest.param(
            [inst("a", NOW - timedelta(minutes=40)), inst("b", NOW - timedelta(minutes=10))],
            [rec("a"), rec("b")],
            1,
            0,
            -1,
            {"a": DeleteReason.SURPLUS},
            id="scale-down-oldest-idle-first",
        ),
        pytest.param(
            [inst("a"), inst("b")],
            [rec("a", busy=True), rec("b", busy=True)],
            0,
            0,
            -2,
            {},
            id="busy-never-scaled-down",
        ),
        pytest.param([inst("a", YOUNG)], [], 1, 0, 0, {}, id="young-instance-is-starting"),
        pytest.param(
            [inst("a", OLD)],
            [],
            1,
            1,
            1,
            {"a": DeleteReason.ORPHAN_INSTANCE},
            id="orphan-instance-after-bootstrap",
        ),
        pytest.param(
            [],
            [rec("a", online=False)],
            1,
            1,
            1,
            {"a": DeleteReason.ORPHAN_RECORD},
            id="orphan-offline-record",
        ),
        pytest.param(
            [],
            [rec("a", online=True)],
            1,
            1,
            1,
            {},
            id="online-record-without-instance-left-alone",
        ),
        pytest.param(
            [inst("a", OLD)],
            [rec("a", online=False)],
            1,
            1,
            1,
            {"a": DeleteReason.UNHEALTHY},
            id="never-online",
        ),
        pytest.param(
            [inst("a", YOUNG)],
            [rec("a", online=False)],
            1,
            0,
            0,
            {},
            id="registered-not-yet-online",
        ),
        pytest.param(
            [inst("a", state=InstanceState.STOPPED)],
            [rec("a")],
            1,
            1,
            1,
            {"a": DeleteReason.UNHEALTHY},
            id="stopped-instance",
        ),
        pytest.param(
            [inst("a", YOUNG, InstanceState.ERROR)],
            [rec("a", online=False)],
            1,
            1,
            1,
            {"a": DeleteReason.UNHEALTHY},
            id="error-instance-at-once",
        ),
        pytest.param(
            [inst("a", YOUNG, InstanceState.ERROR)],
            [],
            1,
            1,
            1,
            {"a": DeleteReason.UNHEALTHY},
            id="error-instance-unregistered-at-once",
        ),
        pytest.param(
            [inst("a", YOUNG, InstanceState.OTHER)],
            [rec("a", online=False)],
            1,
            0,
            0,
            {},
            id="other-young-instance-is-starting",
        ),
        pytest.param(
            [inst("a"), inst("b", YOUNG), inst("c", NOW - timedelta(seconds=5))],
            [rec("a")],
            1,
            0,
            -2,
            {"c": DeleteReason.SURPLUS, "b": DeleteReason.SURPLUS},
            id="surplus-after-idle-takes-youngest-starting",
        ),
        pytest.param(
            [inst("a")],
            [rec("a")],
            -1,
            0,
            -1,
            {"a": DeleteReason.SURPLUS},
            id="negative-desired-is-zero",
        ),
    ],
)
def test_plan_table(instances, records, desired, create, delta, deletions) -> None:
    plan = plan_reconcile(instances, records, desired, NOW)
    assert plan.create == create
    assert plan.delta == delta
    assert deleted(plan) == deletions


def test_offline_busy_is_not_scaled_down() -> None:
    plan = plan_reconcile([inst("a")], [rec("a", online=False, busy=True)], 0, NOW)
    assert plan.deletions == ()
    assert plan.count(RunnerState.BUSY) == 1


def test_bootstrap_timeout_is_configurable() -> None:
    timeouts = PlanTimeouts(bootstrap=timedelta(seconds=10))
    plan = plan_reconcile([inst("a", YOUNG)], [], 1, NOW, timeouts)
    assert deleted(plan) == {"a": DeleteReason.ORPHAN_INSTANCE}


def test_counts() -> None:
    plan = plan_reconcile(
        [inst("a"), inst("b"), inst("c", YOUNG)], [rec("a"), rec("b", busy=True)], 3, NOW
    )
    assert (
        plan.count(RunnerState.IDLE),
        plan.count(RunnerState.BUSY),
        plan.count(RunnerState.STARTING),
    ) == (1, 1, 1)


def test_flush_idle_keeps_busy_and_unknown() -> None:
    runners = judge(
        [inst("a"), inst("b"), inst("c", OLD)],
        [rec("a"), rec("b", busy=True), rec("d", online=True), rec("e", online=False)],
        NOW,
        PlanTimeouts(),
    )
    flushed = {d.runner.name: d.reason for d in plan_flush(runners, include_busy=False)}
    assert flushed == {
        "a": DeleteReason.FLUSH,
        "c": DeleteReason.ORPHAN_INSTANCE,
        "e": DeleteReason.ORPHAN_RECORD,
    }


def test_flush_busy_takes_all() -> None:
    runners = judge([inst("a"), inst("b")], [rec("a"), rec("b", busy=True)], NOW, PlanTimeouts())
    assert {d.runner.name for d in plan_flush(runners, include_busy=True)} == {"a", "b"}


def test_incomplete_instance_is_deleted_even_when_young() -> None:
    half_built = InstanceView("a", InstanceState.RUNNING, YOUNG, complete=False)
    plan = plan_reconcile([half_built], [rec("a", online=False)], 1, NOW)
    assert deleted(plan) == {"a": DeleteReason.UNHEALTHY}
    assert plan.create == 1


def test_young_instance_registered_first_is_an_orphan_without_its_record() -> None:
    """Registered before it was made, a young instance whose record is gone never comes online."""
    registered_first = InstanceView("a", InstanceState.RUNNING, YOUNG, registered_first=True)
    plan = plan_reconcile([registered_first], [], 1, NOW)
    assert deleted(plan) == {"a": DeleteReason.ORPHAN_INSTANCE}
    assert plan.create == 1
    kept = InstanceView("a", InstanceState.RUNNING, YOUNG, registered_first=True)
    plan = plan_reconcile([kept], [rec("a", online=False)], 1, NOW)
    assert not deleted(plan) and plan.create == 0  # with its record: starting


GRACE = timedelta(minutes=5)
STALE = NOW - GRACE - timedelta(seconds=1)
FRESH = NOW - GRACE + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("instances", "records", "desired", "grace", "create", "delta", "deletions"),
    [
        pytest.param(
            [inst("a", STALE), inst("b", FRESH)],
            [rec("a"), rec("b")],
            2,
            None,
            0,
            0,
            {},
            id="no-grace-no-stale-rule",
        ),
        pytest.param(
            [inst("a", STALE), inst("b", FRESH)],
            [rec("a"), rec("b")],
            2,
            GRACE,
            0,
            0,
            {"a": DeleteReason.SURPLUS},
            id="idle-past-grace-goes-fresh-idle-stays",
        ),
        pytest.param(
            [inst("a", NOW - GRACE)],
            [rec("a")],
            1,
            GRACE,
            0,
            0,
            {},
            id="idle-exactly-at-grace-stays",
        ),
        pytest.param(
            [inst("a", STALE), inst("b", OLD)],
            [rec("a", busy=True), rec("b", online=False, busy=True)],
            2,
            GRACE,
            0,
            0,
            {},
            id="busy-never-stale",
        ),
        pytest.param(
            [inst("a", YOUNG)],
            [rec("a", online=False)],
            1,
            timedelta(seconds=1),
            0,
            0,
            {},
            id="starting-never-stale",
        ),
        pytest.param(
            [inst("a", OLD), inst("b", STALE), inst("c", FRESH)],
            [rec("a"), rec("b"), rec("c")],
            2,
            GRACE,
            0,
            -1,
            {"a": DeleteReason.SURPLUS, "b": DeleteReason.SURPLUS},
            id="stale-beside-scale-down-once-each",
        ),
        pytest.param(
            [inst("a", STALE)],
            [rec("a")],
            3,
            GRACE,
            2,
            2,
            {"a": DeleteReason.SURPLUS},
            id="stale-deletions-not-counted-in-create",
        ),
        pytest.param(
            [inst("a", STALE, InstanceState.STOPPED)],
            [rec("a")],
            0,
            GRACE,
            0,
            0,
            {"a": DeleteReason.UNHEALTHY},
            id="unhealthy-keeps-its-reason",
        ),
    ],
)
def test_stale_idle_table(instances, records, desired, grace, create, delta, deletions) -> None:
    plan = plan_reconcile(instances, records, desired, NOW, stale_idle_after=grace)
    assert (plan.create, plan.delta) == (create, delta)
    assert deleted(plan) == deletions
    assert len(plan.deletions) == len(deletions), "a runner is deleted once"


MAX_IDLE = timedelta(hours=22)  # e.g. a 24 h token less a 1 h margin and a 1 h interval
EXPIRED = NOW - timedelta(hours=25)
NEARLY = NOW - MAX_IDLE + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("instances", "records", "desired", "create", "delta", "deletions"),
    [
        pytest.param(
            [inst("a", EXPIRED), inst("b")],
            [rec("a"), rec("b")],
            2,
            1,
            0,
            {"a": DeleteReason.EXPIRING},
            id="expiring-idle-is-replaced-count-stays",
        ),
        pytest.param(
            [inst("a", NEARLY)],
            [rec("a")],
            1,
            0,
            0,
            {},
            id="idle-younger-than-the-limit-stays",
        ),
        pytest.param(
            [inst("a", EXPIRED), inst("b", EXPIRED)],
            [rec("a", busy=True), rec("b", online=False, busy=True)],
            2,
            0,
            0,
            {},
            id="busy-never-expiring",
        ),
        pytest.param(
            [inst("a", EXPIRED), inst("b", EXPIRED), inst("c")],
            [rec("a"), rec("b"), rec("c")],
            1,
            0,
            -2,
            {"a": DeleteReason.EXPIRING, "b": DeleteReason.EXPIRING},
            id="expiring-beside-scale-down-no-replacement-needed",
        ),
        pytest.param(
            [inst("a", EXPIRED), inst("b"), inst("c", NOW - timedelta(minutes=10))],
            [rec("a"), rec("b"), rec("c")],
            1,
            0,
            -2,
            {"a": DeleteReason.EXPIRING, "b": DeleteReason.SURPLUS},
            id="scale-down-takes-the-oldest-left",
        ),
        pytest.param(
            [inst("a", EXPIRED), inst("b", EXPIRED)],
            [rec("a"), rec("b")],
            1,
            1,
            -1,
            {"a": DeleteReason.EXPIRING, "b": DeleteReason.EXPIRING},
            id="all-expiring-one-wanted",
        ),
        pytest.param(
            [inst("a", EXPIRED, InstanceState.STOPPED)],
            [rec("a")],
            1,
            1,
            1,
            {"a": DeleteReason.UNHEALTHY},
            id="unhealthy-keeps-its-reason",
        ),
        pytest.param(
            [inst("a", EXPIRED)],
            [rec("a")],
            0,
            0,
            -1,
            {"a": DeleteReason.EXPIRING},
            id="none-wanted-expiring-not-replaced",
        ),
    ],
)
def test_expiring_idle_table(instances, records, desired, create, delta, deletions) -> None:
    plan = plan_reconcile(instances, records, desired, NOW, max_idle_age=MAX_IDLE)
    assert (plan.create, plan.delta) == (create, delta)
    assert deleted(plan) == deletions
    assert len(plan.deletions) == len(deletions), "a runner is deleted once"


def test_expiry_follows_the_clock() -> None:
    """The same runner is kept today and replaced once the clock passes the limit."""
    created = NOW - timedelta(hours=1)
    views, records = [inst("a", created)], [rec("a")]
    assert plan_reconcile(views, records, 1, NOW, max_idle_age=MAX_IDLE).deletions == ()
    later = created + MAX_IDLE + timedelta(minutes=1)
    plan = plan_reconcile(views, records, 1, later, max_idle_age=MAX_IDLE)
    assert deleted(plan) == {"a": DeleteReason.EXPIRING}
    assert plan.create == 1
    assert plan_reconcile(views, records, 1, later).deletions == (), "no limit: kept"


def test_stale_rule_wins_over_expiry() -> None:
    """Reactive mode with an empty queue: a stale runner goes and is not replaced."""
    plan = plan_reconcile(
        [inst("a", EXPIRED)], [rec("a")], 1, NOW, stale_idle_after=GRACE, max_idle_age=MAX_IDLE
    )
    assert deleted(plan) == {"a": DeleteReason.SURPLUS}
    assert plan.create == 0
