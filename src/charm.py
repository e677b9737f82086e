#!/usr/bin/env python3
"""The github-runner charm: observes Juju events, runs actions and sets the unit status.

Handlers build a :class:`CharmState`, call the runner manager and record what went wrong; the
status is decided in one place, :meth:`GithubRunnerCharm._on_collect_unit_status`. Two seams are
class attributes a test subclass replaces: ``manager_factory`` (the runner manager) and
``system_factory`` (the host: LXD setup, RAM disk, logrotate, the reconcile timer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import ops

import charm_state
import errors
from charm_state import COS_AGENT_RELATION
from charms.github_runner.v0.cos_agent import COSAgentProvider
from charms.github_runner.v0.mongodb import MongoDBRequirer
from github_api.types import GitHubRunnerStatus, RunnerApplication
from juju.host import HostSystem, SystemPort
from manager.state import CharmState, RunnerStorage
from metrics.events import METRICS_LOG_PATH
from runner_manager_type import (
    FLUSH_MODE_BY_ACTION_PARAM,
    LXDFlushMode,
    LXDRunnerManagerConfig,
    RunnerInfo,
)
from runner_type import VirtualMachineResources, size_in_bytes

logger = logging.getLogger(__name__)

RECONCILE_EVENT = "reconcile-runners"
PREVIOUS_CREDENTIALS_LABEL = "previous-credentials"
RAM_DISK_PATH = Path("/var/lib/github-runner/ram-disk")
DETACHED_STORAGE_PATH = Path("/var/lib/github-runner/no-storage")  # at stop, storage may be gone


class RunnerManagerPort(Protocol):
    """What the charm needs of the runner manager (the seed API of ``RunnerManager``)."""

    runner_bin_path: Path
    cron_path: Path

    def reconcile(self, quantity: int, resources: VirtualMachineResources) -> int: ...  # noqa: D102
    def flush(self, mode: LXDFlushMode = LXDFlushMode.FLUSH_IDLE) -> int: ...  # noqa: D102
    def get_github_info(self) -> Iterator[RunnerInfo]: ...  # noqa: D102
    def get_latest_runner_bin_url(self, os_name: str = "linux") -> RunnerApplication: ...  # noqa: D102
    def update_runner_bin(self, binary: RunnerApplication) -> None: ...  # noqa: D102
    def check_runner_bin(self) -> bool: ...  # noqa: D102
    def runner_bin_version(self) -> str | None: ...  # noqa: D102
    def has_runner_image(self) -> bool: ...  # noqa: D102
    def build_runner_image(self) -> None: ...  # noqa: D102
    def schedule_build_runner_image(self) -> None: ...  # noqa: D102


def create_runner_manager(
    app_name: str, unit: int, config: LXDRunnerManagerConfig
) -> RunnerManagerPort:
    """Build the real runner manager (imported lazily: it pulls in LXD and GitHub clients)."""
    from runner_manager import RunnerManager  # noqa: PLC0415

    return RunnerManager(app_name, unit, config)


def status_for_error(exc: errors.GithubRunnerError) -> ops.StatusBase:
    """Map a project error to the unit status that says why (the only such mapping)."""
    retry = "; retrying at the next reconcile"
    if isinstance(
        exc,
        errors.ConfigError
        | errors.GithubTokenError
        | errors.GithubPermissionError
        | errors.GithubRateLimitError
        | errors.LXDUnavailableError,
    ):
        return ops.BlockedStatus(str(exc))
    if isinstance(exc, errors.GithubClientError):
        return ops.WaitingStatus(f"GitHub API error: {exc}{retry}")
    if isinstance(exc, errors.LXDError):
        return ops.WaitingStatus(f"LXD error: {exc}{retry}")
    if isinstance(exc, errors.RunnerError | errors.ReactiveError):
        return ops.WaitingStatus(f"{exc}{retry}")
    return ops.BlockedStatus(str(exc))


def _counts(infos: Iterable[RunnerInfo]) -> dict[str, Any]:
    """Count runners by GitHub status."""
    runners = list(infos)
    online = [r for r in runners if r.status == GitHubRunnerStatus.ONLINE]
    offline = [r for r in runners if r.status == GitHubRunnerStatus.OFFLINE]
    return {
        "online": len(online),
        "offline": len(offline),
        "unknown": len(runners) - len(online) - len(offline),
        "busy": sum(1 for r in online if r.busy),
        "idle": sum(1 for r in online if not r.busy),
        "runners": ",".join(sorted(r.name for r in runners)),
    }


class ReconcileRunnersEvent(ops.EventBase):
    """Dispatched by the reconcile timer (``juju-exec``)."""


class GithubRunnerCharmEvents(ops.CharmEvents):
    """The charm's events, with the custom ``reconcile_runners``."""

    reconcile_runners = ops.EventSource(ReconcileRunnersEvent)


class GithubRunnerCharm(ops.CharmBase):
    """Runs GitHub Actions self-hosted runners as ephemeral LXD instances."""

    on = GithubRunnerCharmEvents()
    _stored = ops.StoredState()  # type: ignore[no-untyped-call]

    manager_factory: Callable[[str, int, LXDRunnerManagerConfig], RunnerManagerPort] = (
        create_runner_manager
    )
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
        )
        self.system = type(self).system_factory(self.unit.name)
        self.mongodb = MongoDBRequirer(self, relation_name="mongodb", database_name=self.app.name)
        self.cos_agent = COSAgentProvider(
            self,
            relation_name=COS_AGENT_RELATION,
            dashboard_dirs=("./src/grafana_dashboards",),
            log_alert_rules_dir="./src/loki_alert_rules",
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

    def _storage_location(self, state: CharmState) -> Path | None:
        """Return the directory that holds runner disks (None: juju storage not attached)."""
        if state.runner_storage == RunnerStorage.MEMORY:
            return RAM_DISK_PATH
        storages = self.model.storages["runner"]
        return storages[0].location if storages else None

    def _prepare_storage(self, state: CharmState) -> Path:
        """Check the runner storage and mount the RAM disk if needed; return its path."""
        location = self._storage_location(state)
        if location is None:
            raise errors.ConfigError(
                "runner-storage",
                "juju-storage needs the runner storage, which is not attached: run "
                f"`juju add-storage {self.unit.name} runner=<size>`",
            )
        if state.runner_storage == RunnerStorage.MEMORY:
            needed = size_in_bytes(state.vm_resources.disk) * max(state.virtual_machines, 1)
            available = self.system.available_memory(location)
            if needed > available:
                raise errors.ConfigError(
                    "runner-storage",
                    f"memory needs vm-disk x virtual-machines = {needed >> 20}MiB but only "
                    f"{available >> 20}MiB of memory is available: lower vm-disk or "
                    "virtual-machines",
                )
            self.system.ensure_ram_disk(location, needed)
        return location

    def _manager(self, state: CharmState, storage: Path | None = None) -> RunnerManagerPort:
        """Build the runner manager for a state (storage: the prepared runner storage)."""
        storage = storage or self._storage_location(state) or DETACHED_STORAGE_PATH
        policy = self.system.ensure_repo_policy(
            state.token.get_secret_value(),
            state.api_url,
            state.repo_policy.model_dump(),
            state.test_mode,
        )
        # The aliases scripts/build-lxd-image.sh uses by default.
        image = (
            "github-runner-test" if state.test_mode else f"github-runner-{state.base_image.value}"
        )
        config = LXDRunnerManagerConfig(
            charm_state=state,
            image=image,
            lxd_storage_path=storage,
            path=state.path,
            service_token=policy.service_token,
            token=state.token.get_secret_value(),
            dockerhub_mirror=state.dockerhub_mirror,
            reactive_config=state.reactive_config,
            repo_policy_url=policy.url,
        )
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
        """The token secret has a new revision: converge (the mongodb lib handles its own)."""
        token = str(self.config.get("token", ""))
        if token.startswith("secret:") and token.rsplit("/", 1)[-1].endswith(
            event.secret.unique_identifier or "?"
        ):
            self._guarded(self._converge)

    def _on_stop(self, _: ops.StopEvent) -> None:
        """Remove the timer and every runner."""
        try:
            self.system.disable_timer(RECONCILE_EVENT)
        except errors.GithubRunnerError as exc:
            self._record_error(exc)
        self._guarded(lambda state: self._manager(state).flush(LXDFlushMode.FLUSH_BUSY))

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

    def _ensure_installed(self, state: CharmState) -> RunnerManagerPort:
        """Make the host ready: LXD, storage, runner binary, image, timer, logrotate."""
        storage = self._prepare_storage(state)
        if not self._stored.installed:
            self._progress("Setting up LXD")
            self.system.setup_lxd(storage)
            self.system.configure_logrotate()
        manager = self._manager(state, storage)
        if not manager.check_runner_bin():
            self._progress("Downloading the runner binary")
            manager.update_runner_bin(manager.get_latest_runner_bin_url())
        if not manager.has_runner_image():
            self._progress("Building the runner image")
            manager.build_runner_image()
        if not self._stored.installed:
            manager.schedule_build_runner_image()
        self._ensure_timer(state)
        self._stored.installed = True
        return manager

    def _converge(self, state: CharmState, flush_idle: bool = False) -> dict[str, Any]:
        """Install if needed, replace runners whose settings changed, reconcile."""
        manager = self._ensure_installed(state)
        self._flush_previous_credentials(state)
        shape = state.runner_shape_fingerprint()
        if flush_idle or (self._stored.shape and self._stored.shape != shape):
            manager.flush(LXDFlushMode.FLUSH_IDLE)
        self._stored.shape = shape
        return self._reconcile(state, manager)

    def _reconcile(self, state: CharmState, manager: RunnerManagerPort) -> dict[str, Any]:
        """Reconcile, refresh the runner counts shown in the status and clear old errors."""
        delta = manager.reconcile(state.virtual_machines, state.vm_resources)
        counts = _counts(manager.get_github_info())
        self._stored.counts = json.dumps(counts)
        self._stored.error_status = self._stored.error_message = ""
        return {"delta": delta, **counts}

    def _flush_previous_credentials(self, state: CharmState) -> None:
        """Remove every runner when the token, path or labels changed, with the old credentials."""
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
            manager = self._manager(previous)
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
            status = ops.StatusBase.from_name(
                self._stored.error_status, self._stored.error_message
            )
            event.add_status(status)
        if not self._stored.counts:
            event.add_status(ops.WaitingStatus("Waiting for the first reconciliation"))
            return
        counts = json.loads(self._stored.counts)
        total = counts["online"] + counts["offline"] + counts["unknown"]
        message = f"{total} runners: {counts['idle']} idle, {counts['busy']} busy"
        event.add_status(ops.ActiveStatus(message))

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
        """Report the runners as GitHub sees them."""

        def work(state: CharmState) -> dict[str, Any]:
            manager = self._manager(state)
            counts = _counts(manager.get_github_info())
            self._stored.counts = json.dumps(counts)
            return counts

        self._run_action(event, work)

    def _on_reconcile_runners_action(self, event: ops.ActionEvent) -> None:
        """Reconcile now."""

        def work(state: CharmState) -> dict[str, Any]:
            event.log("Reconciling runners")
            return self._converge(state)

        self._run_action(event, work)

    def _on_flush_runners_action(self, event: ops.ActionEvent) -> None:
        """Remove runners (per ``mode``), then reconcile."""

        def work(state: CharmState) -> dict[str, Any]:
            mode = FLUSH_MODE_BY_ACTION_PARAM[event.params.get("mode", "busy-wait-repo-check")]
            manager = self._ensure_installed(state)
            event.log(f"Flushing runners ({mode.name})")
            flushed = manager.flush(mode)
            event.log(f"Flushed {flushed} runners; reconciling")
            return {"flushed": flushed, **self._reconcile(state, manager)}

        self._run_action(event, work)

    def _update_runner_bin(
        self, manager: RunnerManagerPort, event: ops.ActionEvent
    ) -> tuple[str, str, bool]:
        """Download the latest runner application if it differs from the current one."""
        previous = manager.runner_bin_version() or "none"
        latest = manager.get_latest_runner_bin_url()
        changed = latest.version != previous
        if changed:
            event.log(f"Updating the runner binary from {previous} to {latest.version}")
            manager.update_runner_bin(latest)
        return previous, latest.version, changed

    def _on_update_runner_bin_action(self, event: ops.ActionEvent) -> None:
        """Update the runner application; replace idle runners when it changed."""

        def work(state: CharmState) -> dict[str, Any]:
            manager = self._ensure_installed(state)
            previous, version, changed = self._update_runner_bin(manager, event)
            if changed:
                event.log("Replacing idle runners")
                manager.flush(LXDFlushMode.FLUSH_IDLE)
                self._reconcile(state, manager)
            return {"previous-version": previous, "version": version, "changed": changed}

        self._run_action(event, work)

    def _on_update_dependencies_action(self, event: ops.ActionEvent) -> None:
        """Refresh the runner application and image; replace idle runners when they changed."""

        def work(state: CharmState) -> dict[str, Any]:
            manager = self._ensure_installed(state)
            _, _, changed = self._update_runner_bin(manager, event)
            if changed or not manager.has_runner_image():
                event.log("Rebuilding the runner image")
                manager.build_runner_image()
                changed = True
            if changed:
                event.log("Replacing idle runners")
                manager.flush(LXDFlushMode.FLUSH_IDLE)
                self._reconcile(state, manager)
            return {"flush": changed}

        self._run_action(event, work)


if __name__ == "__main__":  # pragma: no cover
    ops.main(GithubRunnerCharm)
