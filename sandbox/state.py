"""In-memory model of the sandbox: scopes, runners, tokens, runner groups and jobs.

Every public method takes the one lock, so the model is safe to use from the server's request
threads. Long polls wait on :attr:`SandboxState.changed`, a condition bound to that lock. The
model objects live in :mod:`sandbox.model` and are re-exported here.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from sandbox.model import (
    Job,
    Label,
    RemoteToken,
    Runner,
    RunnerGroup,
    Scope,
    StateError,
    Step,
    iso,
)

__all__ = [
    "Job",
    "Label",
    "RemoteToken",
    "Runner",
    "RunnerGroup",
    "SandboxState",
    "Scope",
    "StateError",
    "Step",
    "iso",
]

DEFAULT_GROUP_ID = 1
DEFAULT_GROUP_NAME = "default"
REGISTRATION_TOKEN_TTL = 3600.0
ONLINE_WINDOW = 10.0
LOST_TIMEOUT = 30.0
MAX_LOG_CHARS = 16 * 1024 * 1024
DEFAULT_LABEL_NAMES = ("self-hosted", "linux", "x64", "arm64", "arm", "windows", "macos")


JobListener = Callable[[str, "Job"], None]


class SandboxState:  # pylint: disable=too-many-instance-attributes,too-many-public-methods
    """The whole in-memory model, guarded by one lock."""

    def __init__(
        self,
        runner_version: str,
        online_window: float = ONLINE_WINDOW,
        lost_timeout: float = LOST_TIMEOUT,
    ):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.runner_version = runner_version
        self.online_window = online_window
        self.lost_timeout = lost_timeout
        self.allowed_scopes: set[str] | None = None
        self.closed = False
        self.runners: dict[int, Runner] = {}
        self.jobs: dict[int, Job] = {}
        self.remote_tokens: dict[str, RemoteToken] = {}
        self.groups: dict[str, list[RunnerGroup]] = {}
        self.label_ids: dict[str, int] = {}
        self.job_listeners: list[JobListener] = []
        self._next_runner_id = 1
        self._next_job_id = 1000
        self._next_run_id = 500
        self._next_group_id = 2

    # ---- helpers -------------------------------------------------------------------------

    def _label(self, name: str, read_only: bool) -> Label:
        key = name.lower()
        if key not in self.label_ids:
            self.label_ids[key] = len(self.label_ids) + 1
        return Label(self.label_ids[key], name, "read-only" if read_only else "custom")

    def _notify(self, action: str, job: Job) -> None:
        job.events[action] = time.time()
        self.changed.notify_all()
        for listener in list(self.job_listeners):
            listener(action, job)

    def reap_lost_jobs(self) -> list[Job]:
        """Fail the jobs of busy runners not heard from for ``lost_timeout`` seconds.

        GitHub fails such a job ("lost communication with the server") and frees the runner;
        an ephemeral runner is then deleted.

        Returns:
            The jobs that were failed.
        """
        with self.lock:
            now = time.time()
            lost = []
            for runner in list(self.runners.values()):
                if runner.job_id is None or runner.last_seen is None:
                    continue
                if now - runner.last_seen <= self.lost_timeout:
                    continue
                job = self.jobs[runner.job_id]
                job.log.append(
                    f"##[error]The runner {runner.name} has lost communication with the server.\n"
                )
                self.complete_job(runner, job, "failure")
                lost.append(job)
            return lost

    def scope_allowed(self, scope: Scope) -> bool:
        """Whether a repository or organization exists (all do unless a list was set).

        Args:
            scope: the scope.

        Returns:
            True when allowed.
        """
        with self.lock:
            if self.allowed_scopes is None:
                return True
            return scope.name.lower() in self.allowed_scopes or (
                scope.kind == "repo" and scope.owner.lower() in self.allowed_scopes
            )

    def close(self) -> None:
        """Wake every long poll and refuse new ones."""
        with self.lock:
            self.closed = True
            self.changed.notify_all()

    # ---- runner groups -------------------------------------------------------------------

    def org_groups(self, org: str) -> list[RunnerGroup]:
        """Runner groups of an organization: "default" (id 1) plus any created ones.

        Args:
            org: organization login.

        Returns:
            The groups, default first.
        """
        with self.lock:
            default = RunnerGroup(DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME, "all", True)
            return [default, *self.groups.get(org.lower(), [])]

    def add_group(self, org: str, name: str, visibility: str = "all") -> RunnerGroup:
        """Create a runner group in an organization (control API).

        Args:
            org: organization login.
            name: group name.
            visibility: "all", "selected" or "private".

        Returns:
            The group (existing one if the name is taken).
        """
        with self.lock:
            for group in self.org_groups(org):
                if group.name.lower() == name.lower():
                    return group
            group = RunnerGroup(self._next_group_id, name, visibility)
            self._next_group_id += 1
            self.groups.setdefault(org.lower(), []).append(group)
            return group

    def _find_group(self, scope: Scope, group_id: int | None, name: str | None) -> RunnerGroup:
        groups = self.org_groups(scope.owner) if scope.kind == "org" else self.org_groups("")
        for group in groups:
            if group_id is not None and group.id == group_id:
                return group
            if name is not None and group.name.lower() == name.lower():
                return group
        what = group_id if group_id is not None else name
        raise StateError(404, f"Runner group {what} not found")

    # ---- tokens --------------------------------------------------------------------------

    def create_remote_token(self, kind: str, scope: Scope) -> RemoteToken:
        """Create a registration or remove token valid for one hour.

        Args:
            kind: "registration" or "remove".
            scope: where it registers or removes runners.

        Returns:
            The token.
        """
        with self.lock:
            now = time.time()
            for token in [t for t in self.remote_tokens.values() if t.expires_at < now]:
                del self.remote_tokens[token.token]
            value = "A" + secrets.token_hex(14).upper()
            token = RemoteToken(value, kind, scope, now + REGISTRATION_TOKEN_TTL)
            self.remote_tokens[value] = token
            return token

    def check_remote_token(self, value: str, kind: str) -> RemoteToken:
        """Look up an unexpired token of a kind.

        Args:
            value: the token.
            kind: the kind it must be.

        Returns:
            The token.

        Raises:
            StateError: 401 if unknown, expired or of the other kind.
        """
        with self.lock:
            token = self.remote_tokens.get(value)
            if token is None or token.kind != kind or token.expires_at < time.time():
                raise StateError(401, f"Invalid or expired {kind} token")
            return token

    # ---- runners -------------------------------------------------------------------------

    def register_runner(
        self,
        scope: Scope,
        name: str,
        labels: list[str],
        *,
        group_id: int | None = None,
        group_name: str | None = None,
        ephemeral: bool = True,
        jit: bool = False,
        default_labels: bool = True,
        replace: bool = False,
        arch: str = "x64",
        work_folder: str = "_work",
    ) -> Runner:
        """Add a runner to a scope.

        Args:
            scope: repository or organization.
            name: runner name, unique in the scope.
            labels: custom labels.
            group_id: runner group id (org scope).
            group_name: runner group name (org scope), if no id.
            ephemeral: whether the runner takes one job only.
            jit: whether it came from generate-jitconfig.
            default_labels: whether to add self-hosted, linux and the architecture.
            replace: replace a runner of the same name instead of failing.
            arch: architecture of the runner, for its default label.
            work_folder: work folder relative to the runner directory.

        Returns:
            The new runner.

        Raises:
            StateError: 409 if the name is taken, 404 for an unknown group.
        """
        with self.lock:
            if group_id is None and not group_name:
                group_id = DEFAULT_GROUP_ID
            group = self._find_group(scope, group_id, group_name if group_id is None else None)
            existing = self.find_runner_by_name(scope, name)
            if existing is not None:
                if not replace:
                    raise StateError(409, "Already exists - A runner with the same name exists.")
                del self.runners[existing.id]
            names: list[str] = ["self-hosted", "linux", arch] if default_labels else []
            for label in labels:
                if label.lower() not in {n.lower() for n in names}:
                    names.append(label)
            runner = Runner(
                id=self._next_runner_id,
                name=name,
                scope=scope,
                group_id=group.id,
                group_name=group.name,
                labels=[self._label(n, n.lower() in DEFAULT_LABEL_NAMES) for n in names],
                ephemeral=ephemeral,
                credential=secrets.token_urlsafe(24),
                jit=jit,
                arch=arch,
                work_folder=work_folder,
            )
            self._next_runner_id += 1
            self.runners[runner.id] = runner
            self.changed.notify_all()
            return runner

    def find_runner_by_name(self, scope: Scope, name: str) -> Runner | None:
        """Find a runner by name within a scope.

        Args:
            scope: the scope.
            name: the runner name (case-insensitive).

        Returns:
            The runner or None.
        """
        with self.lock:
            for runner in self.runners.values():
                if runner.scope == scope and runner.name.lower() == name.lower():
                    return runner
            return None

    def list_runners(self, scope: Scope, name: str | None = None) -> list[Runner]:
        """Runners of a scope, by id.

        Args:
            scope: the scope.
            name: only runners of this exact name.

        Returns:
            The runners.
        """
        with self.lock:
            return [
                r
                for r in sorted(self.runners.values(), key=lambda r: r.id)
                if r.scope == scope and (name is None or r.name == name)
            ]

    def get_runner(self, scope: Scope, runner_id: int) -> Runner:
        """A runner of a scope.

        Args:
            scope: the scope.
            runner_id: its id.

        Returns:
            The runner.

        Raises:
            StateError: 404 if there is none.
        """
        with self.lock:
            runner = self.runners.get(runner_id)
            if runner is None or runner.scope != scope:
                raise StateError(404, "Not Found")
            return runner

    def delete_runner(self, scope: Scope, runner_id: int) -> None:
        """Delete an idle runner.

        Args:
            scope: the scope.
            runner_id: its id.

        Raises:
            StateError: 404 if unknown, 422 if it is running a job.
        """
        with self.lock:
            runner = self.get_runner(scope, runner_id)
            if runner.busy:
                raise StateError(422, f"Bad request - Runner {runner.name} is still running a job")
            del self.runners[runner_id]
            self.changed.notify_all()

    def runner_by_credential(self, credential: str) -> Runner:
        """The runner holding a credential.

        Args:
            credential: the runner credential.

        Returns:
            The runner.

        Raises:
            StateError: 401 if no runner has it (e.g. it was deleted).
        """
        with self.lock:
            for runner in self.runners.values():
                if secrets.compare_digest(runner.credential, credential):
                    return runner
            raise StateError(401, "Runner credential not recognized (runner deleted?)")

    def touch(self, runner: Runner, version: str | None = None, arch: str | None = None) -> None:
        """Record that a runner has been heard from.

        Args:
            runner: the runner.
            version: runner app version it reports.
            arch: architecture it reports.
        """
        with self.lock:
            runner.last_seen = time.time()
            if version:
                runner.version = version
            if arch and arch != runner.arch:
                for label in runner.labels:
                    if label.type == "read-only" and label.name.lower() == runner.arch:
                        label.name = arch
                        label.id = self._label(arch, True).id
                runner.arch = arch

    # ---- jobs ----------------------------------------------------------------------------

    def queue_job(
        self,
        repository: str,
        labels: list[str],
        commands: list[str],
        *,
        name: str = "build",
        workflow: str = "ci",
        event: str = "push",
        ref: str = "refs/heads/main",
        head_sha: str | None = None,
        actor: str = "octocat",
        event_payload: dict[str, Any] | None = None,
        run_id: int | None = None,
    ) -> Job:
        """Queue a job for self-hosted runners.

        Args:
            repository: "owner/repo".
            labels: runs-on labels; a runner must have them all.
            commands: shell steps.
            name: job name.
            workflow: workflow name.
            event: triggering event name.
            ref: git ref.
            head_sha: commit; random when not given.
            actor: who triggered it.
            event_payload: the event payload; a minimal one is made when not given.
            run_id: workflow run to add it to; a new run when not given.

        Returns:
            The job.
        """
        with self.lock:
            if run_id is None:
                run_id = self._next_run_id
                self._next_run_id += 1
            sha = head_sha or secrets.token_hex(20)
            job = Job(
                id=self._next_job_id,
                run_id=run_id,
                repository=repository,
                labels=list(labels),
                commands=list(commands),
                name=name,
                workflow=workflow,
                event=event,
                ref=ref,
                head_sha=sha,
                actor=actor,
                event_payload=event_payload or {},
                created_at=time.time(),
            )
            self._next_job_id += 1
            self.jobs[job.id] = job
            self._notify("queued", job)
            return job

    def _matches(self, runner: Runner, job: Job) -> bool:
        have = {label.name.lower() for label in runner.labels}
        return runner.scope.covers(job.repository) and all(
            label.lower() in have for label in job.labels
        )

    def try_assign(self, runner: Runner) -> Job | None:
        """Give the oldest queued job the runner can take to it.

        Args:
            runner: an idle runner.

        Returns:
            The job, now in progress on the runner, or None.
        """
        with self.lock:
            if runner.busy or runner.id not in self.runners:
                return None
            for job in sorted(self.jobs.values(), key=lambda j: j.id):
                if job.status == "queued" and self._matches(runner, job):
                    job.status = "in_progress"
                    job.started_at = time.time()
                    job.runner_id = runner.id
                    job.runner_name = runner.name
                    job.runner_group_id = runner.group_id
                    job.runner_group_name = runner.group_name
                    runner.job_id = job.id
                    runner.last_seen = time.time()
                    self._notify("in_progress", job)
                    return job
            return None

    def unassign(self, runner: Runner, job: Job) -> None:
        """Put a job back in the queue (the runner never received it).

        Args:
            runner: the runner it was given to.
            job: the job.
        """
        with self.lock:
            if job.runner_id != runner.id or job.status != "in_progress":
                return
            job.status = "queued"
            job.started_at = None
            job.runner_id = job.runner_name = None
            job.runner_group_id = job.runner_group_name = None
            runner.job_id = None
            self.changed.notify_all()

    def runner_job(self, runner: Runner, job_id: int) -> Job:
        """The job a runner is running.

        Args:
            runner: the runner.
            job_id: the job id.

        Returns:
            The job.

        Raises:
            StateError: 404 if the runner is not running it.
        """
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.runner_id != runner.id or job.status != "in_progress":
                raise StateError(404, f"Job {job_id} is not running on this runner")
            return job

    def append_log(self, job: Job, text: str) -> None:
        """Append text to a job log (at most MAX_LOG_CHARS characters are kept).

        Args:
            job: the job.
            text: text as the runner sent it.
        """
        with self.lock:
            if job.log_size + len(text) > MAX_LOG_CHARS:
                if job.log_size < MAX_LOG_CHARS:
                    job.log.append("\n##[warning]log truncated by the sandbox\n")
                    job.log_size = MAX_LOG_CHARS
                return
            job.log.append(text)
            job.log_size += len(text)

    def update_step(self, job: Job, step: Step) -> None:
        """Record a step's state, as the runner reports it.

        Args:
            job: the job.
            step: the step (number identifies it).
        """
        with self.lock:
            for i, existing in enumerate(job.steps):
                if existing.number == step.number:
                    job.steps[i] = step
                    break
            else:
                job.steps.append(step)
                job.steps.sort(key=lambda s: s.number)

    def complete_job(self, runner: Runner, job: Job, conclusion: str) -> None:
        """Finish a job; an ephemeral runner is deleted, as GitHub does.

        Args:
            runner: the runner that ran it.
            job: the job.
            conclusion: success, failure or cancelled.
        """
        with self.lock:
            job.status = "completed"
            job.conclusion = conclusion
            job.completed_at = time.time()
            runner.job_id = None
            runner.last_seen = time.time()
            if runner.ephemeral:
                self.runners.pop(runner.id, None)
            self._notify("completed", job)

    def cancel_job(self, job_id: int) -> Job:
        """Cancel a job (control API): a queued one at once, a running one through its runner.

        Args:
            job_id: the job.

        Returns:
            The job.

        Raises:
            StateError: 404 if unknown, 422 if it has completed.
        """
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                raise StateError(404, "Not Found")
            if job.status == "in_progress":
                job.cancel_requested = True  # the runner learns it from its next heartbeat
                return job
            if job.status != "queued":
                raise StateError(422, "The job has already completed")
            job.status = "completed"
            job.conclusion = "cancelled"
            job.completed_at = time.time()
            self._notify("completed", job)
            return job

    def reset(self) -> None:
        """Forget every runner, job, remote token, runner group and scope restriction."""
        with self.lock:
            for runner in self.runners.values():
                runner.job_id = None
            self.runners.clear()
            self.jobs.clear()
            self.remote_tokens.clear()
            self.groups.clear()
            self.allowed_scopes = None
            self.changed.notify_all()

    def get_job(self, job_id: int, repository: str | None = None) -> Job:
        """A job by id.

        Args:
            job_id: the id.
            repository: if given, the job must belong to it.

        Returns:
            The job.

        Raises:
            StateError: 404 if unknown.
        """
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or (
                repository is not None and job.repository.lower() != repository.lower()
            ):
                raise StateError(404, "Not Found")
            return job

    def run_jobs(self, repository: str, run_id: int) -> list[Job]:
        """Jobs of a workflow run.

        Args:
            repository: "owner/repo".
            run_id: the run.

        Returns:
            The jobs, by id.
        """
        with self.lock:
            return [
                j
                for j in sorted(self.jobs.values(), key=lambda j: j.id)
                if j.run_id == run_id and j.repository.lower() == repository.lower()
            ]
