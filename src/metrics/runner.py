"""Extract the metrics runners left in their stores, and issue the metric events for them.

Policy of :func:`extract` for one store (of a runner not in ``ignore_runners``):

- the store's root is not a directory (e.g. a symlink), holds an entry other than the three
  metric files, ``lost+found`` and the temporary files of an interrupted atomic write
  (``.pre-job-metrics.json.tmp``, ``.post-job-metrics.json.tmp``: never opened), or a metric
  file that is not a regular file, is larger than
  ``FILE_SIZE_BYTES_LIMIT``, is not valid JSON or does not match its schema: the store is
  **quarantined** (archived, then deleted) and nothing is yielded for it;
- no file at all, or no ``runner-installed.timestamp`` and no job file (the manager died before
  writing it): the store is **deleted**, nothing is yielded;
- a job file without ``runner-installed.timestamp``: the runner removed it: **quarantined**;
- otherwise the store is **deleted** and one :class:`RunnerMetrics` is yielded, with
  ``pre_job``/``post_job`` None when the runner never took a job / never reported its end.
  :func:`issue_events` issues nothing for a runner without ``pre_job``.

A store is deleted *before* its metrics are yielded: metrics are issued at most once.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator

from pydantic import ValidationError

from errors import CorruptMetricsError, IssueMetricEventError, MetricsError
from metrics.events import Event, Reconciliation, RunnerStart, RunnerStop, issue_event, now
from metrics.github import GithubJobMetrics
from metrics.storage import OPEN_DIR_FLAGS, OPEN_FILE_FLAGS, MetricsStorage, StorageManager
from metrics.type import (
    FILE_SIZE_BYTES_LIMIT,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    POST_JOB_METRICS_FILE_NAME,
    PRE_JOB_METRICS_FILE_NAME,
    RUNNER_INSTALLED_TS_FILE_NAME,
    CodeInformation,
    PostJobMetrics,
    PostJobStatus,
    PreJobMetrics,
    RunnerMetrics,
)

__all__ = [
    "FILE_SIZE_BYTES_LIMIT",
    "POST_JOB_METRICS_FILE_NAME",
    "PRE_JOB_METRICS_FILE_NAME",
    "RUNNER_INSTALLED_TS_FILE_NAME",
    "CodeInformation",
    "PostJobMetrics",
    "PostJobStatus",
    "PreJobMetrics",
    "RunnerMetrics",
    "crashed_runners",
    "extract",
    "issue_events",
    "reconciliation_event",
]

logger = logging.getLogger(__name__)

METRIC_FILES = frozenset(
    {PRE_JOB_METRICS_FILE_NAME, POST_JOB_METRICS_FILE_NAME, RUNNER_INSTALLED_TS_FILE_NAME}
)
# Never opened: ext4's lost+found, and what an interrupted atomic write (tmp + mv) leaves behind.
TOLERATED_ENTRIES = frozenset(
    {"lost+found", f".{PRE_JOB_METRICS_FILE_NAME}.tmp", f".{POST_JOB_METRICS_FILE_NAME}.tmp"}
)
MAX_STORE_ENTRIES = 16
_TIMESTAMP_TEXT = re.compile(rb"^[0-9]{1,10}(\.[0-9]{1,9})?$")


def _read_metric_file(dir_fd: int, name: str, runner_name: str) -> bytes | None:
    """Read one metric file through a no-follow, non-blocking descriptor, capped in size.

    Returns:
        The content, or None if there is no such file.

    Raises:
        CorruptMetricsError: If the entry is not a regular file or is too large.
    """
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise CorruptMetricsError(f"{name} is not a regular file", runner_name)
    if st.st_size > FILE_SIZE_BYTES_LIMIT:
        raise CorruptMetricsError(f"{name} is larger than {FILE_SIZE_BYTES_LIMIT}", runner_name)
    try:
        fd = os.open(name, OPEN_FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: swapped for a symlink after the stat
        raise CorruptMetricsError(f"cannot open {name}: {exc}", runner_name) from exc
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or fst.st_size > FILE_SIZE_BYTES_LIMIT:
            raise CorruptMetricsError(f"{name} changed under the reader", runner_name)
        data = os.read(fd, FILE_SIZE_BYTES_LIMIT + 1)
        while len(data) <= FILE_SIZE_BYTES_LIMIT:
            chunk = os.read(fd, FILE_SIZE_BYTES_LIMIT + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > FILE_SIZE_BYTES_LIMIT:
        raise CorruptMetricsError(f"{name} is larger than {FILE_SIZE_BYTES_LIMIT}", runner_name)
    return data


def _parse_installed_timestamp(data: bytes, runner_name: str) -> float:
    text = data.strip(b" \t\r\n")
    if not _TIMESTAMP_TEXT.match(text):
        raise CorruptMetricsError("invalid installed timestamp", runner_name)
    value = float(text)
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise CorruptMetricsError("installed timestamp out of range", runner_name)
    return value


def _check_entries(dir_fd: int, runner_name: str) -> None:
    """Raise if the store's root holds anything but the metric files and lost+found."""
    with os.scandir(dir_fd) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_STORE_ENTRIES:
                raise CorruptMetricsError("too many entries in the store", runner_name)
            if entry.name not in METRIC_FILES and entry.name not in TOLERATED_ENTRIES:
                raise CorruptMetricsError(f"unexpected entry {entry.name[:64]!r}", runner_name)


def read_runner_metrics(storage: MetricsStorage) -> RunnerMetrics | None:
    """Read and validate the metrics of one store without following anything the runner made.

    Args:
        storage: The store.

    Returns:
        The metrics, or None if the store holds nothing to report (see the module docstring).

    Raises:
        CorruptMetricsError: If the store holds anything a runner may not write.
    """
    name = storage.runner_name
    try:
        dir_fd = os.open(storage.path, OPEN_DIR_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise CorruptMetricsError("the store's root is not a directory", name) from exc
        raise
    try:
        _check_entries(dir_fd, name)
        installed = _read_metric_file(dir_fd, RUNNER_INSTALLED_TS_FILE_NAME, name)
        pre_raw = _read_metric_file(dir_fd, PRE_JOB_METRICS_FILE_NAME, name)
        post_raw = _read_metric_file(dir_fd, POST_JOB_METRICS_FILE_NAME, name)
    finally:
        os.close(dir_fd)
    try:
        pre_job = PreJobMetrics.model_validate_json(pre_raw) if pre_raw is not None else None
        post_job = PostJobMetrics.model_validate_json(post_raw) if post_raw is not None else None
    except ValidationError as exc:
        raise CorruptMetricsError(
            f"invalid job metrics: {exc.error_count()} errors, first: {exc.errors()[0]['type']}",
            name,
        ) from exc
    if installed is None:
        if pre_job is not None or post_job is not None:
            raise CorruptMetricsError("job metrics without installed timestamp", name)
        return None
    return RunnerMetrics(
        installed_timestamp=_parse_installed_timestamp(installed, name),
        pre_job=pre_job,
        post_job=post_job,
        runner_name=name,
    )


def _quarantine(manager: StorageManager, runner_name: str) -> None:
    try:
        manager.move_to_quarantine(runner_name)
    except MetricsError:
        logger.exception("Cannot quarantine the metrics store of %s", runner_name)


def extract(
    metrics_storage_manager: StorageManager, ignore_runners: set[str]
) -> Iterator[RunnerMetrics]:
    """Extract metrics from runners.

    The metrics are extracted from the metrics storage of the runners. Orphan storages are
    cleaned up.

    If corrupt data is found, the metrics are not processed further and the storage is moved
    to a special quarantine directory, as this may indicate that a malicious runner is trying
    to manipulate the files on the storage.

    In order to avoid DoS attacks, the file size is also checked.

    Nothing a runner writes makes this raise; one store at a time is held in memory.

    Args:
        metrics_storage_manager: The metrics storage manager.
        ignore_runners: The set of runners to ignore.

    Yields:
        Extracted runner metrics of a particular runner.
    """
    try:
        storages = iter(metrics_storage_manager.list_all())
        while True:
            try:
                storage = next(storages)
            except StopIteration:
                return
            if storage.runner_name in ignore_runners:
                continue
            metrics = _extract_one(metrics_storage_manager, storage)
            if metrics is not None:
                yield metrics
    except MetricsError:
        logger.exception("Cannot list the metrics stores")


def _extract_one(manager: StorageManager, storage: MetricsStorage) -> RunnerMetrics | None:
    name = storage.runner_name
    try:
        metrics = read_runner_metrics(storage)
    except CorruptMetricsError as exc:
        logger.warning("Corrupt metrics store of %s (%s): quarantined", name, exc)
        _quarantine(manager, name)
        return None
    except Exception:  # one broken store must never stop the extraction of the others
        logger.exception("Cannot read the metrics store of %s: quarantined", name)
        _quarantine(manager, name)
        return None
    try:
        manager.delete(name)
    except MetricsError:
        logger.exception("Cannot delete the metrics store of %s", name)
        return None  # not deleted: would be issued twice; read again next time
    return metrics


def issue_events(
    runner_metrics: RunnerMetrics, flavor: str, job_metrics: GithubJobMetrics | None
) -> set[type[Event]]:
    """Issue the metrics events for a runner.

    ``runner_start`` is issued when the runner took a job (``idle`` = job start - installation,
    at least 0), ``runner_stop`` only after a ``runner_start`` and when the runner reported the
    end of the job (``job_duration`` = stop - start, at least 0). ``runner_installed`` is not
    issued here: the manager issues it when it creates the runner.

    Args:
        runner_metrics: The metrics for the runner.
        flavor: The flavor of the runner.
        job_metrics: The metrics about the job run by the runner.

    Returns:
        A set of issued events. A failure to write is logged and ends the issuing.
    """
    issued: set[type[Event]] = set()
    pre_job = runner_metrics.pre_job
    if pre_job is None:
        return issued
    start = RunnerStart(
        timestamp=pre_job.timestamp,
        flavor=flavor,
        workflow=pre_job.workflow,
        repo=pre_job.repository,
        github_event=pre_job.event,
        idle=max(0.0, pre_job.timestamp - runner_metrics.installed_timestamp),
        queue_duration=job_metrics.queue_duration if job_metrics else None,
    )
    try:
        issue_event(start)
        issued.add(RunnerStart)
        post_job = runner_metrics.post_job
        if post_job is not None:
            issue_event(
                RunnerStop(
                    timestamp=post_job.timestamp,
                    flavor=flavor,
                    workflow=pre_job.workflow,
                    repo=pre_job.repository,
                    github_event=pre_job.event,
                    status=post_job.status.value,
                    status_info=post_job.status_info,
                    job_duration=max(0.0, post_job.timestamp - pre_job.timestamp),
                    job_conclusion=job_metrics.conclusion if job_metrics else None,
                )
            )
            issued.add(RunnerStop)
    except IssueMetricEventError:
        logger.exception("Cannot issue metric events of %s", runner_metrics.runner_name)
    return issued


def crashed_runners(issued_per_runner: Iterable[set[type[Event]]]) -> int:
    """Count the runners that started a job and never reported its end.

    Args:
        issued_per_runner: What :func:`issue_events` returned, one set per extracted runner.

    Returns:
        The number of sets holding ``RunnerStart`` but not ``RunnerStop``.
    """
    return sum(
        1 for issued in issued_per_runner if RunnerStart in issued and RunnerStop not in issued
    )


def reconciliation_event(
    flavor: str,
    *,
    issued_per_runner: Iterable[set[type[Event]]],
    idle_runners: int,
    active_runners: int,
    expected_runners: int,
    duration: float,
    timestamp: float | None = None,
) -> Reconciliation:
    """Build the reconciliation event from the events issued for the extracted runners.

    Args:
        flavor: The runner flavor.
        issued_per_runner: What :func:`issue_events` returned, one set per extracted runner.
        idle_runners: Idle runners after the reconcile.
        active_runners: Busy runners after the reconcile.
        expected_runners: The configured number of runners.
        duration: Seconds the reconcile took.
        timestamp: When the reconcile ended (default: now).

    Returns:
        The event, to pass to :func:`metrics.events.issue_event`.
    """
    return Reconciliation(
        timestamp=now() if timestamp is None else timestamp,
        flavor=flavor,
        crashed_runners=crashed_runners(issued_per_runner),
        idle_runners=idle_runners,
        active_runners=active_runners,
        expected_runners=expected_runners,
        duration=max(0.0, duration),
    )
