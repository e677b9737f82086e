"""Install, run and remove the pre-job repository policy service on the unit (systemd).

The service token (the charm's credential for handing out one-time tokens) is created once per
unit and kept in a root-only file; the GitHub credentials (a token or a GitHub App's, 0600) and
the policy file are rewritten when they change, and the service restarts only then (systemd
copies credentials at start). When the unit stops, the service goes with its files (the GitHub
credentials among them).

Several applications (and units) may share a machine: each unit has its own service
(``github-runner-repo-policy-<app>-<unit>``), files (``/etc/github-runner/<app>-<unit>/``),
state directory and port. The port is chosen once (the first from 8567 that no sibling unit
remembers and that is free) and remembered in the unit's files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import RunnerManagerSettings
from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    render_unit,
    run_systemctl,
    uninstall,
)
from juju.unit_ports import PortFree, port_is_free, remembered_port
from openstack_backend.metrics_push import push_key_path, stores_dir
from paths import REPO_ROOT

logger = logging.getLogger(__name__)

SERVICE_PREFIX = "github-runner-repo-policy"
LEGACY_SERVICE_NAME = SERVICE_PREFIX  # one service per machine, before units had their own
DEFAULT_PORT = 8567
CONFIG_ROOT = Path("/etc/github-runner")
PORT_FILE = "port"
CONFIG_FILES = ("github-token", "service-token", "policy.json", PORT_FILE)


def unit_slug(unit_name: str) -> str:
    """Return ``<app>-<unit>`` for ``<app>/<unit>``: a file, unit and directory name part."""
    return unit_name.replace("/", "-")


@dataclass(frozen=True)
class RepoPolicyEndpoint:
    """Where runners reach the policy service, and the charm's token for it.

    Attributes:
        url: Base URL of the service as runners reach it.
        service_token: The charm's token for one-time tokens. Secret.
    """

    url: str
    service_token: str

    def __repr__(self) -> str:
        """Hide the token."""
        return f"RepoPolicyEndpoint(url={self.url!r}, service_token=***)"


def _write(path: Path, content: str, mode: int) -> bool:
    """Write ``content`` atomically with ``mode`` if it differs; return whether it changed."""
    try:
        if path.read_text(encoding="utf-8") == content:
            os.chmod(path, mode)
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


class RepoPolicyService:
    """The policy service of one unit, as a systemd service."""

    def __init__(
        self,
        unit_name: str,
        *,
        config_root: Path = CONFIG_ROOT,
        config_dir: Path | None = None,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        charm_dir: Path | None = None,
        systemctl: Systemctl = run_systemctl,
        port_free: PortFree = port_is_free,
        state_dir: Path | None = None,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (``app/0``): it names the service and its files.
            config_root: Where every unit of the machine keeps its files
                (``<root>/<app>-<unit>/repo-policy``): ports are chosen apart there.
            config_dir: Where this unit's token, policy and port files live (under
                ``config_root`` when not given).
            unit_dir: Where the systemd unit is written.
            charm_dir: The charm's directory (its ``src`` holds the service's code).
            systemctl: The systemctl seam.
            port_free: Whether a port can be listened on (a real bind when not given).
            state_dir: The unit's state directory (``RunnerManagerSettings.for_unit``'s when
                not given): the service writes the metrics its OpenStack runners push into the
                stores there and reads (or makes) the unit's push key there
                (``openstack_backend.metrics_push``).
        """
        self.unit_name = unit_name
        self.slug = unit_slug(unit_name)
        self.service_name = f"{SERVICE_PREFIX}-{self.slug}"
        self.config_root = config_root
        self.config_dir = config_dir or config_root / self.slug / "repo-policy"
        self.unit_dir = unit_dir
        self.charm_dir = charm_dir or REPO_ROOT
        self._systemctl = systemctl
        self._port_free = port_free
        if state_dir is None:
            app, _, number = unit_name.rpartition("/")
            state_dir = RunnerManagerSettings.for_unit(app, int(number)).state_dir
        self.state_dir = state_dir

    @property
    def unit_path(self) -> Path:
        """The systemd unit file."""
        return self.unit_dir / f"{self.service_name}.service"

    def port(self, host: str) -> int:
        """Return the unit's port: remembered, else the first from 8567 free on the machine.

        Args:
            host: The address the service listens on (where a port must be free).

        Returns:
            The port (see :func:`juju.unit_ports.remembered_port`).

        Raises:
            SubprocessError: If no port is free.
        """
        return remembered_port(
            self.config_root, self.config_dir, host, DEFAULT_PORT, port_free=self._port_free
        )

    def service_token(self) -> str:
        """Return the unit's service token, creating it on first use."""
        path = self.config_dir / "service-token"
        try:
            token = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            token = ""
        if not token:
            token = secrets.token_urlsafe(32)
            _write(path, token, 0o600)
        return token

    def ensure(
        self,
        *,
        github_token: str,
        github_api_url: str,
        policy: dict[str, Any],
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> RepoPolicyEndpoint:
        """Install (or update) and start the service; restart it only when something changed.

        Args:
            github_token: The charm's GitHub credentials (``CharmState.service_credentials``:
                the token, or the GitHub App's credentials, with which the service renews its
                own installation tokens). Secret: written 0600, reaching the service as a
                systemd credential, never as an argument.
            github_api_url: The GitHub API base URL.
            policy: The policy options (``allow_pull_request_target``, ...).
            host: The address to listen on: loopback for containers, the LXD bridge for VMs.
            port: The port to listen on (the unit's own, see :meth:`port`, when not given).

        Returns:
            Where runners reach the service and the charm's token for it.

        Raises:
            SubprocessError: If systemctl fails.
        """
        self._remove_legacy()
        port = self.port(host) if port is None else port
        token = self.service_token()
        changed = _write(self.config_dir / "github-token", github_token, 0o600)
        config_file = self.config_dir / "policy.json"
        _write(config_file, json.dumps(policy, sort_keys=True, indent=1) + "\n", 0o644)
        unit = self.render_unit(github_api_url, host, port)
        changed = _write(self.unit_path, unit, 0o644) or changed
        activate(self._systemctl, f"{self.service_name}.service", changed)
        if changed:
            logger.info("repo policy service (re)started on %s:%d", host, port)
        return RepoPolicyEndpoint(url=f"http://{host}:{port}", service_token=token)

    def remove(self) -> None:
        """Stop and remove the service, its tokens and its policy file. Idempotent.

        The token files go first: a running service holds copies (systemd credentials).

        Raises:
            SubprocessError: If systemctl fails while the service is installed.
        """
        for name in CONFIG_FILES:
            (self.config_dir / name).unlink(missing_ok=True)
        uninstall(self._systemctl, f"{self.service_name}.service", [self.unit_path])

    def _remove_legacy(self) -> None:
        """Remove this unit's service of before units had their own names, if it is there.

        The old service (``github-runner-repo-policy``, files in ``<root>/repo-policy``) was
        one per machine; it is this unit's when its description names this unit.
        """
        legacy = self.unit_dir / f"{LEGACY_SERVICE_NAME}.service"
        try:
            text = legacy.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        if f"Pre-job repository policy service of {self.unit_name}\n" not in text:
            return
        for name in CONFIG_FILES:
            (self.config_root / "repo-policy" / name).unlink(missing_ok=True)
        uninstall(self._systemctl, f"{LEGACY_SERVICE_NAME}.service", [legacy])
        logger.info("removed the machine-wide policy service of %s", self.unit_name)

    def render_unit(self, github_api_url: str, host: str, port: int) -> str:
        """Render the systemd unit of the service."""
        context = {
            "unit": self.unit_name,
            "charm_dir": str(self.charm_dir),
            "python": sys.executable,
            "host": host,
            "port": port,
            "service_token_file": str(self.config_dir / "service-token"),
            "github_token_file": str(self.config_dir / "github-token"),
            "github_api_url": github_api_url,
            "config_file": str(self.config_dir / "policy.json"),
            "state_directory": self.service_name,
            "metrics_stores": str(stores_dir(self.state_dir)),
            "metrics_push_key": str(push_key_path(self.state_dir)),
            "metrics_push_key_dir": str(push_key_path(self.state_dir).parent),
        }
        return render_unit("repo-policy.service.j2", context)
