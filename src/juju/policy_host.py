"""Install, run and remove the pre-job repository policy service on the unit (systemd).

The service token (the charm's credential for handing out one-time tokens) is created once per
unit and kept in a root-only file; the GitHub token and the policy file are rewritten when they
change, and the service restarts only then (systemd copies credentials at start). When the unit
stops, the service goes with its files (the GitHub token among them).
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

from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    render_unit,
    run_systemctl,
    uninstall,
)
from paths import REPO_ROOT

logger = logging.getLogger(__name__)

SERVICE_NAME = "github-runner-repo-policy"
DEFAULT_PORT = 8567
CONFIG_DIR = Path("/etc/github-runner/repo-policy")
CONFIG_FILES = ("github-token", "service-token", "policy.json")


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
        config_dir: Path = CONFIG_DIR,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        charm_dir: Path | None = None,
        systemctl: Systemctl = run_systemctl,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (for the unit description).
            config_dir: Where the token files and the policy file live.
            unit_dir: Where the systemd unit is written.
            charm_dir: The charm's directory (its ``src`` holds the service's code).
            systemctl: The systemctl seam.
        """
        self.unit_name = unit_name
        self.config_dir = config_dir
        self.unit_dir = unit_dir
        self.charm_dir = charm_dir or REPO_ROOT
        self._systemctl = systemctl

    @property
    def unit_path(self) -> Path:
        """The systemd unit file."""
        return self.unit_dir / f"{SERVICE_NAME}.service"

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
        port: int = DEFAULT_PORT,
    ) -> RepoPolicyEndpoint:
        """Install (or update) and start the service; restart it only when something changed.

        Args:
            github_token: The charm's GitHub token (the service reads GitHub with it). Secret.
            github_api_url: The GitHub API base URL.
            policy: The policy options (``allow_pull_request_target``, ...).
            host: The address to listen on: loopback for containers, the LXD bridge for VMs.
            port: The port to listen on.

        Returns:
            Where runners reach the service and the charm's token for it.

        Raises:
            SubprocessError: If systemctl fails.
        """
        token = self.service_token()
        changed = _write(self.config_dir / "github-token", github_token, 0o600)
        config_file = self.config_dir / "policy.json"
        _write(config_file, json.dumps(policy, sort_keys=True, indent=1) + "\n", 0o644)
        unit = self.render_unit(github_api_url, host, port)
        changed = _write(self.unit_path, unit, 0o644) or changed
        activate(self._systemctl, f"{SERVICE_NAME}.service", changed)
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
        uninstall(self._systemctl, f"{SERVICE_NAME}.service", [self.unit_path])

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
        }
        return render_unit("repo-policy.service.j2", context)
