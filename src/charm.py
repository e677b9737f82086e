#!/usr/bin/env python3
"""The github-runner charm: observes Juju events, runs actions and sets the unit status.

Handlers build a :class:`CharmState`, call the runner manager and record what went wrong; the
status is decided in one place, :meth:`GithubRunnerCharm._on_collect_unit_status`. Two seams are
class attributes a test subclass replaces: ``manager_factory`` (the runner manager) and
``system_factory`` (the host: LXD setup, RAM disk, logrotate, the reconcile timer, the policy
service, the webhook intake). Building a manager has no side effect: the policy service (and, in
reactive mode with ``webhook-secret``, the intake) is ensured once per converge with the current
state, and removed when the unit stops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ops

import charm_state
import errors
from charm_state import COS_AGENT_RELATION, status_for_error
from charms.github_runner.v0.cos_agent import COSAgentProvider
from charms.github_runner.v0.mongodb import MongoDBRequirer
from config.state import CharmState, RunnerStorage
from juju.actions import RunnerActions
from juju.dependencies import ensure_dependencies
from juju.host import HostSystem, SystemPort
from juju.intake_host import intake_settings
from juju.manager_port import CloudRefusals, ManagerConfig, RunnerManagerPort, manager_config
from juju.policy_host import RepoPolicyEndpoint
from juju.runner_counts import count_runners, status_message
from juju.runner_managers import create_runner_manager
from juju.runner_storage import DETACHED_STORAGE_PATH, prepare_storage, storage_location
from metrics.events import METRICS_LOG_PATH
from runner_manager_type import FLUSH_MODE_BY_ACTION_PARAM, LXDFlushMode

logger = logging.getLogger(__name__)

RECONCILE_EVENT = "reconcile-runners"
PREVIOUS_CREDENTIALS_LABEL = "previous-credentials"


class ReconcileRunnersEvent(ops.EventBase):
    """Dispatched by the reconcile timer (``juju-exec``)."""


class GithubRunnerCharmEvents(ops.CharmEvents):
    """The charm's events, with the custom ``reconcile_runners``."""

    reconcile_runners = ops.EventSource(ReconcileRunnersEvent)


class GithubRunnerCharm(ops.CharmBase):
    """Runs GitHub Actions self-hosted runners as ephemeral LXD instances."""

    on = GithubRunnerCharmEvents()
    _stored = ops.StoredState()  # type: ignore[no-untyped-call]

    manager_factory: Callable[[str, int, ManagerConfig], RunnerManagerPort] = create_runner_manager
    system_factory: Callable[[str], SystemPort] = HostSystem

    def __init__(self, framework: ops.Framework) -> None:
        """Observe the events."""
        super().__init__(framework)
        self._stored.set_default(
            runner_storage="",
            credentials="",
            shape="",
            installed=False,
            started=False,
            error_status="",
            error_message="",
            counts="",
            intake_url="",
        )
        self.system = type(self).system_factory(self.unit.name)
        self.mongodb = MongoDBRequirer(self, relation_name="mongodb", database_name=self.app.name)
        self.cos_agent = COSAgentProvider(
            self,
            relation_name=COS_AGENT_RELATION,
            metrics_endpoints=self.system.metrics_endpoints(),
            log_files=(str(METRICS_LOG_PATH),),
        )
        on, observe = self.on, framework.observe
        observe(on.install, self._on_install)
        observe(on.upgrade_charm, self._on_upgrade_charm)
        observe(on.start, self._on_start)
        observe(on.stop, self._on_stop)
        observe(on.update_status, self._on_update_status)
        observe(on.collect_unit_status, self._on_collect_unit_status)
        observe(on.secret_changed, self._on_secret_changed)
        for event in (
            on.config_changed,
            on.reconcile_runners,
            on.runner_storage_attached,
            self.mongodb.on.uri_changed,
            on["cos-agent"].relation_joined,
            on["cos-agent"].relation_broken,
            on["debug-ssh"].relation_changed,
            on["debug-ssh"].relation_departed,
        ):
            observe(event, self._on_converge)
        observe(on.check_runners_action, self._on_check_runners_action)
        observe(on.reconcile_runners_action, self._on_reconcile_runners_action)
        observe(on.flush_runners_action, self._on_flush_runners_action)
        observe(on.update_runner_bin_action, self._on_update_runner_bin_action)
        observe(on.update_dependencies_action, self._on_update_dependencies_action)

    # --- state and seams -----------------------------------------------------------------------

    def _state(self) -> CharmState:
        """Build the validated state; remember runner-storage's deploy-time value."""
        if not self._stored.runner_storage:
            value = str(self.config.get("runner-storage", ""))
            if value in {storage.value for storage in RunnerStorage}:
                self._stored.runner_storage = value
        return charm_state.from_charm(
            self,
            database_uri=self.mongodb.uri() or "",
            deployed_runner_storage=self._stored.runner_storage or None,
        )

    def _attached_storage(self) -> Path | None:
        """Return where the ``runner`` Juju storage is mounted (None: not attached)."""
        storages = self.model.storages["runner"]
        return storages[0].location if storages else None

    def _manager(
        self,
        state: CharmState,
        policy: RepoPolicyEndpoint | None = None,
        storage: Path | None = None,
    ) -> RunnerManagerPort:
        """Build the manager of a state; no side effect (no policy: it creates no runner)."""
        storage = storage or storage_location(state, self._attached_storage())
        config = manager_config(state, storage or DETACHED_STORAGE_PATH, policy)
        return type(self).manager_factory(state.app_name, state.unit_number, config)

    def _progress(self, message: str) -> None:
        """Show progress of a long step (the final status comes from collect-status)."""
        logger.info(message)
        self.unit.status = ops.MaintenanceStatus(message)

    def _record_error(self, exc: errors.GithubRunnerError) -> None:
        """Remember an error's status until a reconcile succeeds."""
        status = status_for_error(exc)
        logger.warning("%s: %s", type(exc).__name__, exc)
        self._stored.error_status, self._stored.error_message = status.name, status.message

    # --- hooks ---------------------------------------------------------------------------------

    def _guarded(self, work: Callable[[CharmState], object]) -> None:
        """Run a hook's work on a valid state; bad config and project errors become status."""
        try:
            state = self._state()
        except errors.ConfigError as exc:
            logger.warning("invalid configuration: %s", exc)
            return
        try:
            work(state)
        except errors.GithubRunnerError as exc:
            self._record_error(exc)

    def _on_install(self, _: ops.InstallEvent) -> None:
        """Set up the host; runners come with config-changed."""
        self._guarded(self._ensure_installed)

    def _on_upgrade_charm(self, _: ops.UpgradeCharmEvent) -> None:
        """Redo the setup with the new charm code and replace idle runners."""
        self._stored.installed = False
        self._guarded(lambda state: self._converge(state, flush_idle=True))

    def _on_start(self, _: ops.StartEvent) -> None:
        """Replace idle runners left from before a reboot, then reconcile."""
        flush_idle = bool(self._stored.started)
        self._stored.started = True
        self._guarded(lambda state: self._converge(state, flush_idle=flush_idle))

    def _on_converge(self, _: ops.EventBase) -> None:
        """Config, relations, secrets, storage or the timer changed: converge."""
        self._guarded(self._converge)

    def _on_secret_changed(self, event: ops.SecretChangedEvent) -> None:
        """An option's secret has a new revision: converge (the mongodb lib handles its own)."""
        if charm_state.watches_secret(self.config, event.secret):
            self._guarded(self._converge)

    def _host_step(self, step: Callable[[], object]) -> None:
        """Run a host step that needs no valid state; a project error becomes status."""
        try:
            step()
        except errors.GithubRunnerError as exc:
            self._record_error(exc)

    def _on_stop(self, _: ops.StopEvent) -> None:
        """The unit goes away: remove the timer, the intake, every runner, then the services."""
        self._host_step(lambda: self.system.disable_timer(RECONCILE_EVENT))
        self._host_step(lambda: self.system.remove_intake(keep_port=False))
        self._guarded(lambda state: self._manager(state).flush(LXDFlushMode.FLUSH_BUSY))
        self._host_step(self.system.remove_repo_policy)
        self._host_step(self.system.remove_network_policy)
        self._host_step(self.system.remove_metrics_exporter)

    def _on_update_status(self, _: ops.UpdateStatusEvent) -> None:
        """Re-create a dead reconcile timer; converge if the config only now became usable.

        With the unit installed this makes no GitHub call. A valid state on a unit that never
        converged (e.g. the token secret was granted after deployment, which fires no event)
        converges now.
        """

        def check_timer(state: CharmState) -> None:
            if not self._stored.installed:
                self._converge(state)
            elif not self.system.timer_active(RECONCILE_EVENT):
                logger.warning("the reconcile timer is not active: re-creating it")
                self._ensure_timer(state)

        self._guarded(check_timer)

    def _ensure_timer(self, state: CharmState) -> None:
        """Install the reconcile timer (a run may take three intervals, at least 15 minutes)."""
        timeout = max(3 * state.reconcile_interval, 15)
        self.system.ensure_timer(RECONCILE_EVENT, state.reconcile_interval, timeout)

    def _ensure_installed(self, state: CharmState) -> tuple[RunnerManagerPort, RepoPolicyEndpoint]:
        """Make the host ready (LXD, storage, network, policy service, binary, image, timer)."""
        storage = (  # runner disks live on the cloud: no local storage is checked or mounted
            prepare_storage(state, self._attached_storage(), self.system, self.unit.name)
            if state.openstack is None
            else DETACHED_STORAGE_PATH
        )
        if not self._stored.installed:
            if state.openstack is None:
                self._progress("Setting up LXD")
                self.system.setup_lxd(storage)
            self.system.configure_logrotate()
            self.system.ensure_metrics_exporter()
        token, options = state.service_credentials(), state.repo_policy.model_dump()
        if state.openstack is None:
            # After LXD: runners reach the service on their network. Only here, with this state.
            net = self.system.ensure_runner_network(state.runner_network)
            policy = self.system.ensure_repo_policy(
                token, state.api_url, options, net.host_address
            )
            self.system.apply_network_policy(state, net, policy)  # the denylist, on the host
        else:  # servers on the cloud reach the unit on its own address
            listen = str(self.model.get_binding("juju-info").network.bind_address)
            policy = self.system.ensure_repo_policy(token, state.api_url, options, listen)
        self._ensure_intake(state)
        manager = self._manager(state, policy, storage)
        ensure_dependencies(manager, self._progress, first_install=not self._stored.installed)
        self._ensure_timer(state)
        self._stored.installed = True
        return manager, policy

    def _ensure_intake(self, state: CharmState) -> None:
        """Run the webhook intake in reactive mode with a webhook secret; remove it otherwise."""
        intake = intake_settings(state)
        port = self.system.ensure_intake(intake) if intake else None
        if port is None:
            self.system.remove_intake(keep_port=True)
        self.unit.set_ports(*([port] if port else []))
        self._stored.intake_url = charm_state.intake_url(self, port)

    def _converge(self, state: CharmState, flush_idle: bool = False) -> dict[str, Any]:
        """Install if needed, replace runners whose settings changed, reconcile."""
        manager, policy = self._ensure_installed(state)
        self._flush_previous_credentials(state, policy)
        shape = state.runner_shape_fingerprint()
        if flush_idle or (self._stored.shape and self._stored.shape != shape):
            manager.flush(LXDFlushMode.FLUSH_IDLE)
        self._stored.shape = shape
        return self._reconcile(state, manager)

    def _count(self, manager: RunnerManagerPort) -> dict[str, Any]:
        """Count the runners GitHub reports and keep the counts for the status."""
        counts = count_runners(manager.get_github_info())
        self._stored.counts = json.dumps(counts)
        url = self._stored.intake_url
        return {**counts, "webhook-url": url} if url else counts

    def _reconcile(self, state: CharmState, manager: RunnerManagerPort) -> dict[str, Any]:
        """Reconcile, refresh the runner counts shown in the status and clear old errors."""
        delta = manager.reconcile(state.virtual_machines, state.vm_resources)
        counts = self._count(manager)
        self._stored.error_status = self._stored.error_message = ""
        refusal = manager.quota_refusal() if isinstance(manager, CloudRefusals) else None
        if refusal:  # the cloud's quota, not a crash: shown until a reconcile fits in it
            fix = "raise the project's quota or lower virtual-machines; retrying each reconcile"
            self._stored.error_status, self._stored.error_message = "blocked", f"{refusal}: {fix}"
        return {"delta": delta, **counts}

    def _flush_previous_credentials(self, state: CharmState, policy: RepoPolicyEndpoint) -> None:
        """Remove every runner when the token, path or labels changed, with the old credentials.

        The manager that removes them has the previous GitHub credentials and the current
        policy endpoint: building it writes nothing back to the policy service.
        """
        fingerprint = state.credentials_fingerprint()
        if self._stored.credentials == fingerprint:
            return
        content = state.credentials_content()
        try:
            secret: ops.Secret | None = self.model.get_secret(label=PREVIOUS_CREDENTIALS_LABEL)
        except ops.SecretNotFoundError:
            secret = None
        if secret is not None and self._stored.credentials:
            previous = state.with_credentials(secret.get_content(refresh=True))
            self._progress("Removing the runners of the previous token, path or labels")
            manager = self._manager(previous, policy)
            flushed = manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)
            logger.info("removed %d runners of the previous credentials", flushed)
        elif self._stored.credentials:
            logger.warning("previous credentials lost: their runners are left to orphan cleanup")
        if secret is None:
            self.unit.add_secret(content, label=PREVIOUS_CREDENTIALS_LABEL)
        else:
            secret.set_content(content)
        self._stored.credentials = fingerprint

    # --- status --------------------------------------------------------------------------------

    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        """Set the unit status: the one place that decides it."""
        try:
            state = self._state()
        except errors.ConfigError as exc:
            event.add_status(status_for_error(exc))
            return
        if self.mongodb.relation is not None and state.reactive_config is None:
            event.add_status(
                ops.WaitingStatus("Waiting for the mongodb relation to provide a URI")
            )
        if self._stored.error_status:
            stored = self._stored.error_status, self._stored.error_message
            event.add_status(ops.StatusBase.from_name(*stored))
        if not self._stored.counts:
            event.add_status(ops.WaitingStatus("Waiting for the first reconciliation"))
            return
        counts, url = json.loads(self._stored.counts), self._stored.intake_url
        event.add_status(ops.ActiveStatus(status_message(counts, webhook_url=url)))

    # --- actions -------------------------------------------------------------------------------

    def _run_action(
        self, event: ops.ActionEvent, work: Callable[[CharmState], dict[str, Any]]
    ) -> None:
        """Run an action's work; a project error fails the action with the status message."""
        try:
            results = work(self._state())
        except errors.GithubRunnerError as exc:
            if not isinstance(exc, errors.ConfigError):
                self._record_error(exc)
            event.fail(status_for_error(exc).message)
            return
        event.set_results(results)

    def _on_check_runners_action(self, event: ops.ActionEvent) -> None:
        """Report the runners as GitHub sees them (nothing on the host changes)."""
        self._run_action(event, lambda state: self._count(self._manager(state)))

    def _on_reconcile_runners_action(self, event: ops.ActionEvent) -> None:
        """Reconcile now."""

        def work(state: CharmState) -> dict[str, Any]:
            event.log("Reconciling runners")
            return self._converge(state)

        self._run_action(event, work)

    def _actions(self, state: CharmState, event: ops.ActionEvent) -> RunnerActions:
        """Install if needed; return the actions' work on the unit's runner manager."""
        manager, _ = self._ensure_installed(state)
        return RunnerActions(manager, event.log, lambda: self._reconcile(state, manager))

    def _on_flush_runners_action(self, event: ops.ActionEvent) -> None:
        """Remove runners (per ``mode``), then reconcile."""
        mode = FLUSH_MODE_BY_ACTION_PARAM[event.params.get("mode", "busy-wait-repo-check")]
        self._run_action(event, lambda state: self._actions(state, event).flush(mode))

    def _on_update_runner_bin_action(self, event: ops.ActionEvent) -> None:
        """Update the runner application; replace idle runners when it changed."""
        self._run_action(event, lambda state: self._actions(state, event).update_runner_bin())

    def _on_update_dependencies_action(self, event: ops.ActionEvent) -> None:
        """Refresh the runner application and image; replace idle runners when they changed."""
        self._run_action(event, lambda state: self._actions(state, event).update_dependencies())


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerCharm)
