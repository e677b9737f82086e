"""The job message on the reactive queue: its schema, its validation, the labels it may ask for.

A message is a JSON object ``{"labels": [...], "url": "<GitHub API job URL>"}``, untrusted: it is
size-limited, strictly typed and its URL must have the form of a GitHub API job URL, with no
whitespace or control character and owner and repository names GitHub allows (the GitHub client
checks it against its own API URL before calling it; the consumer checks that the repository is
one its unit serves). Log untrusted strings with ``%r``: they can hold anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

import errors
from github_api.names import is_owner_name, is_repo_name
from github_api.types import GitHubRepo
from runner_type import Arch, runner_labels

if TYPE_CHECKING:
    from config.state import CharmState

MAX_MESSAGE_BYTES = 64 * 1024
_JOB_PATH = re.compile(r"/repos/([^/]+)/([^/]+)/actions/jobs/[0-9]{1,19}/?$")
# urlsplit silently drops tabs and newlines: refuse them (and any other control or space) first.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]")


def job_repository(url: str) -> GitHubRepo:
    """Return the repository a job URL names (the URL already passed :func:`_check_job_url`).

    Args:
        url: The job URL.

    Returns:
        The repository.

    Raises:
        ValueError: The URL names no repository GitHub allows.
    """
    match = _JOB_PATH.search(urlsplit(url).path)
    if match is None or not is_owner_name(match.group(1)) or not is_repo_name(match.group(2)):
        raise ValueError("not .../repos/<owner>/<repo>/actions/jobs/<id> with names GitHub allows")
    return GitHubRepo(owner=match.group(1), repo=match.group(2))


def _check_job_url(url: str) -> str:
    """Check a job URL's form (the GitHub client validates it against its own API URL).

    Args:
        url: The URL from the message.

    Returns:
        The URL, unchanged.

    Raises:
        ValueError: The URL is not ``http(s)://host/.../repos/o/r/actions/jobs/<id>``, holds
            whitespace or control characters, or names an owner or repository GitHub forbids.
    """
    if _UNSAFE.search(url):
        raise ValueError("holds whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # a bad port raises ValueError here
    except ValueError as exc:
        raise ValueError("not a URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("has credentials")
    if parts.query or parts.fragment or not _JOB_PATH.search(parts.path):
        raise ValueError("not .../repos/<owner>/<repo>/actions/jobs/<id>")
    job_repository(url)
    return url


Label = Annotated[str, StringConstraints(min_length=1, max_length=256)]
JobUrl = Annotated[
    str, StringConstraints(min_length=1, max_length=2048), AfterValidator(_check_job_url)
]


class JobDetails(BaseModel):
    """A job message from the queue.

    Attributes:
        labels: The labels the job asks for (``runs-on``).
        url: The GitHub API URL of the job.
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    labels: list[Label] = Field(max_length=64)
    url: JobUrl

    @property
    def repository(self) -> GitHubRepo:
        """The repository the job URL names."""
        return job_repository(self.url)


def parse_job_message(body: bytes | str) -> JobDetails:
    """Parse and validate a message body.

    Args:
        body: The raw message body.

    Returns:
        The job details.

    Raises:
        JobMessageError: The body is too large, not UTF-8 JSON or not a job message.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise errors.JobMessageError(f"larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.JobMessageError(f"not JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise errors.JobMessageError("not a JSON object")
    try:
        return JobDetails.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise errors.JobMessageError(problems[:500]) from exc


def build_supported_labels(
    configured: Iterable[str], app_name: str, base_image: str, arch: str
) -> frozenset[str]:
    """Return the labels this application's runners offer, lower-cased.

    Args:
        configured: The labels from the charm's ``labels`` option.
        app_name: The application name (runners carry it as a label).
        base_image: The base image name, e.g. ``jammy``.
        arch: The architecture label, e.g. ``x64``.

    Returns:
        The labels runners register with (``runner_type.runner_labels``), lower-cased.
    """
    every = runner_labels(configured, app_name, base_image, Arch(arch))
    return frozenset(label.strip().lower() for label in every if label.strip())


def unit_supported_labels(state: CharmState) -> frozenset[str]:
    """Return the labels this unit's runners offer, on its backend.

    LXD runners carry the base image's name (``noble``); OpenStack runners do not: their image
    is the operator's Glance image, whatever it holds (``OpenstackRunnerManager``'s labels).

    Args:
        state: The charm state (labels, application, base image, architecture, backend).

    Returns:
        The labels, lower-cased.
    """
    base_image = "" if state.openstack is not None else state.base_image.value
    return build_supported_labels(state.labels, state.app_name, base_image, state.arch.value)
