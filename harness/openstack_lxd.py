"""TEST INFRASTRUCTURE: OpenStack runners that really run jobs, on the test OpenStack.

The test OpenStack of ``scripts/setup-openstack.sh`` runs nova-compute with the test driver
``scripts/openstack/lxd_virt_driver.py`` (installed as ``nova/virt/github_runner_lxd.py``):
servers of a Glance image with the property ``github_runner_lxd=<LXD image alias>`` run as LXD
containers ``nova-<server id>``, on the LXD network the property ``github_runner_lxd_network``
names, their user data as the start script. This module gives the tests and benchmarks:

- :func:`driver_problem`: why servers would not run (driver not installed or stale), or None;
- :func:`lxd_glance_image`: a Glance image (64 KiB of zeros) with those two properties, for
  one test or run (a per-run image names the session's test network, so concurrent sessions
  never share a network setting), deleted on exit;
- :func:`openstack_manager`: the charm's ``OpenstackRunnerManager`` (production code) on that
  image with a :class:`harness.local.LocalEnvironment`'s sandbox as GitHub;
- :func:`containers_of` / :func:`remove_containers`: the LXD side, for leak checks and cleanup.

The runner application is not baked into the LXD test image: the user data fetches the
sandbox's tarball (``UserDataConfig.binary_url``, the template's branch for images without it).
The charm passes no ``binary_url``: its images must hold the runner (``build_runner_image``).
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import RunnerManagerSettings
from harness.local import LocalEnvironment
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.user_data import UserDataConfig
from runner_manager_type import OpenstackRunnerManagerConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DRIVER_SOURCE = REPO_ROOT / "scripts" / "openstack" / "lxd_virt_driver.py"
NOVA_CONF = Path("/etc/nova/nova.conf")
DRIVER_NAME = "github_runner_lxd.GithubRunnerLxdDriver"
IMAGE_PROPERTY = "github_runner_lxd"
NETWORK_PROPERTY = "github_runner_lxd_network"
CONTAINER_PREFIX = "nova-"
TIMEOUT = 60


@dataclass(frozen=True)
class TestCloud:
    """The test OpenStack as the manager uses it.

    Attributes:
        clouds_yaml: The charm user's clouds file.
        cloud: Its cloud name.
        flavor: The flavor servers get.
        network: The Neutron network servers get (the driver puts the container on the LXD
            network of the image instead).
    """

    __test__ = False  # not a pytest test class

    clouds_yaml: Path
    cloud: str
    flavor: str
    network: str


def _nova_virt_dir() -> Path | None:
    result = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import os, nova.virt; print(os.path.dirname(nova.virt.__file__))",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def driver_problem() -> str | None:
    """Say why servers of an LXD image would not run as containers here, or None.

    Returns:
        What is missing (nova not installed, driver not installed, stale, not configured).
    """
    virt = _nova_virt_dir()
    if virt is None:
        return "nova is not installed for /usr/bin/python3"
    installed = virt / "github_runner_lxd.py"
    try:
        if installed.read_bytes() != DRIVER_SOURCE.read_bytes():
            return f"{installed} differs from {DRIVER_SOURCE.relative_to(REPO_ROOT)}"
        conf = NOVA_CONF.read_text()
    except OSError as exc:
        return f"the test compute driver is not installed ({exc})"
    if not re.search(rf"^compute_driver\s*=\s*{re.escape(DRIVER_NAME)}\s*$", conf, re.M):
        return f"{NOVA_CONF} does not set compute_driver = {DRIVER_NAME}"
    return None


@contextmanager
def lxd_glance_image(conn: Any, *, alias: str, network: str, name: str = "") -> Iterator[Any]:
    """A Glance image whose servers the test driver runs as LXD containers; deleted on exit.

    Args:
        conn: An openstacksdk connection (the charm's user may create its project's images).
        alias: The LXD image the containers are made from.
        network: The LXD network the containers get a NIC on.
        name: The image name (``runner-lxd-<hex>`` by default).

    Yields:
        The image.
    """
    image = conn.create_image(
        name or f"runner-lxd-{secrets.token_hex(3)}",
        data=b"\0" * 65536,
        disk_format="raw",
        container_format="bare",
        wait=True,
        timeout=TIMEOUT,
        **{IMAGE_PROPERTY: alias, NETWORK_PROPERTY: network},
    )
    try:
        yield image
    finally:
        conn.image.delete_image(image.id, ignore_missing=True)


def openstack_settings(env: LocalEnvironment, app_name: str) -> RunnerManagerSettings:
    """The settings of :func:`openstack_manager` (its state directory, for the policy service)."""
    return RunnerManagerSettings.for_unit(
        app_name,
        0,
        state_root=env.workdir / "os-state",
        log_root=env.workdir / "os-logs",
        cron_dir=env.workdir / "os-cron",
        lock_timeout=30,
    )


def openstack_manager(
    env: LocalEnvironment,
    cloud: TestCloud,
    image: str,
    *,
    app_name: str,
    policy_url: str | None = None,
    service_token: str = "",
    metrics: bool = False,
) -> OpenstackRunnerManager:
    """The charm's OpenStack manager on ``image``, GitHub being the environment's sandbox.

    Its state lives under the environment's work directory (:func:`openstack_settings`). The runner
    application comes from the sandbox's download URL (see the module docstring).

    Args:
        env: The environment (sandbox on the test network, work directory).
        cloud: The test OpenStack.
        image: The Glance image (one of :func:`lxd_glance_image`).
        app_name: The application name: server and runner names start with ``<app>-0-``.
        policy_url: The policy service as runners reach it (metrics are pushed there).
        service_token: The manager's token for the policy service.
        metrics: Whether metrics are enabled.

    Returns:
        The manager (unit 0).
    """
    state = env.charm_state(app_name=app_name, is_metrics_enabled=metrics)
    settings = openstack_settings(env, app_name)
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=(),
        token=state.token.get_secret_value(),
        flavor=cloud.flavor,
        image=image,
        network=cloud.network,
        dockerhub_mirror=None,
        repo_policy_url=policy_url,
        service_token=service_token,
    )
    client = OpenstackClient(cloud.clouds_yaml, cloud.cloud, timeout=TIMEOUT)
    # The sandbox's runner tarball: what the LXD manager of the environment downloads too.
    binary = env.manager.get_latest_runner_bin_url()
    user_data = UserDataConfig(
        runner_dir=settings.runner_dir,
        runner_user=settings.runner_user,
        binary_url=binary.download_url,
        repo_policy_url=policy_url,
    )
    return OpenstackRunnerManager(
        app_name, 0, config, client, settings=settings, user_data=user_data
    )


def lxd_containers(prefix: str = CONTAINER_PREFIX) -> list[str]:
    """Names of the LXD instances starting with ``prefix`` (the ``lxc`` CLI)."""
    out = subprocess.run(
        ["lxc", "list", "-c", "n", "-f", "csv"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    return [name for name in out.split() if name.startswith(prefix)]


def containers_of(server_ids: Iterable[str]) -> list[str]:
    """The containers of these servers that exist."""
    wanted = {f"{CONTAINER_PREFIX}{server_id}" for server_id in server_ids}
    return [name for name in lxd_containers() if name in wanted]


def remove_containers(names: Iterable[str]) -> None:
    """Last-resort cleanup: ``lxc delete -f`` each container."""
    for name in names:
        subprocess.run(
            ["lxc", "delete", "-f", name], capture_output=True, timeout=TIMEOUT, check=False
        )


def container_log(server_id: str) -> str:
    """The user data's output in a server's container (for failure messages)."""
    result = subprocess.run(
        ["lxc", "file", "pull", f"{CONTAINER_PREFIX}{server_id}/var/log/nova-user-data.log", "-"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return result.stdout if result.returncode == 0 else f"(no log: {result.stderr.strip()})"
