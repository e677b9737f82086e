"""OpenstackRunnerManager: the runners of one unit as Nova servers (a ``RunnerManagerPort``).

Reconcile: one server listing and one GitHub listing, judged by the same pure plan as LXD
runners (``reconcile_plan.plan_reconcile``); servers in ERROR are judged unhealthy, deleted
(their fault logged) and replaced in the same reconcile; a runner that finished its job powers
off (SHUTOFF) and is deleted. Creations register a JIT runner, then ask Nova for a server whose
user data carries that JIT config. A quota refusal stops the creations of the reconcile: the
report says so (``OpenstackReconcileReport.quota_exceeded``) and the next reconcile tries again;
no error escapes. Nova can accept racing creations past the quota and send the extras to ERROR:
those are cleaned by the next reconcile like any server in ERROR.

Image: the configured Glance image (``config.image``, name or id), built outside the charm.
``has_runner_image`` says whether it exists; ``build_runner_image`` builds nothing: a no-op when
the image exists, else a clear ``OpenstackNotFoundError``; ``schedule_build_runner_image`` is a
no-op. The flavor sets the resources: ``reconcile``'s ``resources`` argument is not used.

Pre-job check and metrics, as for LXD runners: with ``config.repo_policy_url`` each creation
gets a one-time token from the policy service, and the user data writes it with the same
job-started hook (``pre-job.sh.j2``); with metrics enabled each runner also gets a metrics store
(``openstack_backend.metrics_push``) its pushed files land in, and the stores of gone runners
are extracted after the deletions (``runner_start`` / ``runner_stop`` events, as LXD's manager
issues them; ``runner_installed`` at creation). Each reconcile ends with the ``reconciliation``
event and the Prometheus runner series of the unit, as on LXD.

Reactive mode (``config.reactive_config``), as LXD's manager: the same ``ReactiveSide`` (the
safety net and the warm floor's target before planning, ``ceiling - alive`` consumers after) and
the same consumer processes (``reactive.pool``), which rebuild this manager from their config
file (``reactive.manager_section``: it names the unit's clouds.yaml) and make one server per job
with :meth:`OpenstackRunnerManager.create_runners`.

The ``*_WAIT_REPO_CHECK`` flushes wait (``settings.repo_check_wait`` at most) while a runner is
inside its pre-job check, known as for LXD runners from the unit's side only: the digest of the
one-time token in the server's metadata against the checks the policy service is answering
(``openstack_backend.policy_checks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jinja2 import Environment

from config.settings import RunnerManagerSettings
from errors import ConfigError, GithubClientError
from github_api.seam import GithubPlatform
from github_api.types import GitHubPath
from manager.executor import run_parallel
from manager.idle_limit import max_idle_age
from manager.job_safety_net import JobSafetyNet
from manager.reactive_side import ReactiveSide, ReactiveTarget
from manager.report import ReconcileReport
from manager.runner_bin import RunnerBinaryMethods
from manager.templates import template_environment
from manager.unit_lock import UnitLock
from manager.unit_safety_net import unit_safety_net
from metrics.recorder import MetricsRecorder
from observability.github_meter import metered_github_client
from openstack_backend.client import OpenstackClient
from openstack_backend.creation import OpenstackReconcileReport, create_batch
from openstack_backend.image import GlanceImageMethods
from openstack_backend.metrics_push import RunnerMetricsPush
from openstack_backend.observe import Ownership, observe, owned_servers
from openstack_backend.policy_checks import PolicyService, wait_repo_checks
from openstack_backend.runners import RunnerSide, ServerTarget, remove_runner
from openstack_backend.seam import OpenstackCloud, ServerView
from openstack_backend.user_data import UserDataConfig
from reactive.manager_section import CloudFile
from reactive.pool import ConsumerPool, consumer_pool_for
from reconcile_plan import (
    HEALTHY_STATES,
    DeleteReason,
    Deletion,
    PlanTimeouts,
    RunnerState,
    judge,
    plan_flush,
    plan_reconcile,
)
from repo_policy.client import RepoPolicyComplianceClient
from runner_manager_type import LXDFlushMode, OpenstackRunnerManagerConfig, RunnerInfo
from runner_type import VirtualMachineResources, runner_labels

logger = logging.getLogger(__name__)

__all__ = ["OpenstackReconcileReport", "OpenstackRunnerManager"]

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
_HEALTHY_GONE = (DeleteReason.SURPLUS.value, DeleteReason.EXPIRING.value)


class OpenstackRunnerManager(RunnerBinaryMethods, GlanceImageMethods):
    """Manage the runners of one unit on an OpenStack cloud.

    Attributes:
        runner_bin_path: The cached runner application tarball.
        cron_path: Unused for OpenStack (no image rebuild); kept for the port.
    """

    def __init__(
        self,
        app_name: str,
        unit: int,
        config: OpenstackRunnerManagerConfig,
        cloud: OpenstackCloud | None = None,
        github: GithubPlatform | None = None,
        *,
        settings: RunnerManagerSettings | None = None,
        clouds_yaml: Path | None = None,
        cloud_name: str = "",
        user_data: UserDataConfig | None = None,
        jinja: Environment | None = None,
        policy: PolicyService | None = None,
        consumer_pool: ConsumerPool | None = None,
        safety_net: JobSafetyNet | None = None,
    ) -> None:
        """Construct the manager.

        Args:
            app_name: The application name; server names start with ``<app>-<unit>-``.
            unit: The unit number.
            config: The OpenStack runner configuration (image, flavor, network, GitHub).
            cloud: The cloud; when not given, an ``OpenstackClient`` over ``clouds_yaml``.
            github: GitHub; when not given, the unit's metered client for ``config.token``.
            settings: Paths, parallelism and timeouts (the unit's defaults when not given).
            clouds_yaml: The ``clouds.yaml`` file (when ``cloud`` is not given).
            cloud_name: The cloud's name in it.
            user_data: What runners' user data holds besides the JIT config (proxies and the
                mirror come from the configuration when not given).
            jinja: The template environment (the project's when not given).
            policy: The policy service: one-time tokens, checks in flight (a client of
                ``config.repo_policy_url`` when not given and the URL is set).
            consumer_pool: The reactive consumers: given, the unit is in reactive mode. When
                not given, the consumer processes of ``reactive_config`` if it is set (they
                read ``clouds_yaml``).
            safety_net: Reactive mode: enqueues the queued jobs no webhook brought, at each
                reconcile; the unit's own when not given.

        Raises:
            ConfigError: If neither ``cloud`` nor ``clouds_yaml`` and ``cloud_name`` are given.
            ReactiveRunnerError: In reactive mode without a consumer pool nor ``clouds_yaml``.
        """
        self.app_name = app_name
        self.unit = unit
        self.config = config
        self.state = config.charm_state
        self.settings = settings or RunnerManagerSettings.for_unit(app_name, unit)
        self.owner = Ownership(app_name, unit)
        self.prefix = self.owner.prefix
        self.runner_bin_path = self.settings.runner_bin_path
        self.cron_path = self.settings.cron_path
        if cloud is None:
            if clouds_yaml is None or not cloud_name:
                raise ConfigError("openstack-clouds-yaml", "no clouds.yaml and cloud name given")
            cloud = OpenstackClient(clouds_yaml, cloud_name)
        self.cloud: OpenstackCloud = cloud
        self.github: GithubPlatform = github or _github_client(config, self.settings)
        labels = runner_labels((*self.state.labels, *config.labels), app_name, "", self.state.arch)
        policy_url = config.repo_policy_url
        if policy is None and policy_url:
            policy = RepoPolicyComplianceClient(policy_url, config.service_token)
        self._policy = policy if policy_url else None
        enabled = self.state.is_metrics_enabled and bool(policy_url)
        push = (
            RunnerMetricsPush.for_unit(self.settings.state_dir, policy_url or "")
            if enabled
            else None
        )
        self.metrics = MetricsRecorder(
            enabled=enabled,
            flavor=app_name,
            storage=push.storage if push else None,
            github=self.github,
            served=config.path,
            state_dir=self.settings.state_dir,
        )
        self._side = RunnerSide(
            cloud=self.cloud,
            github=self.github,
            jinja=jinja or template_environment(),
            path=config.path,
            owner=self.owner,
            labels=labels,
            user_data=user_data
            or UserDataConfig(
                runner_dir=self.settings.runner_dir,
                runner_user=self.settings.runner_user,
                proxies=self.state.proxy,
                dockerhub_mirror=config.dockerhub_mirror,
                repo_policy_url=policy_url,
            ),
            busy_delete_wait=self.settings.busy_delete_wait,
            policy=self._policy,
            metrics=push,
        )
        self._lock = UnitLock(self.settings.state_dir / "runner-manager.lock")
        cloud_file = CloudFile(clouds_yaml, cloud_name) if clouds_yaml is not None else None
        self._pool = consumer_pool or consumer_pool_for(
            app_name, unit, config, self.settings, cloud_file
        )
        if self._pool is not None and safety_net is None:
            safety_net = unit_safety_net(config, self.settings, self.github)
        self._reactive = (
            None
            if self._pool is None
            else ReactiveSide(self._pool, self.state, self.settings, safety_net)
        )
        self.last_report = OpenstackReconcileReport()

    def quota_refusal(self) -> str | None:
        """Say what the cloud's quota refused in the last reconcile, if it refused anything.

        Returns:
            ``quota exceeded: N runners not created (<the cloud's message>)``, or None.
        """
        report = self.last_report
        if not report.quota_exceeded:
            return None
        return (
            f"OpenStack quota exceeded: {report.not_attempted} runners not created "
            f"({report.quota_exceeded})"
        )

    # --- GitHub ----------------------------------------------------------------------------------

    def get_github_info(self) -> Iterator[RunnerInfo]:
        """Get information on this unit's runners from GitHub.

        Returns:
            Information from GitHub on each runner.
        """
        for record in self.github.list_runners(self.config.path, self.prefix):
            yield RunnerInfo(name=record.name, status=record.status, busy=record.busy)

    # --- reconcile -------------------------------------------------------------------------------

    def reconcile(self, quantity: int, resources: VirtualMachineResources) -> int:
        """Bring runners in line with the target (reactive mode: also keep the consumers).

        Args:
            quantity: Number of intended runners (reactive mode: the ceiling of runners and
                consumers).
            resources: Unused: the flavor sets the resources of OpenStack runners.

        Returns:
            The change in healthy runners: the plan's difference between intended and healthy
            runners, less the planned creations that did not happen (a quota refusal, a failed
            creation).

        Raises:
            OpenstackNotFoundError: If the configured image, flavor or network does not exist
                (raised after the deletions; nothing is created).
        """
        start = time.monotonic()
        with self._locked("reconcile"):
            servers, instances, records = observe(
                self.cloud, self.github, self.config.path, self.owner
            )
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
                max_idle_age=self._max_idle_age(),
                keep_idle=target.keep_idle,
            )
            report = OpenstackReconcileReport(plan=plan)
            self.last_report = report
            logger.info(
                "openstack reconcile: %d wanted, %d servers; delete %d, create %d",
                target.desired,
                len(servers),
                len(plan.deletions),
                plan.create,
            )
            self._delete(plan.deletions, servers, report, allow_busy=False)
            self._collect(servers, report)
            if plan.create:
                self._create(plan.create, report)
            gone = sum(1 for reason in report.deleted.values() if reason in _HEALTHY_GONE)
            if self._reactive is not None:  # consumers = ceiling - runners alive after
                kept = sum(plan.count(state) for state in HEALTHY_STATES) - gone
                consumers = self._reactive.keep_consumers(
                    target.ceiling, kept + len(report.created)
                )
                self.metrics.reactive(getattr(self._pool, "queue_depth", None), consumers)
            report.duration = time.monotonic() - start
            not_busy = plan.count(RunnerState.IDLE) + plan.count(RunnerState.STARTING)
            self.metrics.reconciliation(  # the event and the Prometheus series, as on LXD
                quantity,
                report.duration,
                idle=max(not_busy - gone + len(report.created), 0),
                busy=plan.count(RunnerState.BUSY),
                plan=plan,
            )
        return plan.delta - (plan.create - len(report.created))

    def create_runners(self, count: int, resources: VirtualMachineResources) -> list[str]:
        """Create ``count`` runners now, without a full reconcile (a reactive consumer's call).

        Args:
            count: How many runners.
            resources: Unused: the flavor sets the resources of OpenStack runners.

        Returns:
            Names of the runners created (fewer when the quota refused some, or none).

        Raises:
            OpenstackNotFoundError: If the configured image, flavor or network does not exist.
        """
        report = OpenstackReconcileReport()
        # Shared: creations run in parallel with each other, never while runners are judged.
        with self._lock.shared(self.settings.lock_timeout, "create"):
            self._create(count, report)
        return report.created

    @property
    def github_client(self) -> GithubPlatform:
        """The GitHub client of this manager (reactive consumers check jobs with it)."""
        return self.github

    def _timeouts(self) -> PlanTimeouts:
        return PlanTimeouts(bootstrap=self.settings.bootstrap_timeout)

    def _max_idle_age(self) -> timedelta | None:
        """Idle runners older than this are replaced before their one-time token expires."""
        policy = replace(self.settings, repo_policy_url=self.config.repo_policy_url)
        return max_idle_age(policy, self.state.reconcile_interval)

    def _target(self) -> ServerTarget:
        return ServerTarget(
            image=self.cloud.image_id(self.config.image),
            flavor=self.cloud.flavor_id(self.config.flavor),
            network=self.cloud.network_id(self.config.network),
        )

    def _create(self, count: int, report: OpenstackReconcileReport) -> None:
        create_batch(
            self._side,
            self._target(),
            count,
            parallelism=self.settings.create_parallelism,
            metrics=self.metrics,
            report=report,
        )

    def _collect(self, servers: list[ServerView], report: ReconcileReport) -> None:
        """Extract the metrics of the runners whose servers are gone (or were just deleted)."""
        alive = {s.name for s in servers} - set(report.deleted)
        self.metrics.collect(ignore_runners=alive)

    def _delete(
        self,
        deletions: tuple[Deletion, ...],
        servers: list[ServerView],
        report: ReconcileReport,
        allow_busy: bool,
    ) -> None:
        by_name = {s.name: s for s in servers}

        def delete_one(deletion: Deletion) -> str:
            server = by_name.get(deletion.runner.name)
            if server is not None and server.fault:
                logger.warning("deleting %s (%s)", server.name, server.fault)
            remove_runner(self._side, deletion.runner, server.id if server else None, allow_busy)
            return deletion.runner.name

        results = run_parallel(delete_one, deletions, self.settings.delete_parallelism)
        for deletion, outcome in zip(deletions, results, strict=True):
            if isinstance(outcome, Exception):
                report.failed.append(deletion.runner.name)
                logger.warning("removing %s failed: %s", deletion.runner.name, outcome)
            else:
                report.deleted[outcome] = deletion.reason.value

    # --- flush -----------------------------------------------------------------------------------

    def flush(self, mode: LXDFlushMode = LXDFlushMode.FLUSH_IDLE) -> int:
        """Remove existing runners (GitHub record first, then the server).

        The ``*_WAIT_REPO_CHECK`` modes first wait, at most ``settings.repo_check_wait``, while
        a runner is inside its pre-job policy check (``openstack_backend.policy_checks``).

        Args:
            mode: Strategy for flushing runners.

        Returns:
            Number of servers removed.

        Raises:
            GithubClientError: If GitHub cannot be used and the mode does not force.
        """
        start = time.monotonic()
        with self._locked("flush"):
            if mode in _WAIT_REPO_CHECK_MODES:
                wait_repo_checks(
                    self._policy,
                    lambda: owned_servers(self.cloud, self.owner),
                    self.settings.repo_check_wait,
                )
            try:
                servers, instances, records = observe(
                    self.cloud, self.github, self.config.path, self.owner
                )
            except GithubClientError:
                if mode is not LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK:
                    raise
                logger.warning("GitHub unusable: force flush removes the servers only")
                return self._force_delete_servers()
            runners = judge(instances, records, datetime.now(timezone.utc), self._timeouts())
            deletions = plan_flush(runners, include_busy=mode in _BUSY_FLUSH_MODES)
            report = OpenstackReconcileReport()
            self._delete(deletions, servers, report, allow_busy=mode in _BUSY_FLUSH_MODES)
            self._collect(servers, report)
            report.duration = time.monotonic() - start
            self.last_report = report
        return sum(
            1 for reason in report.deleted.values() if reason != DeleteReason.ORPHAN_RECORD.value
        )

    def _force_delete_servers(self) -> int:
        servers = owned_servers(self.cloud, self.owner)
        results = run_parallel(
            lambda s: self.cloud.delete_server(s.id), servers, self.settings.delete_parallelism
        )
        return sum(1 for r in results if not isinstance(r, Exception))

    # --- runner binary (RunnerBinaryMethods) ----------------------------------------------------

    def _runner_bin_query(self) -> tuple[GithubPlatform, GitHubPath, str]:
        return self.github, self.config.path, self.state.arch.value

    # --- helpers ---------------------------------------------------------------------------------

    def _locked(self, what: str) -> AbstractContextManager[None]:
        return self._lock.exclusive(self.settings.lock_timeout, what)


def _github_client(
    config: OpenstackRunnerManagerConfig, settings: RunnerManagerSettings
) -> GithubPlatform:
    state = config.charm_state
    return metered_github_client(
        state.github_credentials(config.token), state.api_url, settings.state_dir
    )
