"""Install, run and remove the unit's webhook intake (``python -m intake --config <file>``).

The intake receives GitHub's ``workflow_job`` webhooks and publishes queued jobs to the
reactive queue. It runs only in reactive mode (the mongodb relation gave a URI) with the
``webhook-secret`` option set (:func:`intake_settings` answers None otherwise, and the charm
removes the service). Like the policy service, every unit on a machine has its own service
(``github-runner-intake-<app>-<unit>``), files (``/etc/github-runner/<app>-<unit>/intake/``)
and port (the first from 8580 no other service of the machine remembers, then remembered:
:mod:`juju.unit_ports`; it outlives a removal so the URL set on GitHub stays right, until the
unit stops).

The webhook secret and the broker URI (it holds the broker's credentials) are written to files
readable by root only; the unit file and the JSON configuration only name those files. The
service restarts when any of them changes (it reads them at start). The job ledger lives in
the unit's state directory (:attr:`config.settings.RunnerManagerSettings.intake_ledger_path`),
where the reconcile safety net claims the jobs it enqueues too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import CharmState
from juju.policy_host import CONFIG_ROOT, unit_slug
from juju.systemd import (
    SYSTEMD_UNIT_DIR,
    Systemctl,
    activate,
    render_unit,
    run_systemctl,
    uninstall,
)
from juju.unit_ports import PORT_FILE, PortFree, port_is_free, remembered_port
from paths import REPO_ROOT
from reactive.message import unit_supported_labels

logger = logging.getLogger(__name__)

SERVICE_PREFIX = "github-runner-intake"
DEFAULT_PORT = 8580
LISTEN_HOST = "0.0.0.0"  # noqa: S104 -- GitHub delivers from outside; every request is signed
WEBHOOK_PATH = "/webhook"
MAX_BODY_BYTES = 1 << 20  # GitHub caps payloads at 25 MB; a workflow_job one is a few KiB
SECRET_FILE = "webhook-secret"  # noqa: S105 -- a file name
MQ_URI_FILE = "mq-uri"
CONFIG_FILE = "intake.json"
PRIVATE_FILES = (SECRET_FILE, MQ_URI_FILE, CONFIG_FILE)


@dataclass(frozen=True)
class IntakeFlavor:
    """A queue the intake routes jobs to, and the labels its runners offer.

    Attributes:
        queue_name: The kombu queue (the application name).
        labels: The labels runners of this flavor register with, lower-cased.
    """

    queue_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class IntakeSettings:
    """What the intake of a unit runs with.

    Attributes:
        webhook_secret: The HMAC secret set on GitHub's webhook. Secret.
        mq_uri: The kombu URI of the broker. Secret: it holds credentials.
        flavors: Where jobs go, by labels.
        api_url: The GitHub API base URL every job URL must start with.
        ledger: The sqlite ledger of enqueued jobs.
    """

    webhook_secret: SecretStr
    mq_uri: SecretStr
    flavors: tuple[IntakeFlavor, ...]
    api_url: str
    ledger: Path


def intake_settings(state: CharmState) -> IntakeSettings | None:
    """Return what the unit's intake runs with, or None when it must not run.

    Args:
        state: The charm state (reactive config, webhook secret, labels, API URL, unit).

    Returns:
        The settings in reactive mode with a webhook secret, else None.
    """
    reactive, webhook_secret = state.reactive_config, state.webhook_secret
    if reactive is None or webhook_secret is None:
        return None
    labels = unit_supported_labels(state)
    settings = RunnerManagerSettings.for_unit(state.app_name, state.unit_number)
    return IntakeSettings(
        webhook_secret=webhook_secret,
        mq_uri=reactive.mq_uri,
        flavors=(IntakeFlavor(reactive.queue_name, tuple(sorted(labels))),),
        api_url=state.api_url,
        ledger=settings.intake_ledger_path,
    )


def webhook_url(address: str, port: int) -> str:
    """Return the URL GitHub delivers to: ``http://<address>:<port>/webhook``."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{WEBHOOK_PATH}"


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


class IntakeService:
    """The webhook intake of one unit, as a systemd service."""

    def __init__(
        self,
        unit_name: str,
        *,
        config_root: Path = CONFIG_ROOT,
        unit_dir: Path = SYSTEMD_UNIT_DIR,
        charm_dir: Path | None = None,
        systemctl: Systemctl = run_systemctl,
        port_free: PortFree = port_is_free,
    ) -> None:
        """Build it.

        Args:
            unit_name: The Juju unit (``app/0``): it names the service and its files.
            config_root: Where every unit of the machine keeps its services' files
                (``<root>/<app>-<unit>/intake/``): ports are chosen apart there.
            unit_dir: Where the systemd unit is written.
            charm_dir: The charm's directory (its ``src`` holds the intake's code).
            systemctl: The systemctl seam.
            port_free: Whether a port can be listened on (a real bind when not given).
        """
        self.unit_name = unit_name
        self.service_name = f"{SERVICE_PREFIX}-{unit_slug(unit_name)}"
        self.config_root = config_root
        self.config_dir = config_root / unit_slug(unit_name) / "intake"
        self.unit_dir = unit_dir
        self.charm_dir = charm_dir or REPO_ROOT
        self._systemctl = systemctl
        self._port_free = port_free

    @property
    def unit_path(self) -> Path:
        """The systemd unit file."""
        return self.unit_dir / f"{self.service_name}.service"

    def port(self, host: str = LISTEN_HOST) -> int:
        """Return the intake's port: remembered, else the first from 8580 free on the machine.

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

    def config(self, settings: IntakeSettings, port: int, host: str = LISTEN_HOST) -> str:
        """Return the intake's JSON configuration (``intake.config.IntakeConfig``): no secret.

        Args:
            settings: What it runs with.
            port: The port it listens on.
            host: The address it listens on.

        Returns:
            The JSON text.
        """
        config = {
            "host": host,
            "port": port,
            "secret_file": str(self.config_dir / SECRET_FILE),
            "mq_uri_file": str(self.config_dir / MQ_URI_FILE),
            "flavors": [
                {"queue_name": flavor.queue_name, "labels": list(flavor.labels)}
                for flavor in settings.flavors
            ],
            "ledger": str(settings.ledger),
            "max_body_bytes": MAX_BODY_BYTES,
            "api_url": settings.api_url,
        }
        return json.dumps(config, indent=1, sort_keys=True) + "\n"

    def render_unit(self, ledger: Path) -> str:
        """Render the systemd unit of the intake (it names files only, never a secret)."""
        context = {
            "unit": self.unit_name,
            "charm_dir": str(self.charm_dir),
            "python": sys.executable,
            "config_file": str(self.config_dir / CONFIG_FILE),
            "ledger_dir": str(ledger.parent),
        }
        return render_unit("intake.service.j2", context)

    def ensure(self, settings: IntakeSettings, host: str = LISTEN_HOST) -> int:
        """Install (or update) and start the intake; restart it only when something changed.

        Args:
            settings: What it runs with.
            host: The address it listens on (every address: GitHub delivers from outside).

        Returns:
            The port it listens on.

        Raises:
            SubprocessError: If no port is free or systemctl fails.
        """
        port = self.port(host)
        secret = settings.webhook_secret.get_secret_value()
        changed = _write(self.config_dir / SECRET_FILE, secret, 0o600)
        mq_uri = settings.mq_uri.get_secret_value()
        changed = _write(self.config_dir / MQ_URI_FILE, mq_uri, 0o600) or changed
        config = self.config(settings, port, host)
        changed = _write(self.config_dir / CONFIG_FILE, config, 0o600) or changed
        settings.ledger.parent.mkdir(parents=True, exist_ok=True)
        unit = self.render_unit(settings.ledger)
        changed = _write(self.unit_path, unit, 0o644) or changed
        activate(self._systemctl, f"{self.service_name}.service", changed)
        if changed:
            logger.info("webhook intake (re)started on %s:%d", host, port)
        return port

    def remove(self, keep_port: bool = True) -> None:
        """Stop and remove the intake and its secret files. Idempotent.

        Args:
            keep_port: Keep the remembered port (the URL set on GitHub stays right if the
                intake comes back); False when the unit goes away.

        Raises:
            SubprocessError: If systemctl fails while the service is installed.
        """
        for name in PRIVATE_FILES:
            (self.config_dir / name).unlink(missing_ok=True)
        if not keep_port:
            (self.config_dir / PORT_FILE).unlink(missing_ok=True)
        uninstall(self._systemctl, f"{self.service_name}.service", [self.unit_path])
