"""Types describing GitHub objects the charm works with (no I/O, no PyGithub).

Also the pure helpers on them: parsing the ``path`` option and deriving the REST API base URL.
Parsing GitHub's (untrusted) answers into these types is :mod:`github_api.parse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})$")
"""An owner, repository or organisation name as GitHub allows them."""


class GitHubRunnerStatus(str, Enum):
    """Status GitHub reports for a self-hosted runner."""

    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True)
class GitHubRepo:
    """A repository path.

    Attributes:
        owner: The user or organisation that owns the repository.
        repo: The repository name.
    """

    owner: str
    repo: str

    def path(self) -> str:
        """Return the path as ``owner/repo``."""
        return f"{self.owner}/{self.repo}"


@dataclass(frozen=True)
class GitHubOrg:
    """An organisation path with the runner group runners join.

    Attributes:
        org: The organisation name.
        group: The runner group name.
    """

    org: str
    group: str = "default"

    def path(self) -> str:
        """Return the organisation name."""
        return self.org


GitHubPath = GitHubOrg | GitHubRepo


def parse_github_path(path: str, runner_group: str = "default") -> GitHubPath:
    """Parse the ``path`` config option: ``owner/repo`` or an organisation name.

    Args:
        path: The path as configured.
        runner_group: The runner group, used for organisations only.

    Returns:
        The repository or organisation path.

    Raises:
        ValueError: If the path is neither form.
    """
    path = path.strip()
    parts = path.split("/")
    if len(parts) == 2 and all(NAME_PATTERN.match(p) for p in parts):
        return GitHubRepo(owner=parts[0], repo=parts[1])
    if len(parts) == 1 and NAME_PATTERN.match(parts[0]):
        return GitHubOrg(org=parts[0], group=runner_group)
    raise ValueError(f"{path!r} is neither an organisation name nor owner/repo")


def api_base_url(github_url: str) -> str:
    """Derive the REST API base URL from the GitHub (or GHES) web URL.

    Args:
        github_url: ``https://github.com`` or a GitHub Enterprise Server base URL.

    Returns:
        ``https://api.github.com`` for github.com, else ``<url>/api/v3``.
    """
    url = github_url.rstrip("/")
    if url in ("https://github.com", "http://github.com"):
        return "https://api.github.com"
    return f"{url}/api/v3"


@dataclass(frozen=True)
class SelfHostedRunner:
    """A self-hosted runner as GitHub lists it.

    Attributes:
        id: GitHub's runner id.
        name: The runner name.
        status: Online or offline.
        busy: Whether it runs a job now.
        labels: Label names.
    """

    id: int
    name: str
    status: GitHubRunnerStatus
    busy: bool
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunnerApplication:
    """A downloadable runner application (``GET .../actions/runners/downloads``).

    Attributes:
        os: Operating system, e.g. ``linux``.
        architecture: ``x64`` or ``arm64``.
        download_url: Where to download the tarball.
        filename: The tarball's file name (carries the version).
        sha256_checksum: Expected SHA-256 of the tarball, if GitHub gave one.
        temp_download_token: Bearer token for the download, if GitHub gave one.
    """

    os: str
    architecture: str
    download_url: str
    filename: str
    sha256_checksum: str | None = None
    temp_download_token: str | None = None

    @property
    def version(self) -> str:
        """Return the version carried by the file name (``actions-runner-linux-x64-2.3.0``)."""
        match = re.search(r"(\d+\.\d+\.\d+)", self.filename)
        return match.group(1) if match else "unknown"


@dataclass(frozen=True)
class JITConfig:
    """A just-in-time runner configuration.

    Attributes:
        runner_id: GitHub's id of the registered runner.
        encoded_jit_config: The opaque configuration for ``run.sh --jitconfig``. Secret.
    """

    runner_id: int
    encoded_jit_config: str

    def __repr__(self) -> str:
        """Hide the secret configuration."""
        return f"JITConfig(runner_id={self.runner_id}, encoded_jit_config=***)"


@dataclass(frozen=True)
class RegistrationToken:
    """A registration or remove token.

    Attributes:
        token: The token. Secret.
        expires_at: When it expires.
    """

    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        """Hide the secret token."""
        return f"RegistrationToken(token=***, expires_at={self.expires_at.isoformat()})"


class JobStatus(str, Enum):
    """Status of a workflow job."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    WAITING = "waiting"
    REQUESTED = "requested"
    PENDING = "pending"


@dataclass(frozen=True)
class JobInfo:
    """A workflow job as GitHub reports it.

    Attributes:
        id: The job id.
        status: Queued, in progress, completed...
        conclusion: success, failure... once completed.
        created_at: When it was queued.
        started_at: When a runner picked it up.
        runner_name: The runner that picked it up, if any.
        labels: Labels the job asks for.
        completed_at: When it finished, if it did.
        run_id: The workflow run it belongs to.
        runner_id: GitHub's id of the runner that picked it up, if any.
        name: The job's name.
        workflow_name: The workflow's name.
    """

    id: int
    status: JobStatus
    conclusion: str | None
    created_at: datetime
    started_at: datetime | None
    runner_name: str | None
    labels: tuple[str, ...] = ()
    completed_at: datetime | None = None
    run_id: int | None = None
    runner_id: int | None = None
    name: str | None = None
    workflow_name: str | None = None


# --- repository policy (collaborators, branch protection, pull requests) ----------------------

#: Permission levels a collaborator may hold on a repository, weakest first.
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")


@dataclass(frozen=True)
class BranchProtection:
    """The protection of a branch (``GET .../branches/{branch}/protection``).

    Attributes:
        required_approving_review_count: Approving reviews a pull request needs before merging,
            or None when the protection does not require reviews.
        require_code_owner_reviews: Whether code owners must approve.
        dismiss_stale_reviews: Whether new commits dismiss approvals.
        enforce_admins: Whether the rules apply to administrators too.
        allow_force_pushes: Whether force pushes are allowed.
    """

    required_approving_review_count: int | None
    require_code_owner_reviews: bool = False
    dismiss_stale_reviews: bool = False
    enforce_admins: bool = False
    allow_force_pushes: bool = False

    @property
    def requires_reviews(self) -> bool:
        """Whether a change reaches the branch only through an approved pull request."""
        return (self.required_approving_review_count or 0) >= 1


@dataclass(frozen=True)
class PullRequestInfo:
    """A pull request as GitHub reports it (``GET .../pulls/{pull_number}``).

    Attributes:
        number: The pull request number.
        state: ``open`` or ``closed``.
        author: Login of the user who opened it.
        head_repo: ``owner/repo`` of the repository the changes come from; None when that
            repository was deleted.
        head_owner: Login of the owner of the head repository (None when it was deleted).
        head_owner_type: ``User`` or ``Organization`` (None when it was deleted).
        head_ref: The head branch.
        head_sha: The head commit.
        base_repo: ``owner/repo`` of the repository the pull request targets.
        base_ref: The base branch.
    """

    number: int
    state: str
    author: str
    head_repo: str | None
    head_owner: str | None
    head_owner_type: str | None
    head_ref: str
    head_sha: str
    base_repo: str
    base_ref: str

    @property
    def is_fork(self) -> bool:
        """Whether the changes come from another repository (or a deleted one)."""
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


@dataclass(frozen=True)
class WorkflowRunInfo:
    """A workflow run as GitHub records it (``GET .../actions/runs/{run_id}``).

    Attributes:
        id: The run id.
        repository: ``owner/repo`` of the repository the run belongs to.
        event: The event that triggered it.
        status: queued, in_progress, completed... (None when GitHub sends none).
        head_branch: The branch (or tag) the run is on; a pull request's head branch.
        head_sha: The commit the run is on; a pull request's head commit.
        head_repository: ``owner/repo`` the head commit comes from (a fork for a pull request
            from a fork); None when GitHub sends none.
        head_owner_type: ``User`` or ``Organization``, the head repository's owner type.
        pull_requests: Numbers of the pull requests GitHub links to the run (GitHub leaves this
            empty for pull requests from forks).
    """

    id: int
    repository: str
    event: str
    status: str | None
    head_branch: str | None
    head_sha: str
    head_repository: str | None
    head_owner_type: str | None
    pull_requests: tuple[int, ...] = ()
