"""One OpenStack runner: create it (JIT registration, then the server) or remove it.

GitHub goes first on removal, as for LXD runners: once the record is gone no job can be given
to the runner; a busy runner answers 422 and is left alone unless the flush takes busy ones.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Protocol

import tenacity
from jinja2 import Environment

from errors import (
    GithubRunnerError,
    OpenstackError,
    OpenstackQuotaError,
    RunnerBusyError,
    RunnerCreateError,
    RunnerRemoveError,
    TemplateValueError,
)
from github_api.seam import GithubPlatform
from github_api.types import GitHubPath
from openstack_backend.metrics_push import RunnerMetricsPush
from openstack_backend.observe import Ownership
from openstack_backend.seam import OpenstackCloud
from openstack_backend.user_data import UserDataConfig, render_user_data
from reconcile_plan import Runner
from repo_policy.in_flight import token_digest

logger = logging.getLogger(__name__)

POLICY_DIGEST_KEY = "github-runner-policy-token-sha256"
"""Server metadata: SHA-256 of the runner's one-time policy token (what a flush waits on).

The manager writes it at creation; the token itself is spent by the runner's check, so the
digest (which the server can read back from the metadata service) is worth nothing to a job.
"""


class OneTimeTokens(Protocol):
    """The policy service as the manager uses it (``repo_policy.client``)."""

    def get_one_time_token(self) -> str:
        """Return a token a runner can use once for its pre-job check."""
        ...


@dataclass(frozen=True)
class ServerTarget:
    """Where and what a runner server boots (ids, resolved once per reconcile).

    Attributes:
        image: The image id.
        flavor: The flavor id.
        network: The network id.
    """

    image: str
    flavor: str
    network: str


@dataclass(frozen=True)
class RunnerSide:
    """What creating or removing one runner needs.

    Attributes:
        cloud: The cloud.
        github: GitHub.
        jinja: The template environment.
        path: The GitHub organisation or repository.
        owner: Whose runners.
        labels: The labels runners register with.
        user_data: The user data settings.
        busy_delete_wait: Seconds to wait for GitHub to release a killed busy runner.
        policy: The policy service giving each runner its one-time token (None: no check).
        metrics: Makes each runner's metrics store and push token (None: no metrics).
    """

    cloud: OpenstackCloud
    github: GithubPlatform
    jinja: Environment
    path: GitHubPath
    owner: Ownership
    labels: tuple[str, ...]
    user_data: UserDataConfig
    busy_delete_wait: float = 30.0
    policy: OneTimeTokens | None = None
    metrics: RunnerMetricsPush | None = None


def new_name(owner: Ownership) -> str:
    """Return a fresh runner name: ``<app>-<unit>-<8 hex>`` (as LXD runners are named)."""
    return f"{owner.prefix}{secrets.token_hex(4)}"


def create_runner(side: RunnerSide, target: ServerTarget) -> str:
    """Register a JIT runner on GitHub and ask Nova for its server.

    Args:
        side: The seams and settings.
        target: The image, flavor and network ids.

    Returns:
        The runner's name.

    Raises:
        OpenstackQuotaError: If the quota refused the server (its registration is undone).
        RunnerCreateError: If another step failed (its registration is undone).
    """
    name = new_name(side.owner)
    try:
        policy_token = side.policy.get_one_time_token() if side.policy is not None else None
        push = side.metrics.create(name) if side.metrics is not None else None
    except GithubRunnerError as exc:
        raise RunnerCreateError(f"files of {name} failed: {exc}", name) from exc
    try:
        jit = side.github.get_jit_config(side.path, name, side.labels)
    except GithubRunnerError as exc:
        _discard_store(side, name)
        raise RunnerCreateError(f"JIT registration of {name} failed: {exc}", name) from exc
    try:
        user_data = render_user_data(
            side.jinja,
            name,
            jit.encoded_jit_config,
            side.user_data,
            policy_token=policy_token,
            push=push,
        )
        side.cloud.create_server(
            name,
            image=target.image,
            flavor=target.flavor,
            network=target.network,
            user_data=user_data,
            metadata=_metadata(side.owner, policy_token),
            tags=side.owner.tags(),
        )
    except (OpenstackError, TemplateValueError) as exc:
        with contextlib.suppress(GithubRunnerError):  # else an orphan record: next reconcile
            side.github.delete_runner(side.path, jit.runner_id, name)
        _discard_store(side, name)
        if isinstance(exc, OpenstackQuotaError):
            raise
        raise RunnerCreateError(f"server of {name} refused: {exc}", name) from exc
    return name


def _metadata(owner: Ownership, policy_token: str | None) -> dict[str, str]:
    """The server's metadata: its ownership, and its policy token's digest when it has one."""
    metadata = owner.metadata()
    if policy_token is not None:
        metadata[POLICY_DIGEST_KEY] = token_digest(policy_token)
    return metadata


def _discard_store(side: RunnerSide, name: str) -> None:
    if side.metrics is not None:
        side.metrics.discard(name)


def remove_runner(
    side: RunnerSide, runner: Runner, server_id: str | None, allow_busy: bool
) -> None:
    """Remove a runner: its GitHub record first, then its server.

    Args:
        side: The seams and settings.
        runner: The judged runner.
        server_id: Nova's id of its server (None: no server).
        allow_busy: Whether a runner running a job goes too (its job ends).

    Raises:
        RunnerRemoveError: If the runner is busy and ``allow_busy`` is False, or a call failed.
    """
    name = runner.name
    try:
        busy = _deregister(side, runner)
        if busy and not allow_busy:
            raise RunnerRemoveError(f"runner {name} took a job; left alone", name)
        if server_id is not None:
            side.cloud.delete_server(server_id)
        if busy:
            _deregister_after_kill(side, runner)
    except RunnerRemoveError:
        raise
    except GithubRunnerError as exc:
        raise RunnerRemoveError(f"removing runner {name} failed: {exc}", name) from exc


def _deregister(side: RunnerSide, runner: Runner) -> bool:
    if runner.github is None:
        return False
    try:
        side.github.delete_runner(side.path, runner.github.id, runner.name)
    except RunnerBusyError:
        return True
    return False


def _deregister_after_kill(side: RunnerSide, runner: Runner) -> None:
    assert runner.github is not None  # noqa: S101 - only called for a known record
    record = runner.github.id
    try:
        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RunnerBusyError),
            wait=tenacity.wait_exponential(multiplier=0.5, max=4),
            stop=tenacity.stop_after_delay(side.busy_delete_wait),
            reraise=True,
        ):
            with attempt:
                side.github.delete_runner(side.path, record, runner.name)
    except RunnerBusyError:
        logger.warning("GitHub still holds %s busy; the next reconcile removes it", runner.name)
