"""Paths, parallelism and timeouts of the RunnerManager (production defaults; tests override).

The charm builds a unit's settings with :meth:`RunnerManagerSettings.for_unit`: paths per
application and unit, so that applications sharing a machine never touch each other's files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

STATE_ROOT = Path("/var/lib/github-runner")
CRON_DIR = Path("/etc/cron.d")


def _default_parallelism() -> int:
    """Creations are I/O bound (LXD and GitHub calls): a few per core, at most 8."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


@dataclass(frozen=True)
class RunnerManagerSettings:
    """Where the manager keeps its files and how it paces its work.

    Attributes:
        state_dir: The manager's own files (lock, runner binary cache).
        cron_path: The cron file that rebuilds the runner image.
        metrics_storage_dir: Base directory of the per-runner metrics stores.
        quarantine_dir: Where corrupt metrics stores are archived.
        runner_log_dir: Where runner logs are pulled to.
        create_parallelism: How many runners are created at once.
        delete_parallelism: How many runners are deleted at once.
        bootstrap_timeout: How long a new runner may take to show online on GitHub.
        ready_timeout: Seconds an instance may take to be ready for commands.
        lock_timeout: Seconds to wait for another reconcile/flush/update to finish.
        settle_timeout: Seconds to wait for LXD operations a dead process left running.
        reactive_idle_grace: Reactive mode: how long a runner may stay idle before a reconcile
            that finds the queue empty flushes it.
        credential_margin: How long before the policy service's one-time token expires an
            idle runner is replaced, beyond one reconcile interval (see manager/idle_limit.py).
        repo_check_wait: Seconds a ``*_WAIT_REPO_CHECK`` flush waits for checks in flight.
        busy_delete_wait: Seconds to wait for GitHub to release a killed busy runner.
        repo_policy_url: URL of the pre-job policy service as runners reach it, if any.
        runner_network: The LXD network runners get their NIC on; empty: the unit's own bridge
            (``lxd.network.unit_resource_name``), or the charm's ``network`` option.
        storage_pool: The LXD storage pool of runners' root disks; empty: the unit's own pool
            (on the storage ``runner-storage`` chose; same name as its bridge).
        runner_user: The user the runner application runs as inside the instance.
        runner_dir: The runner application directory inside the instance.
        fixed_boot_wait: Benchmark-only: seconds to sleep after each creation, as upstream does.
        clone_from_template: Test mode (containers), on by default: clone runners from a
            stopped container of the image that was started once, instead of launching each
            from the image (``manager.runner_template``). A container's first start remaps its
            root filesystem to the unprivileged id range (2-4 s of a 5-6 s cold start measured
            on btrfs here); a clone skips that. Ignored for virtual machines.
    """

    state_dir: Path = Path("/var/lib/github-runner")
    cron_path: Path = Path("/etc/cron.d/github-runner-image")
    metrics_storage_dir: Path = Path("/var/lib/github-runner/metrics-stores")
    quarantine_dir: Path = Path("/var/lib/github-runner/metrics-quarantine")
    runner_log_dir: Path = Path("/var/log/github-runner")
    create_parallelism: int = field(default_factory=_default_parallelism)
    delete_parallelism: int = 8
    bootstrap_timeout: timedelta = timedelta(minutes=5)
    ready_timeout: float = 180.0
    lock_timeout: float = 600.0
    settle_timeout: float = 60.0
    reactive_idle_grace: timedelta = timedelta(minutes=5)
    credential_margin: timedelta = timedelta(hours=1)
    repo_check_wait: float = 120.0
    busy_delete_wait: float = 30.0
    repo_policy_url: str | None = None
    runner_network: str = ""
    storage_pool: str = ""
    runner_user: str = "ubuntu"
    runner_dir: str = "/home/ubuntu/actions-runner"
    fixed_boot_wait: float = 0.0
    clone_from_template: bool = True

    @classmethod
    def for_unit(
        cls,
        app_name: str,
        unit: int,
        *,
        state_root: Path = STATE_ROOT,
        log_root: Path | None = None,
        cron_dir: Path = CRON_DIR,
        **overrides: Any,
    ) -> RunnerManagerSettings:
        """Return the settings of one unit: every path its own, beside other applications.

        Two applications (or units) on one machine never share a store, lock, consumer config
        (it holds the token), pid directory, log directory or cron file:
        ``<state_root>/<app>-<unit>/`` holds the state (lock, ``reactive-runner.json``,
        ``reactive-pids``, the runner binary cache, ``metrics-stores``,
        ``metrics-quarantine``), ``<log_root>/<app>-<unit>/`` the runner and consumer logs
        and ``<cron_dir>/github-runner-image-<app>-<unit>`` the image rebuild.

        Args:
            app_name: The application name.
            unit: The unit number.
            state_root: Where every unit keeps its state directory.
            log_root: Where every unit keeps its log directory (the default runner log
                directory when not given).
            cron_dir: Where cron files go.
            overrides: Other fields (parallelism, timeouts...).

        Returns:
            The settings.
        """
        slug = f"{app_name}-{unit}"
        state_dir = state_root / slug
        log_base = log_root if log_root is not None else cls.runner_log_dir
        return cls(
            **{
                "state_dir": state_dir,
                "cron_path": cron_dir / f"github-runner-image-{slug}",
                "metrics_storage_dir": state_dir / "metrics-stores",
                "quarantine_dir": state_dir / "metrics-quarantine",
                "runner_log_dir": log_base / slug,
                **overrides,
            }
        )

    @property
    def intake_ledger_path(self) -> Path:
        """The webhook intake's ledger of enqueued jobs (the reconcile safety net shares it)."""
        return self.state_dir / "intake-ledger.sqlite"

    @property
    def runner_bin_path(self) -> Path:
        """The cached runner application tarball."""
        return self.state_dir / "runner-binary" / "actions-runner.tar.gz"
