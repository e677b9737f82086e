"""What a runner writes into its metrics store, and what the charm extracts from it.

Every file lives at the root of the runner's store (``/metrics-exchange`` inside the instance).
Each file must be a regular file of at most ``FILE_SIZE_BYTES_LIMIT`` (1024) bytes; nothing else
(no symlink, FIFO, directory or other file name; ``lost+found`` is tolerated) may be in the
store, otherwise the whole store is quarantined and none of its metrics are issued. Write each
file atomically: to ``.<name>.tmp`` in the store, then ``mv`` it to ``<name>`` (a leftover
``.pre-job-metrics.json.tmp`` or ``.post-job-metrics.json.tmp`` is tolerated and never read).

``runner-installed.timestamp`` (written by the manager when it creates the runner):
    The UNIX time of installation as a decimal number, optionally with a fraction and trailing
    whitespace. Example: ``1763884800.25`` (``date +%s.%N`` style output is accepted as long as
    the fraction has at most 9 digits).

``pre-job-metrics.json`` (written by ``pre-job.sh`` when the runner takes a job)::

    {"timestamp": 1763884830.5, "workflow": "CI", "workflow_run_id": 123456789,
     "repository": "canonical/github-runner", "event": "push"}

    - ``timestamp``: number (int or float), UNIX seconds, within [2020-01-01, 2100-01-01).
    - ``workflow``: string, 1-256 characters, no control characters (``$GITHUB_WORKFLOW``).
    - ``workflow_run_id``: JSON integer (not a string, not ``1.0``), 0 <= id < 2**63
      (``$GITHUB_RUN_ID``; write it unquoted).
    - ``repository``: ``owner/repo`` (``$GITHUB_REPOSITORY``), each part ``[A-Za-z0-9_.-]{1,100}``.
      The job can write this file: the queue time is only looked up on GitHub when the name is
      one GitHub allows and is the repository (or in the organisation) the unit serves
      (``metrics.github.job``); otherwise the events are issued without it.
    - ``event``: the GitHub event name, ``[a-z_]{1,64}`` (``$GITHUB_EVENT_NAME``).

``post-job-metrics.json`` (written by ``start.sh`` once the runner application exited)::

    {"timestamp": 1763884900, "status": "normal"}
    {"timestamp": 1763884900, "status": "abnormal", "status_info": {"code": 1}}
    {"timestamp": 1763884900, "status": "repo-policy-check-failure",
     "status_info": {"code": 403}}

    - ``timestamp``: as above.
    - ``status``: ``normal`` | ``abnormal`` | ``repo-policy-check-failure``.
    - ``status_info`` (optional, may be ``null``): ``{"code": <integer 0..65535>}``: the exit
      code of the runner application, or the HTTP status the policy service answered.

No other keys are allowed in either JSON object, and values are checked strictly: ``"123"`` is
not an integer, ``true`` is not a number, ``NaN``/``Infinity`` are rejected.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

FILE_SIZE_BYTES_LIMIT = 1024
PRE_JOB_METRICS_FILE_NAME = "pre-job-metrics.json"
POST_JOB_METRICS_FILE_NAME = "post-job-metrics.json"
RUNNER_INSTALLED_TS_FILE_NAME = "runner-installed.timestamp"

# Timestamps outside this window are treated as corrupt data.
MIN_TIMESTAMP = 1_577_836_800.0  # 2020-01-01T00:00:00Z
MAX_TIMESTAMP = 4_102_444_800.0  # 2100-01-01T00:00:00Z

Timestamp = Annotated[float, Field(ge=MIN_TIMESTAMP, lt=MAX_TIMESTAMP)]

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class PostJobStatus(str, Enum):
    """The status of the post-job phase of a runner.

    Attributes:
        NORMAL: Represents a normal post-job.
        ABNORMAL: Represents an error with post-job.
        REPO_POLICY_CHECK_FAILURE: Represents an error with repo-policy-compliance check.
    """

    NORMAL = "normal"
    ABNORMAL = "abnormal"
    REPO_POLICY_CHECK_FAILURE = "repo-policy-check-failure"


class CodeInformation(BaseModel):
    """Information about a status code.

    Attributes:
        code: The status code.
    """

    model_config = _STRICT

    code: Annotated[int, Field(ge=0, le=65535)]


class PreJobMetrics(BaseModel):
    """Metrics for the pre-job phase of a runner.

    Attributes:
        timestamp: The UNIX time stamp of the time at which the event was originally issued.
        workflow: The workflow name.
        workflow_run_id: The workflow run id.
        repository: The repository path in the format '<owner>/<repo>'.
        event: The github event.
    """

    model_config = _STRICT

    timestamp: Timestamp
    workflow: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
    workflow_run_id: Annotated[int, Field(ge=0, lt=2**63)]
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")]
    event: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")]


class PostJobMetrics(BaseModel):
    """Metrics for the post-job phase of a runner.

    Attributes:
        timestamp: The UNIX time stamp of the time at which the event was originally issued.
        status: The status of the job.
        status_info: More information about the status.
    """

    model_config = _STRICT

    timestamp: Timestamp
    status: PostJobStatus
    status_info: CodeInformation | None = None


class RunnerMetrics(BaseModel):
    """Metrics for a runner.

    ``pre_job`` is None when the runner never took a job; ``post_job`` is None when the runner
    application did not exit normally (crash, instance deleted while busy).

    Attributes:
        installed_timestamp: The UNIX time stamp of the time at which the runner was installed.
        pre_job: The metrics for the pre-job phase.
        post_job: The metrics for the post-job phase.
        runner_name: The name of the runner.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    installed_timestamp: Timestamp
    pre_job: PreJobMetrics | None = None
    post_job: PostJobMetrics | None = None
    runner_name: str
