"""Jobs and workflow runs of the sandbox model: queueing, assignment, logs and completion."""

from __future__ import annotations

import secrets
import time
from typing import Any

from sandbox.model import Job, Runner, StateError, Step
from sandbox.state_base import MAX_LOG_CHARS, StateBase


class JobQueue(StateBase):
    """Queued, running and completed jobs; every method takes the one lock."""

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
