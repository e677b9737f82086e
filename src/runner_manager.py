"""RunnerManager: reconcile, flush, runner binary and image for the runners of one unit."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timezone

from artifacts import runner_binary, runner_image
from config.settings import RunnerManagerSettings
from errors import GithubClientError, LXDNotFoundError
from github_api.seam import GithubPlatform
from github_api.types import GitHubPath
from lxd import LxdInstanceHandle
from manager.clients import build_clients
from manager.complete_settings import complete_settings
from manager.executor import run_parallel
from manager.idle_limit import max_idle_age
from manager.job_safety_net import JobSafetyNet
from manager.observe import observe
from manager.reactive_side import ReactiveSide, ReactiveTarget
from manager.removal import force_delete_instances, keep_logs, wait_repo_checks
from manager.report import ReconcileReport
from manager.runner_bin import RunnerBinaryMethods
from manager.runner_template import ensure_template, remove_templates
from manager.templates import template_environment
from manager.unit_lock import UnitLock
from manager.unit_safety_net import unit_safety_net
from metrics.recorder import MetricsRecorder
from metrics.shared_fs import SharedFilesystemManager
from metrics.storage import StorageManager
from reactive.pool import ConsumerPool, consumer_pool_for
from reconcile_plan import (
    HEALTHY_STATES,
    DeleteReason,
    Deletion,
    GithubView,
    InstanceView,
    PlanTimeouts,
    ReconcilePlan,
    RunnerState,
    judge,
    plan_flush,
    plan_reconcile,
)
from runner import CreateRunnerConfig, Runner
from runner_manager_type import (
    LXDFlushMode,
    LXDRunnerManagerConfig,
    RunnerInfo,
    RunnerManagerClients,
)
from runner_type import RunnerConfig, RunnerStatus, VirtualMachineResources

logger = logging.getLogger(__name__)

__all__ = ["ReconcileReport", "RunnerManager", "template_environment"]

_BUSY_FLUSH_MODES = (
    LXDFlushMode.FLUSH_BUSY,
    LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
    LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
)
_HEALTHY_GONE = (DeleteReason.SURPLUS, DeleteReason.EXPIRING)  # healthy runners deleted
_WAIT_REPO_CHECK_MODES = (
    LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK,
    LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
    LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
)


class RunnerManager(RunnerBinaryMethods):
    """Manage the runners of one unit: the seed API.

    Attributes:
        runner_bin_path: The cached runner application tarball.
        cron_path: The cron file that rebuilds the runner image.
    """

    def __init__(
        self,
        app_name: str,
        unit: int,
        runner_manager_config: LXDRunnerManagerConfig,
        *,
        clients: RunnerManagerClients | None = None,
        settings: RunnerManagerSettings | None = None,
        metrics_storage: StorageManager | None = None,
        consumer_pool: ConsumerPool | None = None,
        safety_net: JobSafetyNet | None = None,
    ) -> None:
        """Construct the manager.

        Args:
            app_name: The application name; runner names start with ``<app>-<unit>-``.
            unit: The unit number.
            runner_manager_config: Configuration of the runners.
            clients: The seams to LXD, GitHub, templates and the policy service (built from the
                configuration when not given).
            settings: Paths, parallelism and timeouts (when not given, the production defaults
                with this unit's own paths: ``RunnerManagerSettings.for_unit``).
            metrics_storage: The metrics store manager (loop-mounted bounded stores when not
                given and metrics are enabled).
            consumer_pool: The reactive consumers: given, the unit is in reactive mode. When
                not given, the consumer processes of ``reactive_config`` if it is set.
            safety_net: Reactive mode: enqueues the queued jobs no webhook brought, at each
                reconcile (``manager.job_safety_net``); the unit's own when not given.
        """
        self.app_name = app_name
        self.unit = unit
        self.config = runner_manager_config
        self.state = runner_manager_config.charm_state
        self.settings = complete_settings(
            settings or RunnerManagerSettings.for_unit(app_name, unit), runner_manager_config
        )
        self.prefix = f"{app_name}-{unit}-"
        self.runner_bin_path = self.settings.runner_bin_path
        self.cron_path = self.settings.cron_path
        self._clients = clients or build_clients(runner_manager_config, self.settings)
        self._lock = UnitLock(self.settings.state_dir / "runner-manager.lock")
        self._pool: ConsumerPool | None = consumer_pool
        if consumer_pool is None:
            self._pool = consumer_pool_for(app_name, unit, runner_manager_config, self.settings)
        if self._pool is not None and safety_net is None:
            safety_net = unit_safety_net(self.config, self.settings, self._clients.github)
        self._reactive = (
            None
            if self._pool is None
            else ReactiveSide(self._pool, self.state, self.settings, safety_net)
        )
        self.last_report = ReconcileReport()
        enabled = runner_manager_config.are_metrics_enabled
        self.metrics = MetricsRecorder(
            enabled=enabled,
            flavor=app_name,
            storage=(metrics_storage or self._metrics_storage()) if enabled else None,
            github=self._clients.github,
            served=runner_manager_config.path,
            state_dir=self.settings.state_dir,
        )

    def _metrics_storage(self) -> StorageManager:
        return SharedFilesystemManager(
            self.settings.metrics_storage_dir, self.settings.quarantine_dir
        )

    # --- observation -----------------------------------------------------------------------------

    def _observe(self) -> tuple[list[InstanceView], list[GithubView]]:
        return observe(self._clients, self.config.path, self.prefix, self.settings.settle_timeout)

    def _timeouts(self) -> PlanTimeouts:
        return PlanTimeouts(bootstrap=self.settings.bootstrap_timeout)

    def get_github_info(self) -> Iterator[RunnerInfo]:
        """Get information on this unit's runners from GitHub.

        Returns:
            Information from GitHub on each runner.
        """
        for record in self._clients.github.list_runners(self.config.path, self.prefix):
            yield RunnerInfo(name=record.name, status=record.status, busy=record.busy)

    def runner_states(self) -> ReconcilePlan:
        """Observe and judge the runners without changing anything.

        Returns:
            A plan for the current count (its runners carry their judged states).
        """
        instances, records = self._observe()
        return plan_reconcile(instances, records, 0, datetime.now(timezone.utc), self._timeouts())

    # --- reconcile -------------------------------------------------------------------------------

    def reconcile(self, quantity: int, resources: VirtualMachineResources) -> int:
        """Bring runners in line with the target.

        Args:
            quantity: Number of intended runners.
            resources: Resources of each runner instance.

        Returns:
            Difference between intended runners and healthy runners before the change.

        Raises:
            ReconcileError: If another reconcile or flush holds the lock too long.
        """
        start = time.monotonic()
        with self._locked("reconcile"):
            instances, records = self._observe()
            now = datetime.now(timezone.utc)
            target = ReactiveTarget(quantity, None, 0, quantity)  # non-reactive: as given
            if self._reactive is not None:  # runners from the queue over a warm floor
                runners = judge(instances, records, now, self._timeouts())
                target = self._reactive.target(quantity, runners)
            plan = plan_reconcile(
                instances,
                records,
                target.desired,
                now,
                self._timeouts(),
                stale_idle_after=target.stale_idle_after,
                max_idle_age=max_idle_age(self.settings, self.state.reconcile_interval),
                keep_idle=target.keep_idle,
            )
            report = ReconcileReport(plan=plan)
            alive = {i.name for i in instances}
            self.metrics.collect(ignore_runners=alive)
            logger.info(
                "reconcile: %d wanted, %d idle, %d busy, %d starting; delete %d, create %d",
                quantity,
                plan.count(RunnerState.IDLE),
                plan.count(RunnerState.BUSY),
                plan.count(RunnerState.STARTING),
                len(plan.deletions),
                plan.create,
            )
            self._delete(plan.deletions, report, allow_busy=False)
            if plan.create:
                self._create(plan.create, resources, report)
            gone = sum(1 for d in plan.deletions if d.reason in _HEALTHY_GONE)
            if self._reactive is not None:  # consumers = ceiling - runners alive after
                kept = sum(plan.count(state) for state in HEALTHY_STATES) - gone
                after = kept + len(report.created)
                consumers = self._reactive.keep_consumers(target.ceiling, after)
                self.metrics.reactive(getattr(self._pool, "queue_depth", None), consumers)
            report.duration = time.monotonic() - start
            self.last_report = report
            not_busy = plan.count(RunnerState.IDLE) + plan.count(RunnerState.STARTING)
            self.metrics.reconciliation(
                quantity,
                report.duration,
                idle=max(not_busy - gone + len(report.created), 0),
                busy=plan.count(RunnerState.BUSY),
                plan=plan,
            )
        return plan.delta

    def create_runners(self, count: int, resources: VirtualMachineResources) -> list[str]:
        """Create ``count`` runners now, without a full reconcile (reactive mode).

        Args:
            count: How many runners.
            resources: Resources of each runner instance.

        Returns:
            Names of the runners created.
        """
        report = ReconcileReport()
        # Shared: creations run in parallel with each other, never while runners are judged.
        with self._lock.shared(self.settings.lock_timeout, "create"):
            self._create(count, resources, report)
        return report.created

    def _create(
        self, count: int, resources: VirtualMachineResources, report: ReconcileReport
    ) -> None:
        profile = self._clients.lxd.resource_profile(
            resources.cpu,
            resources.memory,
            None if self.state.test_mode else resources.disk,
            pool=self.settings.storage_pool or "default",
        )
        binary = runner_binary.cached_binary(self.runner_bin_path)
        image = self.config.image
        generation = runner_image.image_generation(self._clients.lxd, image)
        template = self._template(image, generation)

        def create_one(_: int) -> tuple[str, float]:
            began = time.monotonic()
            name = f"{self.prefix}{secrets.token_hex(4)}"
            runner = Runner(
                self._clients,
                self._runner_config(name, generation),
                RunnerStatus(),
                settings=self.settings,
            )
            runner.create(
                CreateRunnerConfig(
                    image=image,
                    resources=resources,
                    binary_path=binary.path if binary else self.runner_bin_path,
                    registration_token="",
                    arch=self.state.arch,
                    profile=profile,
                    binary_version=binary.version if binary else None,
                    metrics=self.metrics.storage,
                    instance_type="container" if self.state.test_mode else "virtual-machine",
                    template=template,
                )
            )
            if self.settings.fixed_boot_wait:
                time.sleep(self.settings.fixed_boot_wait)  # benchmark-only: upstream's wait
            seconds = time.monotonic() - began
            self.metrics.runner_installed(seconds, name)
            return name, seconds

        results = run_parallel(create_one, range(count), self.settings.create_parallelism)
        for outcome in results:
            if isinstance(outcome, Exception):
                report.failed.append(getattr(outcome, "runner_name", None) or "?")
                self.metrics.creation_failed()
                logger.error("runner creation failed: %s", outcome)
            else:
                report.created.append(outcome[0])
                report.create_seconds.append(outcome[1])

    def _template(self, image: str, generation: str) -> str | None:
        """The container runners are cloned from (test mode with ``clone_from_template``)."""
        if not (self.settings.clone_from_template and self.state.test_mode and generation):
            return None
        return ensure_template(self._clients, self.prefix, image, generation)

    def _runner_config(self, name: str, generation: str) -> RunnerConfig:
        return RunnerConfig(
            app_name=self.app_name,
            name=name,
            path=self.config.path,
            labels=self.state.labels,
            github_url=self.state.github_url,
            base_image=self.state.base_image.value,
            dockerhub_mirror=self.config.dockerhub_mirror,
            proxies=self.state.proxy,
            aproxy=self.state.aproxy,
            ssh_debug_connections=self.state.ssh_debug_connections,
            image_generation=generation,
        )

    def _delete(
        self, deletions: tuple[Deletion, ...], report: ReconcileReport, allow_busy: bool
    ) -> None:
        def delete_one(deletion: Deletion) -> str:
            joined = deletion.runner
            runner = Runner(
                self._clients,
                self._runner_config(joined.name, ""),
                RunnerStatus(
                    runner_id=joined.github.id if joined.github else None,
                    exist=joined.github is not None,
                    online=bool(joined.github and joined.github.online),
                    busy=joined.busy,
                ),
                instance=self._instance(joined.name) if joined.instance else None,
                settings=self.settings,
            )
            if deletion.reason is DeleteReason.UNHEALTHY and joined.instance is not None:
                keep_logs(runner)
            runner.remove(None, allow_busy=allow_busy)
            return joined.name

        results = run_parallel(delete_one, deletions, self.settings.delete_parallelism)
        for deletion, outcome in zip(deletions, results, strict=True):
            if isinstance(outcome, Exception):
                report.failed.append(deletion.runner.name)
                logger.warning("removing %s failed: %s", deletion.runner.name, outcome)
            else:
                report.deleted[outcome] = deletion.reason.value
        self.metrics.runners_deleted(report.deleted.values())

    # --- flush -----------------------------------------------------------------------------------

    def flush(self, mode: LXDFlushMode = LXDFlushMode.FLUSH_IDLE) -> int:
        """Remove existing runners.

        Args:
            mode: Strategy for flushing runners.

        Returns:
            Number of runners removed.

        Raises:
            GithubClientError: If GitHub cannot be used and the mode does not force.
        """
        start = time.monotonic()
        with self._locked("flush"):
            if mode in _WAIT_REPO_CHECK_MODES:
                wait_repo_checks(self._clients, self.prefix, self.settings)
            try:
                instances, records = self._observe()
            except GithubClientError:
                if mode is not LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK:
                    raise
                logger.warning("GitHub unusable: force flush removes the LXD instances only")
                remove_templates(self._clients, self.prefix)
                return force_delete_instances(self._clients, self.prefix, self.settings)
            runners = judge(instances, records, datetime.now(timezone.utc), self._timeouts())
            deletions = plan_flush(runners, include_busy=mode in _BUSY_FLUSH_MODES)
            report = ReconcileReport()
            self._delete(deletions, report, allow_busy=mode in _BUSY_FLUSH_MODES)
            if mode in _BUSY_FLUSH_MODES:  # everything down (the stop hook too): the template
                remove_templates(self._clients, self.prefix)
            report.duration = time.monotonic() - start
            self.last_report = report
            alive = {i.name for i in instances} - set(report.deleted)
            self.metrics.collect(ignore_runners=alive)
        return sum(
            1 for reason in report.deleted.values() if reason != DeleteReason.ORPHAN_RECORD.value
        )

    @property
    def github_client(self) -> GithubPlatform:
        """The GitHub client of this manager (reactive consumers check jobs with it)."""
        return self._clients.github

    def _instance(self, name: str) -> LxdInstanceHandle | None:
        try:
            return self._clients.lxd.get(name)
        except LXDNotFoundError:
            return None

    # --- runner binary (RunnerBinaryMethods) ----------------------------------------------------

    def _runner_bin_query(self) -> tuple[GithubPlatform, GitHubPath, str]:
        return self._clients.github, self.config.path, self.state.arch.value

    # --- image -----------------------------------------------------------------------------------

    def has_runner_image(self) -> bool:
        """Check if the runner image exists in LXD.

        Returns:
            Whether the runner image exists.
        """
        return self._clients.lxd.image_exists(self.config.image)

    def build_runner_image(self) -> None:
        """Build the LXD image for runners: a container image in test mode, else a VM image.

        Raises:
            SubprocessError: If the build script failed.
        """
        with self._locked("build-image"):
            runner_image.build(
                self.settings,
                alias=self.config.image,
                test_mode=self.state.test_mode,
                base=self.state.base_image.value,
                runner_binary=self.runner_bin_path if self.check_runner_bin() else None,
            )

    def schedule_build_runner_image(self) -> None:
        """Install the cron entry that rebuilds the runner image every six hours."""
        runner_image.schedule(
            self.cron_path,
            app_name=self.app_name,
            unit=self.unit,
            alias=self.config.image,
            test_mode=self.state.test_mode,
            base=self.state.base_image.value,
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _locked(self, what: str) -> AbstractContextManager[None]:
        """Hold the unit lock alone: reconcile, flush and updates judge or replace runners."""
        return self._lock.exclusive(self.settings.lock_timeout, what)
