"""Install, run and remove the unit's Prometheus exporter (``python -m observability serve``).

The exporter serves the metrics state file the unit's manager writes (in the unit's own state
directory, :meth:`config.settings.RunnerManagerSettings.for_unit`), on loopback where the
cos-agent subordinate scrapes it. Every unit on a machine has its own service
(``github-runner-metrics-<app>-<unit>``) and port (the first from 9464 no other service of the
machine remembers, then remembered: :mod:`juju.unit_ports`); the charm advertises it in the
cos-agent relation (:meth:`MetricsExporterService.metrics_endpoints`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from config.settings import RunnerManagerSettings
from juju.policy_host import CONFIG_ROOT, unit_slug
from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    render_unit,
    run_systemctl,
    uninstall,
)
from juju.unit_ports import PortFree, port_is_free, remembered_port
from observability.exporter import DEFAULT_HOST, DEFAULT_PORT
from observability.state import STATE_FILE_NAME
from paths import REPO_ROOT

logger = logging.getLogger(__name__)

SERVICE_PREFIX = "github-runner-metrics"


class MetricsExporterService:
    """The exporter of one unit, as a systemd service."""

    def __init__(
        self,
        unit_name: str,
        *,
        config_root: Path = CONFIG_ROOT,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        charm_dir: Path | None = None,
        state_file: Path | None = None,
        systemctl: Systemctl = run_systemctl,
        port_free: PortFree = port_is_free,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (``app/0``): it names the service and its files.
            config_root: Where every unit of the machine keeps its services' files
                (``<root>/<app>-<unit>/metrics/port``): ports are chosen apart there.
            unit_dir: Where the systemd unit is written.
            charm_dir: The charm's directory (its ``src`` holds the exporter's code).
            state_file: The metrics state file the manager writes (the unit's own when not
                given).
            systemctl: The systemctl seam.
            port_free: Whether a port can be listened on (a real bind when not given).
        """
        app, _, unit = unit_name.rpartition("/")
        self.unit_name = unit_name
        self.service_name = f"{SERVICE_PREFIX}-{unit_slug(unit_name)}"
        self.config_root = config_root
        self.config_dir = config_root / unit_slug(unit_name) / "metrics"
        self.unit_dir = unit_dir
        self.charm_dir = charm_dir or REPO_ROOT
        self.state_file = state_file or (
            RunnerManagerSettings.for_unit(app, int(unit)).state_dir / STATE_FILE_NAME
        )
        self._systemctl = systemctl
        self._port_free = port_free

    @property
    def unit_path(self) -> Path:
        """The systemd unit file."""
        return self.unit_dir / f"{self.service_name}.service"

    def port(self, host: str = DEFAULT_HOST) -> int:
        """Return the exporter's port: remembered, else the first from 9464 free on the machine.

        Args:
            host: The address it listens on.

        Returns:
            The port.

        Raises:
            SubprocessError: If no port is free.
        """
        return remembered_port(
            self.config_root, self.config_dir, host, DEFAULT_PORT, port_free=self._port_free
        )

    def metrics_endpoints(self) -> list[dict[str, object]]:
        """What the charm advertises in the cos-agent relation: this unit's /metrics."""
        return [{"path": "/metrics", "port": self.port()}]

    def render_unit(self, host: str = DEFAULT_HOST, port: int | None = None) -> str:
        """Render the systemd unit of the exporter."""
        context = {
            "unit": self.unit_name,
            "charm_dir": str(self.charm_dir),
            "python": sys.executable,
            "host": host,
            "port": self.port(host) if port is None else port,
            "state_file": str(self.state_file),
        }
        return render_unit("metrics-exporter.service.j2", context)

    def ensure(self, host: str = DEFAULT_HOST, port: int | None = None) -> bool:
        """Install (or update) and start the exporter; restart it only when its unit changed.

        Args:
            host: The address to bind: loopback, where the agent on the machine scrapes.
            port: The port (the unit's remembered one when not given).

        Returns:
            Whether the unit file changed.

        Raises:
            SubprocessError: If systemctl fails.
        """
        port = self.port(host) if port is None else port
        unit = self.render_unit(host, port)
        try:
            changed = self.unit_path.read_text(encoding="utf-8") != unit
        except FileNotFoundError:
            changed = True
        if changed:
            self.unit_path.parent.mkdir(parents=True, exist_ok=True)
            self.unit_path.write_text(unit, encoding="utf-8")
        activate(self._systemctl, f"{self.service_name}.service", changed)
        if changed:
            logger.info("metrics exporter (re)started on %s:%d", host, port)
        return changed

    def remove(self) -> None:
        """Stop and remove the exporter. Idempotent.

        Raises:
            SubprocessError: If systemctl fails while the service is installed.
        """
        uninstall(self._systemctl, f"{self.service_name}.service", [self.unit_path])
