"""The part of a ``workflow_job`` delivery the intake reads, and the job message it becomes.

GitHub sends ``{"action", "workflow_job", "repository", "organization", "sender",
"installation", ...}``; only ``action`` and the ``workflow_job`` object's ``id``, ``run_id``,
``labels``, ``url`` and ``status`` matter here, everything else is ignored (and never logged).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from intake import errors as intake_errors
from reactive.message import JobDetails

_JOB_ID_AT_END = re.compile(r"/actions/jobs/([0-9]{1,19})/?$")


class WorkflowJob(BaseModel):
    """The ``workflow_job`` object (the fields the intake reads).

    Attributes:
        id: The job id.
        run_id: The workflow run id.
        labels: The labels the job asks for.
        url: The job's API URL.
        status: ``queued``, ``in_progress``, ``completed`` or ``waiting``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    id: int = Field(ge=1, lt=2**63)
    run_id: int = Field(ge=1, lt=2**63)
    labels: list[Annotated[str, StringConstraints(max_length=256)]] = Field(max_length=64)
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    status: str


class WorkflowJobEvent(BaseModel):
    """A ``workflow_job`` delivery.

    Attributes:
        action: ``queued``, ``in_progress``, ``completed`` or ``waiting``.
        workflow_job: The job.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: str
    workflow_job: WorkflowJob


class _Action(BaseModel):
    """Any delivery: only its ``action``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    action: str | None = None


def _problems(exc: PydanticValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False)
    )[:300]


def parse_action(body: bytes) -> str | None:
    """Return a delivery's ``action``, or None when the body has none.

    pydantic's JSON parser reads the body (it bounds nesting depth: a deeply nested body is
    refused, not a RecursionError).

    Args:
        body: The raw body.

    Returns:
        The action.

    Raises:
        IntakePayloadError: The body is not a UTF-8 JSON object.
    """
    try:
        return _Action.model_validate_json(body).action
    except PydanticValidationError as exc:
        raise intake_errors.IntakePayloadError(_problems(exc)) from exc


def parse_workflow_job(body: bytes) -> WorkflowJobEvent:
    """Parse a ``workflow_job`` delivery.

    Args:
        body: The raw body.

    Returns:
        The event.

    Raises:
        IntakePayloadError: Not JSON, or the ``workflow_job`` object lacks or mistypes a field.
    """
    try:
        return WorkflowJobEvent.model_validate_json(body)
    except PydanticValidationError as exc:
        raise intake_errors.IntakePayloadError(_problems(exc)) from exc


def job_message(job: WorkflowJob, api_url: str) -> JobDetails:
    """Build the queue message of a job, checking its URL.

    Args:
        job: The job from the delivery.
        api_url: The GitHub API base (no trailing slash) the URL must start with.

    Returns:
        The message (``reactive.message`` checks the URL's form).

    Raises:
        IntakePayloadError: The URL is not under ``api_url``, does not name this job, or does not
            have the form of a job URL.
    """
    if not job.url.startswith(api_url + "/"):
        raise intake_errors.IntakePayloadError(
            "workflow_job.url is not under the configured api_url"
        )
    match = _JOB_ID_AT_END.search(job.url)
    if match is None or int(match.group(1)) != job.id:
        raise intake_errors.IntakePayloadError("workflow_job.url does not name workflow_job.id")
    try:
        return JobDetails(labels=list(job.labels), url=job.url)
    except PydanticValidationError as exc:
        reasons = "; ".join(
            str(err["msg"]) for err in exc.errors(include_url=False, include_input=False)
        )
        raise intake_errors.IntakePayloadError(f"not a job message: {reasons[:300]}") from exc
