#!/usr/bin/env python3
"""kill -9 of the runner manager in the middle of a reconcile or a flush, then one reconcile.

Each trial starts a child process that joins the same environment
(``LocalEnvironment.attach``: same sandbox, same lock and state directory, real LXD) and runs a
``reconcile(target)`` or a ``flush(mode)``; the parent sends SIGKILL at a random moment of it,
then runs one ``reconcile(want)`` itself and checks the result:

- converged: exactly ``want`` instances, each with its GitHub registration, and no other
  record (before a flush trial the parent makes 1-2 runners, so the flush has work to do);
- leaked instances: instances without a registration, or beyond ``want``;
- leaked registrations: records of this unit without an instance.

A trial that did not converge gets a second reconcile (counted separately). At the end
everything is flushed and the script checks that LXD (``lxc list``) and the sandbox hold nothing
of this unit. Exit 1 if a trial did not converge within two reconciles or anything leaked.

    python benchmarks/chaos.py [--json] [--small] [--trials N] [--seed S]
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

from benchmarks._lib.bench import (
    Report,
    fmt,
    force_delete_instances,
    lxd_instances,
    parse_args,
)
from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from paths import REPO_ROOT
from runner_manager_type import LXDFlushMode

APP = "bench-chaos"
CHILD = textwrap.dedent(
    """
    import json, sys
    from harness.local import RESOURCES, LocalEnvironment
    from runner_manager_type import LXDFlushMode
    env = LocalEnvironment.attach(json.loads(sys.argv[1]))
    print("ready", flush=True)
    if sys.argv[2] == "reconcile":
        env.manager.reconcile(int(sys.argv[3]), RESOURCES)
    else:
        env.manager.flush(LXDFlushMode[sys.argv[3]])
    print("done", flush=True)
    """
)
FLUSH_MODES = ("FLUSH_IDLE", "FLUSH_BUSY", "FORCE_FLUSH_WAIT_REPO_CHECK")


def observe(env: LocalEnvironment, want: int) -> dict[str, Any]:
    """Compare instances and registrations with the wanted count."""
    instances = set(env.instances())
    records = set(env.registrations())
    leaked_instances = len(instances - records) + max(0, len(instances & records) - want)
    return {
        "instances": len(instances),
        "records": len(records),
        "leaked_instances": leaked_instances,
        "leaked_registrations": len(records - instances),
        "converged": len(instances) == want and records == instances,
    }


def trial(env: LocalEnvironment, spec: str, rng: random.Random) -> dict[str, Any]:
    """One kill -9 trial; returns what happened and the state after one (or two) reconciles."""
    if rng.random() < 0.65:
        op, arg = "reconcile", str(rng.choice([1, 2, 3]))
        delay = rng.uniform(0.0, 2.5)  # a creation takes 2-3 s here
    else:
        op, arg = "flush", rng.choice(FLUSH_MODES)
        delay = rng.uniform(0.0, 1.0)
        env.manager.reconcile(rng.choice([1, 2]), RESOURCES)  # something to flush
    pythonpath = os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT / "lib"), str(REPO_ROOT)])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, spec, op, arg],
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ready = child.stdout.readline().strip() == "ready"
    time.sleep(delay)
    finished_first = child.poll() is not None
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    want = rng.choice([0, 1, 2])
    began = time.perf_counter()
    env.manager.reconcile(want, RESOURCES)
    first = observe(env, want)
    first["reconcile_s"] = round(time.perf_counter() - began, 2)
    second = None
    if not first["converged"]:
        env.manager.reconcile(want, RESOURCES)
        second = observe(env, want)
    return {
        "op": f"{op}({arg})",
        "kill_after_s": round(delay, 2),
        "child_ready": ready,
        "child_finished_before_kill": finished_first,
        "want": want,
        "after_one": first,
        "after_two": second,
    }


def main() -> int:
    """Run the trials; exit 1 if a trial did not converge or anything leaked."""
    args = parse_args(
        __doc__ or "",
        [
            ("--trials", {"type": int, "default": 0}),
            ("--seed", {"type": int, "default": 20261123}),
        ],
    )
    trials = args.trials or (2 if args.small else 12)
    rng = random.Random(args.seed)
    report = Report("chaos", args.small)
    results: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    options = LocalOptions(
        app_name=APP,
        repo="octo/bench",
        labels=("bench",),
        metrics=True,
        settings={"busy_delete_wait": 2.0},
    )
    try:
        with LocalEnvironment(options) as env:
            spec = json.dumps(env.attach_spec())
            for _ in range(trials):
                results.append(trial(env, spec, rng))
            env.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            env.manager.flush(LXDFlushMode.FLUSH_BUSY)
            final = {"instances": env.instances(), "registrations": env.registrations()}
    finally:
        leaked = force_delete_instances(f"{APP}-")
    report.check(not leaked, f"instances left behind after the final flush: {leaked}")
    report.check(not lxd_instances(f"{APP}-"), "instances still present after cleanup")
    report.check(not final.get("registrations"), f"registrations left: {final}")

    converged_one = sum(1 for r in results if r["after_one"]["converged"])
    converged_two = sum(
        1
        for r in results
        if r["after_one"]["converged"] or (r["after_two"] or {}).get("converged")
    )
    leaked_instances = sum(r["after_one"]["leaked_instances"] for r in results)
    leaked_records = sum(r["after_one"]["leaked_registrations"] for r in results)
    for index, row in enumerate(results):
        report.check(row["child_ready"], f"trial {index}: the child process never became ready")
        report.check(
            row["after_one"]["converged"] or (row["after_two"] or {}).get("converged", False),
            f"trial {index} ({row['op']}, kill at {row['kill_after_s']} s): not converged "
            f"after two reconciles: {row}",
        )
    detail = report.table(
        "trials", "op killed", "kill at s", "want", "after 1 reconcile", "reconcile s"
    )
    for row in results:
        first = row["after_one"]
        state = (
            "converged"
            if first["converged"]
            else (
                f"{first['instances']} inst / {first['records']} rec -> "
                f"{'converged' if (row['after_two'] or {}).get('converged') else 'NOT'} after 2"
            )
        )
        detail.add_row(
            row["op"] + (" (had finished)" if row["child_finished_before_kill"] else ""),
            fmt(row["kill_after_s"]),
            str(row["want"]),
            state,
            fmt(row["after_one"]["reconcile_s"]),
        )
    table = report.table("kill -9 trials", "figure", "value", "expected")
    table.add_row("trials", str(trials), "")
    mid = sum(1 for r in results if not r["child_finished_before_kill"])
    table.add_row("  of which killed mid-operation (not finished)", str(mid), "")
    table.add_row("converged after one reconcile", str(converged_one), str(trials))
    table.add_row("converged within two reconciles", str(converged_two), str(trials))
    table.add_row("leaked instances (after one reconcile)", str(leaked_instances), "0")
    table.add_row("leaked registrations (after one reconcile)", str(leaked_records), "0")
    table.add_row(
        "left after the final flush (instances, registrations)",
        f"{len(final.get('instances', []))}, {len(final.get('registrations', []))}",
        "0, 0",
    )
    report.figures.update(
        trials=trials,
        seed=args.seed,
        killed_mid_operation=mid,
        converged_after_one=converged_one,
        converged_within_two=converged_two,
        leaked_instances=leaked_instances,
        leaked_registrations=leaked_records,
        final=final,
        results=results,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
