"""RunnerManager: reconcile, flush, runner binary and image for the runners of one unit."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from artifacts import runner_binary, runner_image
from errors import (
    GithubClientError,
    GithubNotFoundError,
    LXDError,
    LXDNotFoundError,
    RunnerBinaryError,
    RunnerLogsError,
)
from github_api.client import GithubClient
from github_api.seam import GithubPlatform
from github_api.types import RunnerApplication
from lxd import LxdClient, LxdInstanceHandle
from manager.executor import run_parallel
from manager.settings import RunnerManagerSettings
from manager.unit_lock import UnitLock
from metrics.recorder import MetricsRecorder
from metrics.shared_fs import SharedFilesystemManager
from metrics.storage import StorageManager
from paths import TEMPLATES_DIR
from reconcile_plan import (
    HEALTHY_STATES,
    DeleteReason,
    Deletion,
    GithubView,
    InstanceState,
    InstanceView,
    PlanTimeouts,
    ReconcilePlan,
    RunnerState,
    judge,
    plan_flush,
    plan_reconcile,
)
from repo_policy.client import RepoPolicyComplianceClient
from runner import CREATED_KEY, CreateRunnerConfig, Runner
from runner_manager_type import (
    LXDFlushMode,
    LXDRunnerManagerConfig,
    RunnerInfo,
    RunnerManagerClients,
)
from runner_type import RunnerConfig, RunnerStatus, VirtualMachineResources

logger = logging.getLogger(__name__)


_BUSY_FLUSH_MODES = (
    LXDFlushMode.FLUSH_BUSY,
    LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
    LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
)
_WAIT_REPO_CHECK_MODES = (
    LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK,
    LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK,
    LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK,
)


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


def template_environment() -> Environment:
    """Return the Jinja environment of the runner templates (shell scripts and env files).

    Returns:
        The environment; undefined variables are errors.
    """
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=False,  # noqa: S701 - renders shell scripts and env files, not HTML
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


class RunnerManager:
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
    ) -> None:
        """Construct the manager.

        Args:
            app_name: The application name; runner names start with ``<app>-<unit>-``.
            unit: The unit number.
            runner_manager_config: Configuration of the runners.
            clients: The seams to LXD, GitHub, templates and the policy service (built from the
                configuration when not given).
            settings: Paths, parallelism and timeouts (production defaults when not given).
            metrics_storage: The metrics store manager (loop-mounted bounded stores when not
                given and metrics are enabled).
        """
        self.app_name = app_name
        self.unit = unit
        self.config = runner_manager_config
        self.state = runner_manager_config.charm_state
        self.settings = _with_config(settings or RunnerManagerSettings(), runner_manager_config)
        self.prefix = f"{app_name}-{unit}-"
        self.runner_bin_path = self.settings.runner_bin_path
        self.cron_path = self.settings.cron_path
        self._clients = clients or self._build_clients()
        self._lock = UnitLock(self.settings.state_dir / "runner-manager.lock")
        self.last_report = ReconcileReport()
        enabled = runner_manager_config.are_metrics_enabled
        self.metrics = MetricsRecorder(
            enabled=enabled,
            flavor=app_name,
            storage=(metrics_storage or self._metrics_storage()) if enabled else None,
            github=self._clients.github,
        )

    def _metrics_storage(self) -> StorageManager:
        return SharedFilesystemManager(
            self.settings.metrics_storage_dir, self.settings.quarantine_dir
        )

    def _build_clients(self) -> RunnerManagerClients:
        return RunnerManagerClients(
            github=GithubClient(self.config.token, self.state.api_url),
            jinja=template_environment(),
            lxd=LxdClient(),
            repo=RepoPolicyComplianceClient(
                self.settings.repo_policy_url or "", self.config.service_token
            ),
        )

    # --- observation -----------------------------------------------------------------------------

    def _observe(self) -> tuple[list[InstanceView], list[GithubView]]:
        # Under the lock no creation of ours runs; operations still changing our instances
        # were left by a process that died (LXD completes them): let them finish first.
        busy = self._clients.lxd.wait_instances_settled(self.prefix, self.settings.settle_timeout)
        if busy:
            logger.warning("LXD operations still running on %s; judging them anyway", busy)
        now = datetime.now(timezone.utc)  # an instance LXD gives no age is judged young
        instances = [
            InstanceView(
                name=i.name,
                state=_instance_state(i.last_status.value),  # as listed: no call per instance
                created_at=i.created_at or now,
                complete=i.config.get(CREATED_KEY) == "true",
            )
            for i in self._clients.lxd.list(prefix=self.prefix)
        ]
        records = [
            GithubView(id=r.id, name=r.name, online=r.status.value == "online", busy=r.busy)
            for r in self._clients.github.list_runners(self.config.path, self.prefix)
        ]
        return instances, records

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
            reactive = self.config.reactive_config is not None
            desired = quantity
            if reactive:  # runners come from the queue: never create, keep at most the ceiling
                healthy = judge(instances, records, now, self._timeouts())
                desired = min(quantity, sum(1 for r in healthy if r.state in HEALTHY_STATES))
            plan = plan_reconcile(instances, records, desired, now, self._timeouts())
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
            surplus = sum(1 for d in plan.deletions if d.reason is DeleteReason.SURPLUS)
            if reactive:
                from reactive import wiring as runner_manager_reactive  # noqa: PLC0415 - it imports this module

                runner_manager_reactive.reconcile_consumers(self, quantity, desired - surplus)
            report.duration = time.monotonic() - start
            self.last_report = report
            not_busy = plan.count(RunnerState.IDLE) + plan.count(RunnerState.STARTING)
            self.metrics.reconciliation(
                quantity,
                report.duration,
                idle=max(not_busy - surplus + len(report.created), 0),
                busy=plan.count(RunnerState.BUSY),
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
            resources.cpu, resources.memory, None if self.state.test_mode else resources.disk
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
            self.metrics.runner_installed(seconds)
            return name, seconds

        results = run_parallel(create_one, range(count), self.settings.create_parallelism)
        for outcome in results:
            if isinstance(outcome, Exception):
                report.failed.append(getattr(outcome, "runner_name", None) or "?")
                logger.error("runner creation failed: %s", outcome)
            else:
                report.created.append(outcome[0])
                report.create_seconds.append(outcome[1])

    def _template(self, image: str, generation: str) -> str | None:
        """Return the stopped container runners are cloned from, making it if needed.

        Only with ``settings.clone_from_template`` in test mode (containers). Named
        ``grt-<app>-<unit>-<generation>``: outside the unit's runner prefix, so it is never
        judged as a runner; templates of older image generations are deleted. Any failure
        means "launch from the image".

        Args:
            image: The image alias.
            generation: The image generation (fingerprint prefix).

        Returns:
            The template's name, or None.
        """
        if not (self.settings.clone_from_template and self.state.test_mode and generation):
            return None
        base = f"grt-{self.prefix}"
        name = f"{base}{generation}"
        lxd = self._clients.lxd
        try:
            for old in lxd.list(prefix=base):
                if old.name != name:
                    old.delete()
            if not lxd.exists(name):
                # Started once (LXD remaps the ids at the first start), then stopped.
                lxd.create(name, image, ephemeral=False, start=True, wait=True).stop(force=True)
        except LXDError as exc:
            logger.warning("no runner template (%s): launching from the image", exc)
            return None
        return name

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
                _keep_logs(runner)
            runner.remove(None, allow_busy=allow_busy)
            return joined.name

        results = run_parallel(delete_one, deletions, self.settings.delete_parallelism)
        for deletion, outcome in zip(deletions, results, strict=True):
            if isinstance(outcome, Exception):
                report.failed.append(deletion.runner.name)
                logger.warning("removing %s failed: %s", deletion.runner.name, outcome)
            else:
                report.deleted[outcome] = deletion.reason.value

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
                self._wait_repo_checks()
            try:
                instances, records = self._observe()
            except GithubClientError:
                if mode is not LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK:
                    raise
                logger.warning("GitHub unusable: force flush removes the LXD instances only")
                return self._force_delete_instances()
            runners = judge(instances, records, datetime.now(timezone.utc), self._timeouts())
            deletions = plan_flush(runners, include_busy=mode in _BUSY_FLUSH_MODES)
            report = ReconcileReport()
            self._delete(deletions, report, allow_busy=mode in _BUSY_FLUSH_MODES)
            report.duration = time.monotonic() - start
            self.last_report = report
            alive = {i.name for i in instances} - set(report.deleted)
            self.metrics.collect(ignore_runners=alive)
        return sum(
            1 for reason in report.deleted.values() if reason != DeleteReason.ORPHAN_RECORD.value
        )

    def flush_stale_idle(self, older_than: timedelta) -> int:
        """Remove idle runners that have waited longer than ``older_than`` (reactive mode).

        Args:
            older_than: The idle age beyond which a runner goes.

        Returns:
            Number of runners removed.
        """
        with self._locked("flush-stale-idle"):
            instances, records = self._observe()
            now = datetime.now(timezone.utc)
            runners = judge(instances, records, now, self._timeouts())
            stale = tuple(
                Deletion(r, DeleteReason.SURPLUS)
                for r in runners
                if r.state is RunnerState.IDLE
                and r.instance is not None
                and now - r.instance.created_at > older_than
            )
            report = ReconcileReport()
            self._delete(stale, report, allow_busy=False)
        return len(report.deleted)

    @property
    def github_client(self) -> GithubPlatform:
        """The GitHub client of this manager (reactive consumers check jobs with it)."""
        return self._clients.github

    def _instance(self, name: str) -> LxdInstanceHandle | None:
        try:
            return self._clients.lxd.get(name)
        except LXDNotFoundError:
            return None

    def _force_delete_instances(self) -> int:
        instances = self._clients.lxd.list(prefix=self.prefix)

        def delete(instance: LxdInstanceHandle) -> str:
            instance.delete()
            return instance.name

        results = run_parallel(delete, instances, self.settings.delete_parallelism)
        return sum(1 for r in results if not isinstance(r, Exception))

    def _wait_repo_checks(self) -> None:
        """Wait (bounded) until no runner is inside its pre-job policy check."""
        deadline = time.monotonic() + self.settings.repo_check_wait
        delay = 0.2
        while True:
            in_check = [
                i.name
                for i in self._clients.lxd.list(prefix=self.prefix)
                if Runner.in_pre_job_check(i, self.settings)
            ]
            if not in_check:
                return
            if time.monotonic() >= deadline:
                logger.warning("proceeding with flush; policy check still running on %s", in_check)
                return
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 2.0)

    # --- runner binary ---------------------------------------------------------------------------

    def get_latest_runner_bin_url(self, os_name: str = "linux") -> RunnerApplication:
        """Get the latest runner application for this unit's os and architecture.

        Args:
            os_name: Name of the operating system.

        Returns:
            Information on the runner application.

        Raises:
            RunnerBinaryError: If GitHub cannot tell.
        """
        try:
            return self._clients.github.get_runner_application(
                self.config.path, os_name=os_name, arch=self.state.arch.value
            )
        except GithubNotFoundError as exc:
            raise RunnerBinaryError(f"no runner application for {os_name}") from exc

    def update_runner_bin(self, binary: RunnerApplication) -> None:
        """Download a runner application, replacing the current copy once verified.

        Args:
            binary: Information on the runner application to download.

        Raises:
            RunnerBinaryError: If the download or its verification failed.
        """
        with self._locked("update-runner-bin"):
            runner_binary.download(binary, self.runner_bin_path)

    def check_runner_bin(self) -> bool:
        """Check whether a usable runner binary is cached.

        Returns:
            Whether the runner binary exists and its record is consistent.
        """
        return runner_binary.cached_binary(self.runner_bin_path) is not None

    def runner_bin_version(self) -> str | None:
        """Return the version of the cached runner binary, if any."""
        cached = runner_binary.cached_binary(self.runner_bin_path)
        return cached.version if cached else None

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


def _with_config(
    settings: RunnerManagerSettings, config: LXDRunnerManagerConfig
) -> RunnerManagerSettings:
    """Complete the settings from the configuration.

    The policy service URL comes from the charm unless the settings name one. In test mode,
    runners are NIC-less containers: every loopback service they use (GitHub, the policy
    service) is brought in by a proxy device on the same port.
    """
    policy_url = settings.repo_policy_url or config.repo_policy_url
    ports = list(settings.loopback_ports)
    if config.charm_state.test_mode:
        for url in (config.charm_state.github_url, policy_url):
            parsed = urlsplit(url or "")
            if parsed.hostname in ("127.0.0.1", "localhost") and parsed.port:
                ports.append(parsed.port)
    return replace(
        settings, repo_policy_url=policy_url, loopback_ports=tuple(dict.fromkeys(ports))
    )


def _keep_logs(runner: Runner) -> None:
    """Pull an unhealthy runner's logs before it goes (a failure to do so is only logged)."""
    if runner.instance is None or runner.instance.last_status.value != "Running":
        return
    try:
        runner.pull_logs()
    except (RunnerLogsError, LXDError) as exc:  # e.g. it went away meanwhile
        logger.warning("logs of unhealthy runner %s not kept: %s", runner.config.name, exc)


def _instance_state(status: str) -> InstanceState:
    if status == "Running":
        return InstanceState.RUNNING
    if status == "Stopped":
        return InstanceState.STOPPED
    return InstanceState.OTHER
