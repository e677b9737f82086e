"""The soak's per-window figures (benchmarks/_lib/soak_figures): pure functions of samples."""

from __future__ import annotations

from benchmarks._lib.soak_figures import (
    cpu_used,
    pipeline_windows,
    turnaround_windows,
    wait_windows,
)


def _job(queued: float, started: float) -> dict[str, object]:
    return {"event_times": {"queued": queued, "in_progress": started}}


def test_cpu_used_sums_each_pid_within_the_span_and_a_restart_counts_both_daemons() -> None:
    samples = [
        (0.0, {10: 1.0}),
        (5.0, {10: 3.0}),
        (10.0, {10: 4.0}),  # pid 10 stops here (the restart)
        (11.0, {20: 0.5}),
        (15.0, {20: 2.5}),
        (30.0, {20: 9.0}),  # outside the span
    ]
    assert cpu_used(samples, 5.0, 15.0) == 1.0 + 2.0
    assert cpu_used(samples, 40.0, 50.0) == 0


def test_pipeline_windows_place_creations_reconciles_and_fallbacks_in_each_wait_window() -> None:
    jobs = [_job(0, 4), _job(1, 9), _job(20, 25), _job(21, 40)]
    windows = wait_windows(jobs, [], 2)
    assert [(w["since"], w["until"]) for w in windows] == [(0, 9), (20, 40)]
    events = [
        {"event": "runner_installed", "timestamp": 2.0, "duration": 2.0},
        {"event": "runner_installed", "timestamp": 3.0, "duration": 4.0},
        {"event": "runner_installed", "timestamp": 8.0, "duration": 9.0},
        {"event": "reconciliation", "timestamp": 3.0, "duration": 9.0},
        {"event": "runner_installed", "timestamp": 30.0, "duration": 6.0},
    ]
    reconciles = [{"t": 5.0, "s": 1.5}, {"t": 30.0, "s": 3.0}, {"t": 31.0, "s": 5.0}]
    cpu = [(0.0, {7: 0.0}), (9.0, {7: 3.0}), (20.0, {7: 3.0}), (40.0, {7: 4.5})]
    warnings = [(35.0, "no runner template (gone): launching from the image"), (36.0, "other")]
    first, second = pipeline_windows(windows, events, reconciles, cpu, warnings)
    assert first == {
        "from_job": 0,
        "created": 3,
        "per_min": 20.0,
        "install_p50": 4.0,
        "reconcile_p50": 1.5,
        "lxd_cpu_s": 3.0,
        "lxd_cpu_per_create": 1.0,
        "from_image": 0,
    }
    assert (second["created"], second["reconcile_p50"], second["from_image"]) == (1, 3.0, 1)
    assert second["lxd_cpu_per_create"] == 1.5


def test_turnaround_is_the_pool_over_the_start_rate_minus_the_run_time() -> None:
    # a pool of 2: a job starts every 5 s and runs 6 s, so each runner cycles in 10 s: 4 s of
    # overhead per job, whatever the wait
    jobs = [
        {"event_times": {"queued": 0.0, "in_progress": 5.0 * i, "completed": 5.0 * i + 6}}
        for i in range(6)
    ]
    jobs.append({"event_times": {"queued": 0.0}})  # never started: not counted
    (row,) = turnaround_windows(jobs, 10, 2)
    assert row == {
        "from_job": 0,
        "starts_per_min": 12.0,
        "cycle_s": 10.0,
        "run_s": 6.0,
        "overhead_s": 4.0,
    }
    assert turnaround_windows(jobs[:1], 10, 2) == []  # one start: no rate
