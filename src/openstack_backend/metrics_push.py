"""The metrics side of OpenStack runners: a store per runner the unit's policy service fills.

An LXD runner writes its metrics files into a store mounted into the instance; a server has
no such mount, so it pushes the same files to the unit's policy service (``metrics.push``):
``PUT <policy url>/metrics/<runner>/<file>`` with its push token, an HMAC of its name under the
unit's key. At creation the manager makes the runner's store in the directory the service
writes into (``stores_dir``), with ``runner-installed.timestamp`` as LXD's manager writes it,
and hands the runner its push URL and token; ``metrics.runner.extract`` reads the stores of
gone runners exactly as it reads LXD runners' (the ``MetricsRecorder``).

The paths are the unit's (under its state directory), so the policy service of the unit
(``juju.policy_host``) and its manager agree on them.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from errors import MetricsError, MetricsStorageError
from metrics.push import load_or_create_key, push_token
from metrics.storage import DirectoryStorageManager
from metrics.type import RUNNER_INSTALLED_TS_FILE_NAME
from openstack_backend.user_data import MetricsPush

STORES_DIR_NAME = "openstack-metrics-stores"
PUSH_KEY_DIR_NAME = "metrics-push"
PUSH_KEY_NAME = "metrics-push.key"


def stores_dir(state_dir: Path) -> Path:
    """Return the directory of the unit's OpenStack runners' metrics stores."""
    return state_dir / STORES_DIR_NAME


def push_key_path(state_dir: Path) -> Path:
    """Return the unit's metrics push key file, alone in its directory.

    The policy service may write there (and nowhere else in the state directory).
    """
    return state_dir / PUSH_KEY_DIR_NAME / PUSH_KEY_NAME


def storage_manager(state_dir: Path) -> DirectoryStorageManager:
    """Return the manager of the unit's OpenStack runners' metrics stores."""
    return DirectoryStorageManager(
        stores_dir(state_dir), state_dir / f"{STORES_DIR_NAME}-quarantine"
    )


@dataclass(frozen=True)
class RunnerMetricsPush:
    """Makes each new runner's store and its push URL and token.

    Attributes:
        storage: The stores (where the policy service writes the pushed files).
        key: The unit's push key. Secret.
        base_url: The policy service as runners reach it.
    """

    storage: DirectoryStorageManager
    key: bytes
    base_url: str

    @classmethod
    def for_unit(cls, state_dir: Path, policy_url: str) -> RunnerMetricsPush:
        """Build it for a unit (its key is made on first use, 0600).

        Args:
            state_dir: The unit's state directory.
            policy_url: The policy service as runners reach it.

        Returns:
            The unit's metrics push.
        """
        key = load_or_create_key(push_key_path(state_dir))
        return cls(storage_manager(state_dir), key, policy_url.rstrip("/"))

    def create(self, runner_name: str) -> MetricsPush:
        """Make the store of a new runner and return where and with what it pushes.

        Args:
            runner_name: The runner.

        Returns:
            Its push URL and token.

        Raises:
            MetricsError: If the store cannot be made.
        """
        store = self.storage.create(runner_name)
        try:
            (store.path / RUNNER_INSTALLED_TS_FILE_NAME).write_text(
                f"{time.time():.3f}\n", encoding="utf-8"
            )
        except OSError as exc:
            self.discard(runner_name)
            raise MetricsStorageError(
                f"cannot write the installed timestamp: {exc}", runner_name
            ) from exc
        return MetricsPush(
            url=f"{self.base_url}/metrics/{runner_name}/",
            token=push_token(self.key, runner_name),
        )

    def discard(self, runner_name: str) -> None:
        """Remove the store of a runner whose creation failed (no metrics to extract)."""
        with contextlib.suppress(MetricsError):
            self.storage.delete(runner_name)
