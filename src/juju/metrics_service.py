"""Install, run and remove the unit's Prometheus exporter (``python -m observability serve``).

The exporter serves the metrics state file the manager writes
(:mod:`observability.exporter`), on loopback where the cos-agent subordinate scrapes it; the
charm advertises :data:`METRICS_ENDPOINTS` in the cos-agent relation.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    render_unit,
    run_systemctl,
    uninstall,
)
from observability.exporter import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_STATE_FILE
from paths import REPO_ROOT

logger = logging.getLogger(__name__)

SERVICE_NAME = "github-runner-metrics"
METRICS_ENDPOINTS = ({"path": "/metrics", "port": DEFAULT_PORT},)


class MetricsExporterService:
    """The exporter of one unit, as a systemd service."""

    def __init__(
        self,
        unit_name: str,
        *,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        charm_dir: Path | None = None,
        state_file: Path = DEFAULT_STATE_FILE,
        systemctl: Systemctl = run_systemctl,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (for the unit description).
            unit_dir: Where the systemd unit is written.
            charm_dir: The charm's directory (its ``src`` holds the exporter's code).
            state_file: The metrics state file the manager writes.
            systemctl: The systemctl seam.
        """
        self.unit_name = unit_name
        self.unit_dir = unit_dir
        self.charm_dir = charm_dir or REPO_ROOT
        self.state_file = state_file
        self._systemctl = systemctl

    @property
    def unit_path(self) -> Path:
        """The systemd unit file."""
        return self.unit_dir / f"{SERVICE_NAME}.service"

    def render_unit(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
        """Render the systemd unit of the exporter."""
        context = {
            "unit": self.unit_name,
            "charm_dir": str(self.charm_dir),
            "python": sys.executable,
            "host": host,
            "port": port,
            "state_file": str(self.state_file),
        }
        return render_unit("metrics-exporter.service.j2", context)

    def ensure(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> bool:
        """Install (or update) and start the exporter; restart it only when its unit changed.

        Args:
            host: The address to bind: loopback, where the agent on the machine scrapes.
            port: The port.

        Returns:
            Whether the unit file changed.

        Raises:
            SubprocessError: If systemctl fails.
        """
        unit = self.render_unit(host, port)
        try:
            changed = self.unit_path.read_text(encoding="utf-8") != unit
        except FileNotFoundError:
            changed = True
        if changed:
            self.unit_path.parent.mkdir(parents=True, exist_ok=True)
            self.unit_path.write_text(unit, encoding="utf-8")
        activate(self._systemctl, f"{SERVICE_NAME}.service", changed)
        if changed:
            logger.info("metrics exporter (re)started on %s:%d", host, port)
        return changed

    def remove(self) -> None:
        """Stop and remove the exporter. Idempotent.

        Raises:
            SubprocessError: If systemctl fails while the service is installed.
        """
        uninstall(self._systemctl, f"{SERVICE_NAME}.service", [self.unit_path])
