"""The job ledger: one claim per job id and delivery id, across threads, processes, SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from intake import errors as intake_errors
from intake.ledger import JobLedger


def test_a_job_is_claimed_once(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger.sqlite")
    assert not ledger.seen(7)
    assert ledger.claim(7, "d-1")
    assert ledger.seen(7)
    assert not ledger.claim(7, "d-2")  # another delivery of the same job
    assert not ledger.claim(7)  # the safety net finds it claimed
    assert not ledger.claim(8, "d-1")  # the same delivery id, whatever it says now
    assert not ledger.seen(8)


def test_a_claim_without_delivery_blocks_the_webhook(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger.sqlite")
    assert ledger.claim(9)
    assert not ledger.claim(9, "d-9")


def test_release_lets_the_redelivery_and_the_net_claim_again(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger.sqlite")
    assert ledger.claim(10, "d-10")
    ledger.release(10)
    assert not ledger.seen(10)
    assert ledger.claim(10, "d-10")  # GitHub's redelivery carries the same delivery id
    ledger.release(10)
    assert ledger.claim(10)  # or the safety net
    ledger.release(11)  # releasing an unknown job is harmless


def test_prune_forgets_old_entries_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = JobLedger(path)
    assert ledger.claim(1, "d-1")
    assert ledger.claim(2, "d-2")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE jobs SET claimed_at = claimed_at - 7200 WHERE job_id = 1")
        db.execute("UPDATE deliveries SET seen_at = seen_at - 7200 WHERE job_id = 1")
    assert ledger.prune(timedelta(hours=1)) == 1
    assert not ledger.seen(1)
    assert ledger.seen(2)
    assert ledger.claim(1, "d-1")


def test_the_ledger_survives_a_reopen_and_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "ledger.sqlite"
    assert JobLedger(path).claim(3, "d-3")
    reopened = JobLedger(path)
    assert reopened.seen(3)
    assert not reopened.claim(3)


def test_a_file_that_is_not_a_ledger_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(intake_errors.IntakeLedgerError) as caught:
        JobLedger(path)
    assert caught.value.path == str(path)


def test_threads_claim_each_job_once(tmp_path: Path) -> None:
    ledger = JobLedger(tmp_path / "ledger.sqlite")
    jobs = [job for job in range(50) for _ in range(4)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: (job, ledger.claim(job)), jobs))
    won = [job for job, claimed in results if claimed]
    assert sorted(won) == list(range(50))


def _claim_all(path: str, start: Any, out: Any) -> None:
    ledger = JobLedger(Path(path))
    start.wait(10)
    out.put([job for job in range(40) if ledger.claim(job, f"d-{os.getpid()}-{job}")])


def test_processes_claim_each_job_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    JobLedger(path)
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    out: Any = context.Queue()
    workers = [context.Process(target=_claim_all, args=(str(path), start, out)) for _ in range(3)]
    for worker in workers:
        worker.start()
    start.set()
    won = [job for _ in workers for job in out.get(timeout=60)]
    for worker in workers:
        worker.join(30)
    assert sorted(won) == list(range(40))


def _claim_then_die(path: str) -> None:
    JobLedger(Path(path)).claim(77, "d-77")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_claim_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    process = multiprocessing.get_context("fork").Process(
        target=_claim_then_die, args=(str(path),)
    )
    process.start()
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    ledger = JobLedger(path)
    assert ledger.seen(77)
    assert not ledger.claim(77, "d-other")


def _age(path: Path, job_id: int, seconds: float) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE jobs SET claimed_at = claimed_at - ? WHERE job_id = ?", (seconds, job_id)
        )


def test_a_claim_its_claimer_never_confirmed_is_taken_again_once_stale(tmp_path: Path) -> None:
    # The intake killed between its claim and its publish: the redelivery or the net enqueues.
    path = tmp_path / "ledger.sqlite"
    process = multiprocessing.get_context("fork").Process(
        target=_claim_then_die, args=(str(path),)
    )
    process.start()
    process.join(30)
    ledger = JobLedger(path, stale_after=timedelta(seconds=60))
    assert not ledger.claim(77)  # fresh: its claimer may still publish
    _age(path, 77, 61)
    assert not ledger.seen(77)
    assert ledger.claim(77, "d-77")  # GitHub's redelivery of the same delivery
    assert not ledger.claim(77), "the new claim is fresh again"
    ledger.confirm(77)
    _age(path, 77, 3600)
    assert not ledger.claim(77), "a confirmed claim is never taken again"
    assert ledger.seen(77)


def test_a_stale_claim_is_taken_once_by_racing_claimers(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = JobLedger(path, stale_after=timedelta(seconds=10))
    assert ledger.claim(5)
    _age(path, 5, 11)
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: ledger.claim(5), range(8)))
    assert won.count(True) == 1


def test_a_ledger_from_before_confirms_keeps_its_claims(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, claimed_at REAL NOT NULL)")
        db.execute("INSERT INTO jobs VALUES (3, 0)")
    ledger = JobLedger(path, stale_after=timedelta(seconds=1))
    assert ledger.seen(3) and not ledger.claim(3)  # enqueued then: confirmed
    assert ledger.claim(4)


def test_a_writer_holding_the_lock_delays_but_does_not_fail_a_claim(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = JobLedger(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(ledger.claim, 5)
        assert not pending.done()  # it cannot finish while the lock is held
        holder.execute("COMMIT")
        assert pending.result(timeout=30)
    holder.close()
