"""The host the charm drives besides the runner manager: LXD, RAM disk, logrotate, timer, policy.

:class:`SystemPort` is the seam the charm sees (tests replace it with a fake); :class:`HostSystem`
is the real implementation. No ``ops`` here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import errors
from errors import SubprocessError
from juju.event_timer import EventTimer
from juju.intake_host import IntakeService, IntakeSettings
from juju.metrics_service import MetricsExporterService
from juju.network_policy import NetworkPolicyHost, exempt_hosts
from juju.policy_host import RepoPolicyEndpoint, RepoPolicyService
from paths import SCRIPTS_DIR, TEMPLATES_DIR

if TYPE_CHECKING:  # juju.runner_network imports lxd (pylxd): only when a hook needs it
    from config.state import CharmState
    from juju.runner_network import RunnerNetwork

logger = logging.getLogger(__name__)

SETUP_LXD_SCRIPT = SCRIPTS_DIR / "setup-lxd.sh"
SETUP_LXD_TIMEOUT_SECONDS = 1200
POOL_SHARE_TENTHS = 9  # the unit's LXD pool takes 90 % of the runner storage
LOGROTATE_PATH = Path("/etc/logrotate.d/github-runner-metrics")
# The metrics log is appended to by opening it for each event: rotation by rename loses nothing.
LOGROTATE_TEMPLATE = TEMPLATES_DIR / "logrotate-github-runner-metrics"


class SystemPort(Protocol):
    """What the charm needs of the host besides the runner manager."""

    def setup_lxd(self, storage: Path) -> None:
        """Install, start and initialise LXD (idempotent); the unit's pool lives in ``storage``."""

    def disk_space(self, path: Path) -> int:
        """Return the size in bytes of the filesystem holding ``path``."""

    def ensure_runner_network(self, network: str) -> RunnerNetwork:
        """Make the unit's runner bridge unless ``network`` names one; return it (idempotent)."""

    def ensure_ram_disk(self, path: Path, size_bytes: int) -> None:
        """Mount (or resize) the tmpfs at ``path`` holding runner disks."""

    def available_memory(self, path: Path) -> int:
        """Return the bytes a RAM disk at ``path`` may use (free memory plus what it holds)."""

    def configure_logrotate(self) -> None:
        """Rotate the metrics log and the runner logs."""

    def ensure_timer(self, event_name: str, interval_minutes: int, timeout_minutes: int) -> None:
        """Install (or update) the timer dispatching ``event_name``; idempotent."""

    def disable_timer(self, event_name: str) -> None:
        """Remove the timer dispatching ``event_name``; idempotent."""

    def timer_active(self, event_name: str) -> bool:
        """Return whether the timer dispatching ``event_name`` is active."""

    def ensure_repo_policy(
        self, github_token: str, github_api_url: str, policy: dict[str, Any], listen: str
    ) -> RepoPolicyEndpoint:
        """Run the pre-job policy service on ``listen``; return where runners reach it."""

    def remove_repo_policy(self) -> None:
        """Stop and remove the pre-job policy service and its files; idempotent."""

    def apply_network_policy(
        self, state: CharmState, network: RunnerNetwork, policy: RepoPolicyEndpoint
    ) -> None:
        """Enforce the denylist on the runner network, on the host (replaces; idempotent)."""

    def remove_network_policy(self) -> None:
        """Remove the unit's network policy rules; idempotent."""

    def ensure_metrics_exporter(self) -> None:
        """Install and run the unit's Prometheus exporter on loopback; idempotent."""

    def remove_metrics_exporter(self) -> None:
        """Stop and remove the unit's Prometheus exporter; idempotent."""

    def metrics_endpoints(self) -> list[dict[str, object]]:
        """Where the agent scrapes this unit's exporter (its own port on the machine)."""

    def ensure_intake(self, settings: IntakeSettings) -> int:
        """Install and run the unit's webhook intake; return its port; idempotent."""

    def remove_intake(self, keep_port: bool = True) -> None:
        """Stop and remove the webhook intake and its secret files; idempotent."""


def run(cmd: list[str], timeout: int = 60) -> None:
    """Run a host command.

    Args:
        cmd: The command (never holding a secret).
        timeout: Seconds before giving up.

    Raises:
        SubprocessError: If it cannot run, times out or fails.
    """
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SubprocessError(cmd, -1, str(exc)) from exc
    if result.returncode != 0:
        raise SubprocessError(cmd, result.returncode, result.stderr[-2000:])


class HostSystem:
    """The real host: the setup script, mounts, /proc, logrotate and systemd."""

    def __init__(
        self,
        unit_name: str,
        *,
        timer: EventTimer | None = None,
        meminfo: Path = Path("/proc/meminfo"),
        logrotate: Path = LOGROTATE_PATH,
        repo_policy: RepoPolicyService | None = None,
        metrics_exporter: MetricsExporterService | None = None,
        network_policy: NetworkPolicyHost | None = None,
        intake: IntakeService | None = None,
    ) -> None:
        """Build it.

        Args:
            unit_name: The unit the reconcile timer dispatches events to.
            timer: The timer manager (built for ``unit_name`` when not given).
            meminfo: Where the kernel reports memory.
            logrotate: The logrotate configuration file to write.
            repo_policy: The policy service (built for ``unit_name`` when not given).
            metrics_exporter: The Prometheus exporter (built for ``unit_name`` when not given).
            network_policy: The unit's nftables rules (built for ``unit_name`` when not given).
            intake: The webhook intake (built for ``unit_name`` when not given).
        """
        self._unit_name = unit_name
        self._network_policy = network_policy or NetworkPolicyHost(unit_name)
        self._repo_policy = repo_policy or RepoPolicyService(unit_name)
        self._metrics_exporter = metrics_exporter or MetricsExporterService(unit_name)
        self._intake = intake or IntakeService(unit_name)
        self._timer = timer or EventTimer(unit_name)
        self._meminfo = meminfo
        self._logrotate = logrotate

    @property
    def _unit(self) -> tuple[str, int]:
        app, _, number = self._unit_name.rpartition("/")
        return app, int(number)

    def setup_lxd(self, storage: Path) -> None:
        """Run scripts/setup-lxd.sh (idempotent) with the unit's pool under ``storage``.

        The pool (``lxd.unit_resource_name``: ``ghr-`` + 10 hex digits, per application and
        unit) holds the runners' root disks on the storage ``runner-storage`` chose: the Juju
        ``runner`` storage or the RAM disk. Its size: 90 % of that filesystem (at least 1 GiB).

        Args:
            storage: The runner storage directory.
        """
        from lxd.network import unit_resource_name  # noqa: PLC0415 - pylxd only when needed

        pool = unit_resource_name(*self._unit)
        size_gib = max(1, self.disk_space(storage) * POOL_SHARE_TENTHS // 10 >> 30)
        logger.info("setting up LXD (pool %s: %d GiB under %s)", pool, size_gib, storage)
        command = [str(SETUP_LXD_SCRIPT), "--source", str(storage), "--pool", pool]
        run([*command, "--size", f"{size_gib}GiB"], timeout=SETUP_LXD_TIMEOUT_SECONDS)

    def disk_space(self, path: Path) -> int:
        """Return the size of the filesystem holding ``path``.

        Args:
            path: A directory.

        Returns:
            Bytes.
        """
        stat = os.statvfs(path)
        return stat.f_blocks * stat.f_frsize

    def ensure_runner_network(self, network: str) -> RunnerNetwork:
        """Make the unit's bridge unless ``network`` names one (see :mod:`juju.runner_network`).

        Args:
            network: The ``network`` option.

        Returns:
            The network and the host's address on it.
        """
        from juju.runner_network import ensure_runner_network  # noqa: PLC0415 - pylxd
        from lxd import LxdClient  # noqa: PLC0415 - pylxd only when needed

        return ensure_runner_network(LxdClient().resources, network, *self._unit)

    def ensure_ram_disk(self, path: Path, size_bytes: int) -> None:
        """Mount the tmpfs, or resize it when its size differs.

        Args:
            path: The mount point.
            size_bytes: Its size.
        """
        path.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(path):
            run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)])
            return
        stat = os.statvfs(path)
        if abs(stat.f_blocks * stat.f_frsize - size_bytes) >= stat.f_frsize:
            run(["mount", "-o", f"remount,size={size_bytes}", str(path)])

    def available_memory(self, path: Path) -> int:
        """Return MemAvailable plus what the RAM disk at ``path`` already holds.

        Args:
            path: The RAM disk mount point.

        Returns:
            Bytes.
        """
        meminfo = self._meminfo.read_text()
        line = next(x for x in meminfo.splitlines() if x.startswith("MemAvailable:"))
        available = int(line.split()[1]) * 1024
        if os.path.ismount(path):
            stat = os.statvfs(path)
            available += (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        return available

    def configure_logrotate(self) -> None:
        """Write the logrotate configuration."""
        self._logrotate.write_text(LOGROTATE_TEMPLATE.read_text(encoding="utf-8"))

    def ensure_timer(self, event_name: str, interval_minutes: int, timeout_minutes: int) -> None:
        """Install the timer (see :meth:`EventTimer.ensure_event_timer`).

        Args:
            event_name: The event.
            interval_minutes: Minutes between dispatches.
            timeout_minutes: Minutes after which a run is stopped.
        """
        self._timer.ensure_event_timer(event_name, interval_minutes, timeout_minutes)

    def disable_timer(self, event_name: str) -> None:
        """Remove the timer.

        Args:
            event_name: The event.
        """
        self._timer.disable_event_timer(event_name)

    def timer_active(self, event_name: str) -> bool:
        """Return whether the timer is active.

        Args:
            event_name: The event.

        Returns:
            Whether it is.
        """
        return self._timer.is_active(event_name)

    def ensure_repo_policy(
        self, github_token: str, github_api_url: str, policy: dict[str, Any], listen: str
    ) -> RepoPolicyEndpoint:
        """Install and run the policy service where runners reach it.

        Runners (VMs and test-mode containers alike) reach the host on their network, so the
        service listens on the host's address there (never on every address).

        Args:
            github_token: The charm's GitHub token. Secret.
            github_api_url: The GitHub API base URL.
            policy: The policy options.
            listen: The host's address on the runner network.

        Returns:
            Where runners reach the service and the charm's token for it.
        """
        return self._repo_policy.ensure(
            github_token=github_token, github_api_url=github_api_url, policy=policy, host=listen
        )

    def remove_repo_policy(self) -> None:
        """Stop and remove the policy service (see :meth:`RepoPolicyService.remove`)."""
        self._repo_policy.remove()

    def apply_network_policy(
        self, state: CharmState, network: RunnerNetwork, policy: RepoPolicyEndpoint
    ) -> None:
        """Enforce the denylist (see :mod:`juju.network_policy`).

        GitHub, the policy service, the host's address on the network (its DNS and DHCP) and
        the model's proxies stay reachable whatever the denylist says.

        Args:
            state: The charm state (denylist, GitHub URL, proxies).
            network: The runner network.
            policy: Where runners reach the policy service.
        """
        exempt = exempt_hosts(
            state.github_url, policy.url, network.host_address, state.proxy.http, state.proxy.https
        )
        self._network_policy.apply(network.name, state.denylist, exempt)

    def remove_network_policy(self) -> None:
        """Remove the unit's nftables table (see :meth:`NetworkPolicyHost.remove`)."""
        self._network_policy.remove()

    def ensure_metrics_exporter(self) -> None:
        """Install and run the exporter (see :meth:`MetricsExporterService.ensure`)."""
        self._metrics_exporter.ensure()

    def remove_metrics_exporter(self) -> None:
        """Stop and remove the exporter (see :meth:`MetricsExporterService.remove`)."""
        self._metrics_exporter.remove()

    def metrics_endpoints(self) -> list[dict[str, object]]:
        """This unit's /metrics (see :meth:`MetricsExporterService.metrics_endpoints`)."""
        return self._metrics_exporter.metrics_endpoints()

    def ensure_intake(self, settings: IntakeSettings) -> int:
        """Install and run the intake (see :meth:`IntakeService.ensure`).

        Args:
            settings: What it runs with.

        Returns:
            Its port.

        Raises:
            ConfigError: This build carries no intake program to run (``webhook-secret`` is
                refused rather than a service started that cannot work).
        """
        if importlib.util.find_spec("intake") is None:
            raise errors.ConfigError(
                "webhook-secret", "this build has no webhook intake to run; unset the option"
            )
        return self._intake.ensure(settings)

    def remove_intake(self, keep_port: bool = True) -> None:
        """Stop and remove the intake (see :meth:`IntakeService.remove`).

        Args:
            keep_port: Keep its remembered port (False: the unit goes away).
        """
        self._intake.remove(keep_port=keep_port)
