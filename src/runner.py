"""Manage the lifecycle of runners.

The ``Runner`` class manages one runner: one LXD instance registered as one GitHub runner. The
``RunnerManager`` class from ``runner_manager.py`` creates and manages a collection of them.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import tenacity

from artifacts import runner_binary
from artifacts.runner_files import METRICS_EXCHANGE_PATH, RUNNER_UID, render_runner_files
from config.settings import RunnerManagerSettings
from errors import (
    GithubNotFoundError,
    GithubRunnerError,
    LXDError,
    LXDNotFoundError,
    RunnerBusyError,
    RunnerCreateError,
    RunnerLogsError,
    RunnerRemoveError,
)
from lxd import RUNNER_NIC, InstanceStatus, disk_device, host_ids
from metrics.type import RUNNER_INSTALLED_TS_FILE_NAME
from observability.runner_logs import INSTANCE_LOG_PATH, collect_command, keep_log
from repo_policy.in_flight import token_digest
from runner_type import Arch, RunnerConfig, RunnerStatus, VirtualMachineResources, runner_labels

if TYPE_CHECKING:
    from collections.abc import Collection

    from lxd import LxdInstanceHandle
    from metrics.storage import StorageManager
    from runner_manager_type import RunnerManagerClients

logger = logging.getLogger(__name__)

APROXY_ARM_REVISION = 9
APROXY_AMD_REVISION = 8
OWNER_KEYS = ("user.github-runner.app", "user.github-runner.unit")
IMAGE_GENERATION_KEY = "user.github-runner.image-generation"
CREATED_KEY = "user.github-runner.created"
# SHA-256 of the runner's one-time policy token: the manager's own record, matched with the
# policy service's checks in flight (a job cannot write LXD config, nor forge a check).
POLICY_TOKEN_KEY = "user.github-runner.policy-token-sha256"  # noqa: S105 - a config key
LOG_MAX_BYTES = 20 << 20


@dataclass(frozen=True)
class Snap:
    """A snap installation.

    Attributes:
        name: The snap application name.
        channel: The channel to install the snap from.
        revision: The revision number of the snap installation.
    """

    name: str
    channel: str
    revision: int | None = None


@dataclass(frozen=True)
class WgetExecutable:
    """An executable to be installed through wget.

    Attributes:
        url: The URL of the executable binary.
        cmd: Executable command name, e.g. yq_linux_amd64 -> yq.
    """

    url: str
    cmd: str


@dataclass(frozen=True)
class CreateRunnerConfig:
    """The configuration values for creating a single runner instance.

    Attributes:
        image: Name of the image to launch the LXD instance with.
        resources: Resource setting for the LXD instance.
        binary_path: Path to the runner binary (tarball).
        registration_token: Token for the ``config.sh`` fallback, used only when GitHub offers
            no just-in-time configuration; empty: asked of GitHub then. No reusable token enters
            an instance while JIT works.
        arch: The unit's architecture (the runner's label; the manager sets it).
        profile: The LXD resource profile holding ``resources`` (created by the manager).
        binary_version: Version of the tarball at ``binary_path``, if known.
        metrics: The metrics store manager, when metrics are enabled.
        instance_type: "virtual-machine" in production, "container" in test mode.
        template: A stopped instance to clone instead of launching from the image, if any
            (see ``RunnerManagerSettings.clone_from_template``).
    """

    image: str
    resources: VirtualMachineResources
    binary_path: Path
    registration_token: str
    arch: Arch = Arch.X64
    profile: str | None = None
    binary_version: str | None = None
    metrics: StorageManager | None = None
    instance_type: str = "virtual-machine"
    template: str | None = None

    def __repr__(self) -> str:
        """Hide the registration token."""
        return f"CreateRunnerConfig(image={self.image!r}, arch={self.arch.value})"


class Runner:
    """Single instance of GitHub self-hosted runner.

    Attributes:
        runner_application: The runner application directory path.
        env_file: The runner environment source .env file path.
        config_script: The runner configuration script file path.
        runner_script: The runner start script file path.
        pre_job_script: The runner pre_job script file path. This is referenced in the env_file
            in the ACTIONS_RUNNER_HOOK_JOB_STARTED environment variable.
    """

    def __init__(
        self,
        clients: RunnerManagerClients,
        runner_config: RunnerConfig,
        runner_status: RunnerStatus,
        instance: LxdInstanceHandle | None = None,
        *,
        settings: RunnerManagerSettings | None = None,
    ) -> None:
        """Construct the runner instance.

        Args:
            clients: Clients to access various services.
            runner_config: Configuration of the runner instance.
            runner_status: Status info of the given runner.
            instance: LXD instance of the runner if already created.
            settings: Paths and timeouts (production defaults when not given).
        """
        self._clients = clients
        self.config = runner_config
        self.status = runner_status
        self.instance = instance
        self.settings = settings or RunnerManagerSettings()
        self.runner_application = Path(self.settings.runner_dir)
        self.env_file = self.runner_application / ".env"
        self.config_script = self.runner_application / "config.sh"
        self.runner_script = self.runner_application / "start.sh"
        self.pre_job_script = self.runner_application / "pre-job.sh"
        self._policy_mark: dict[str, str] = {}  # recorded with the creation's end

    # --- create ----------------------------------------------------------------------------------

    def create(self, config: CreateRunnerConfig) -> None:
        """Create the runner instance on LXD and register it on GitHub.

        Nothing half-built is left: on failure the instance, the GitHub registration and the
        metrics store created here are removed before the error is raised.

        Args:
            config: The instance config to create the LXD instance and configure the runner.

        Raises:
            RunnerCreateError: Unable to create the runner.
        """
        name = self.config.name
        started = time.monotonic()
        try:
            self.instance = self._launch_or_explain(config)
            self.instance.wait_ready(self.settings.ready_timeout)
            # Its DHCP lease, before anything in it uses the network (start.sh reaches GitHub).
            self.instance.wait_address(RUNNER_NIC, self.settings.ready_timeout)
            if config.metrics is not None:
                self._mount_metrics(config.metrics)
            self._install_binary(config)
            self._push_files()
            self._register(config)
            self._start()
            self.instance.set_config({CREATED_KEY: "true", **self._policy_mark})
        except BaseException as exc:  # any failure (a bug's KeyError, an OSError...) cleans up
            self._cleanup_failed_create(config)
            if not isinstance(exc, Exception):  # interrupted: cleaned up, re-raised as it is
                raise
            what = (
                str(exc) if isinstance(exc, GithubRunnerError) else f"{type(exc).__name__}: {exc}"
            )
            raise RunnerCreateError(f"creating runner {name} failed: {what}", name) from exc
        logger.info("runner %s created in %.1f s", name, time.monotonic() - started)

    def _launch_or_explain(self, config: CreateRunnerConfig) -> LxdInstanceHandle:
        try:
            return self._launch(config)
        except LXDNotFoundError as exc:
            if self._clients.lxd.image_exists(config.image):
                raise
            raise RunnerCreateError(
                f"the runner image {config.image!r} is not in LXD; build it with "
                "scripts/build-lxd-image.sh (the charm rebuilds it on install)",
                self.config.name,
            ) from exc

    def _launch(self, config: CreateRunnerConfig) -> LxdInstanceHandle:
        # The runner NIC and root pool (lxd.network.RunnerProfile), then the limits: VMs alike.
        network = self._clients.lxd.runner_profile(
            self.settings.runner_network, self.settings.storage_pool or "default"
        )
        unit_prefix = self.config.name.rsplit("-", 1)[0]
        profiles = ["default", network] + ([config.profile] if config.profile else [])
        owner = {
            OWNER_KEYS[0]: self.config.app_name,
            OWNER_KEYS[1]: unit_prefix,
            IMAGE_GENERATION_KEY: self.config.image_generation,
        }
        if config.template:
            try:
                return self._clients.lxd.copy(
                    config.template,
                    self.config.name,
                    profiles=profiles,
                    config=owner,
                )
            except LXDError as exc:  # e.g. the template is being replaced: use the image
                self._discard_template(config.template, exc)
        return self._clients.lxd.create(
            self.config.name,
            config.image,
            instance_type="container"
            if config.instance_type == "container"
            else "virtual-machine",
            profiles=profiles,
            config=owner,
            ephemeral=True,
            start=True,
            wait=True,
        )

    def _discard_template(self, name: str, exc: LXDError) -> None:
        """Delete the finished template a clone failed from: the next creation remakes it."""
        logger.warning("cloning %s failed (%s): using the image", name, exc)
        with contextlib.suppress(LXDError):
            for instance in self._clients.lxd.list(prefix=name):
                if instance.name == name and instance.last_status == InstanceStatus.STOPPED:
                    instance.delete()
                    logger.warning("template %s removed: remade by the next creation", name)

    def _mounted_uid(self) -> int | None:
        """Host uid of the runner user inside an unprivileged container, if it is mapped."""
        assert self.instance is not None  # noqa: S101 - set by create before use
        raw = self.instance.refresh().config.get("volatile.idmap.current")
        if not raw:
            return None
        try:
            return host_ids(raw, RUNNER_UID, self.config.name)[0]
        except ValueError as exc:
            raise LXDError(str(exc), "idmap", self.config.name) from exc

    def _mount_metrics(self, storage: StorageManager) -> None:
        assert self.instance is not None  # noqa: S101 - set by create before use
        uid = self._mounted_uid()
        store = storage.create(self.config.name, owner_uid=uid)  # type: ignore[call-arg]
        ts = store.path / RUNNER_INSTALLED_TS_FILE_NAME
        ts.write_text(f"{time.time():.3f}\n", encoding="utf-8")
        self.instance.add_device("metrics", disk_device(str(store.path), METRICS_EXCHANGE_PATH))

    def _install_binary(self, config: CreateRunnerConfig) -> None:
        assert self.instance is not None  # noqa: S101 - set by create before use
        runner_binary.install_in_instance(
            self.instance,
            PurePosixPath(self.runner_application),
            config.binary_path,
            config.binary_version,
            self.config.name,
        )

    def _push_files(self) -> None:
        assert self.instance is not None  # noqa: S101 - set by create before use
        files = self.instance.files
        for item in render_runner_files(
            self._clients.jinja,
            self.config,
            runner_dir=PurePosixPath(self.runner_application),
            runner_user=self.settings.runner_user,
            repo_policy_url=self.settings.repo_policy_url,
        ):
            files.push(item.path, item.content, item.mode, item.owner, item.owner)
        if self.settings.repo_policy_url:
            token = self._clients.repo.get_one_time_token()
            self._policy_mark = {POLICY_TOKEN_KEY: token_digest(token)}
            files.push(
                str(self.runner_application / ".repo-policy-token"),
                token.encode(),
                0o600,
                RUNNER_UID,
                RUNNER_UID,
            )

    def _register(self, config: CreateRunnerConfig) -> None:
        assert self.instance is not None  # noqa: S101 - set by create before use
        labels = list(
            runner_labels(
                self.config.labels, self.config.app_name, self.config.base_image, config.arch
            )
        )
        github = self._clients.github
        try:
            jit = github.get_jit_config(self.config.path, self.config.name, labels)
        except GithubNotFoundError:
            logger.warning("JIT configuration unavailable; registering with config.sh")
        else:
            self.status = RunnerStatus(runner_id=jit.runner_id, exist=True)
            self.instance.files.push(
                str(self.runner_application / ".jitconfig"),
                jit.encoded_jit_config.encode(),
                0o600,
                RUNNER_UID,
                RUNNER_UID,
            )
            return
        token = config.registration_token or github.get_registration_token(self.config.path).token
        url = f"{self.config.github_url.rstrip('/')}/{self.config.path.path()}"
        cmd = [
            str(self.config_script),
            "--url",
            url,
            "--token",
            token,
            "--name",
            self.config.name,
            "--labels",
            ",".join(labels),
            "--ephemeral",
            "--unattended",
        ]
        self.instance.execute(
            cmd,
            cwd=str(self.runner_application),
            user=RUNNER_UID,
            env={"HOME": f"/home/{self.settings.runner_user}"},
            timeout=120,
            secret_args=[token],
            check=True,
        )

    def _start(self) -> None:
        assert self.instance is not None  # noqa: S101 - set by create before use
        script = shlex.quote(str(self.runner_script))
        self.instance.execute(
            [
                "bash",
                "-c",
                "if command -v systemd-run >/dev/null; then "
                f"systemd-run --unit=github-runner --quiet --collect /bin/bash {script}; "
                f"else setsid nohup /bin/bash {script} >/var/log/github-runner.log 2>&1 & fi",
            ],
            timeout=30,
            check=True,
        )

    def _cleanup_failed_create(self, config: CreateRunnerConfig) -> None:
        """Undo a failed creation; each step is tried whatever the others raise."""
        if self.status.runner_id is not None:
            try:
                self._clients.github.delete_runner(
                    self.config.path, self.status.runner_id, self.config.name
                )
            except Exception as exc:  # logged; the next reconcile retries
                logger.warning("could not deregister %s: %s", self.config.name, exc)
        if self.instance is not None:
            try:
                self.instance.delete()
            except Exception as exc:  # logged; the plan removes it later
                logger.warning("could not delete instance %s: %s", self.config.name, exc)
        if config.metrics is not None:
            try:
                config.metrics.delete(self.config.name)
            except Exception as exc:  # logged; orphan stores are cleaned
                logger.warning("could not delete metrics store of %s: %s", self.config.name, exc)

    # --- remove ----------------------------------------------------------------------------------

    def remove(self, remove_token: str | None, *, allow_busy: bool = False) -> None:
        """Remove this runner instance from LXD and GitHub.

        GitHub goes first: once the record is gone no job can be assigned to the runner. A busy
        runner answers 422; with ``allow_busy`` its instance is deleted (ending the job) and the
        record removed once GitHub releases it, else the runner is left alone.

        Args:
            remove_token: Unused (seed API): the record is deleted by its id, and a runner
                whose id is unknown has no record to remove.
            allow_busy: Whether to remove a runner that is running a job.

        Raises:
            RunnerRemoveError: Failure in removing the runner.
        """
        name = self.config.name
        try:
            busy = self._deregister()
            if busy and not allow_busy:
                raise RunnerRemoveError(f"runner {name} took a job; left alone", name)
            self._delete_instance()
            if busy:
                self._deregister_after_kill()
        except RunnerRemoveError:
            raise
        except GithubRunnerError as exc:
            raise RunnerRemoveError(f"removing runner {name} failed: {exc}", name) from exc

    def _deregister(self) -> bool:
        """Delete the GitHub record; return True if GitHub refused because the runner is busy."""
        if self.status.runner_id is None:
            return False
        try:
            self._clients.github.delete_runner(
                self.config.path, self.status.runner_id, self.config.name
            )
        except RunnerBusyError:
            return True
        return False

    def _delete_instance(self) -> None:
        if self.instance is None:
            return
        with contextlib.suppress(LXDNotFoundError):  # ephemeral: may be gone after its job
            self.instance.delete()

    def _deregister_after_kill(self) -> None:
        assert self.status.runner_id is not None  # noqa: S101 - only called for a known record
        runner_id = self.status.runner_id
        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(RunnerBusyError),
                wait=tenacity.wait_exponential(multiplier=0.5, max=4),
                stop=tenacity.stop_after_delay(self.settings.busy_delete_wait),
                reraise=True,
            ):
                with attempt:
                    self._clients.github.delete_runner(
                        self.config.path, runner_id, self.config.name
                    )
        except RunnerBusyError:
            logger.warning(
                "GitHub still holds %s busy; the next reconcile removes the record",
                self.config.name,
            )

    # --- logs ------------------------------------------------------------------------------------

    @staticmethod
    def in_pre_job_check(instance: LxdInstanceHandle, in_flight: Collection[str]) -> bool:
        """Tell whether the instance's runner is inside its pre-job policy check.

        Decided on the manager's side only: the digest of the one-time token the manager gave
        the runner (its instance config) against the checks the policy service is answering
        (``RepoPolicyComplianceClient.checks_in_flight``). Nothing inside the instance counts:
        a job can write any file there.

        Args:
            instance: The runner's instance, as listed.
            in_flight: The token digests of the checks in flight.

        Returns:
            Whether the policy service is answering this runner's check.
        """
        digest = instance.config.get(POLICY_TOKEN_KEY)
        return digest is not None and digest in in_flight

    def pull_logs(self) -> None:
        """Pull the logs of the runner into the unit's log directory, as plain ``<name>.log``.

        Expects the runner to have an instance. Bounds and rotation: ``observability.runner_logs``.

        Raises:
            RunnerLogsError: If the runner logs could not be pulled.
        """
        if self.instance is None:
            raise RunnerLogsError("runner has no instance to pull logs from", self.config.name)
        try:
            self.instance.execute(
                collect_command(str(self.runner_application)), timeout=60, check=True
            )
            data = self.instance.files.pull(INSTANCE_LOG_PATH, max_bytes=LOG_MAX_BYTES)
        except LXDError as exc:
            raise RunnerLogsError(f"pulling logs failed: {exc}", self.config.name) from exc
        try:
            keep_log(self.settings.runner_log_dir, self.config.name, data)
        except (OSError, ValueError) as exc:
            raise RunnerLogsError(f"writing logs failed: {exc}", self.config.name) from exc
