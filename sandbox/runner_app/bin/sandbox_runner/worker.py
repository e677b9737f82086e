"""Running one job: job hooks, shell steps, log streaming, step and job reports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from .client import ProtocolError, RunnerClient
from .settings import Settings, Tuning, read_env_file, root_dir
from .settings import arch as host_arch

FLUSH_INTERVAL = 0.2
FLUSH_BYTES = 16 * 1024
MAX_LOG_BYTES = 8 * 1024 * 1024
HOOK_STARTED = "ACTIONS_RUNNER_HOOK_JOB_STARTED"
HOOK_COMPLETED = "ACTIONS_RUNNER_HOOK_JOB_COMPLETED"
COMPLETED_HOOK_TIMEOUT = 300.0
BASH = ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail"]


class AnyOf:
    """Set when any of its events is set (the runner's stop, or the job's cancellation)."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        """Whether one of the events is set.

        Returns:
            True when cancelled.
        """
        return any(event.is_set() for event in self.events)


class LogSink:
    """Buffers job output and sends it to the server in chunks, from a background thread."""

    def __init__(self, client: RunnerClient, job_id: int, diag: IO[str]):
        self._client = client
        self._job_id = job_id
        self._diag = diag
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._size = 0
        self._sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def write(self, text: str) -> None:
        """Add text to the log.

        Args:
            text: the text (lines keep their newline).
        """
        with self._lock:
            self._diag.write(text)
            self._diag.flush()
            if self._sent + self._size > MAX_LOG_BYTES:
                return
            self._buffer.append(text)
            self._size += len(text)
            full = self._size >= FLUSH_BYTES
        if full:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered (a failed send is logged locally and dropped)."""
        with self._lock:
            text, self._buffer, self._size = "".join(self._buffer), [], 0
        if not text:
            return
        try:
            self._client.log(self._job_id, text)
            self._sent += len(text)
        except ProtocolError as exc:
            with self._lock:
                self._diag.write(f"[runner] could not send log chunk: {exc}\n")

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL):
            self.flush()

    def close(self) -> None:
        """Stop the thread and send the rest."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


class Heartbeat:
    """Keeps the runner online during a job; sets ``cancel`` when the job is cancelled."""

    def __init__(self, client: RunnerClient, interval: float, cancel: threading.Event):
        self._client = client
        self._interval = interval
        self._cancel = cancel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(ProtocolError):
                if self._client.heartbeat():
                    self._cancel.set()

    def stop(self) -> None:
        """Stop beating."""
        self._stop.set()
        self._thread.join(timeout=5)


def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    sink: LogSink,
    deadline: float,
    cancel: AnyOf,
) -> int:
    """Run a command, streaming its output to the log, bounded by a deadline.

    Args:
        argv: the command.
        env: its environment.
        cwd: its working directory.
        sink: where output goes.
        deadline: monotonic time after which it is killed.
        cancel: set to kill it early.

    Returns:
        Its exit code; negative when it was killed (timeout or cancel).
    """
    try:
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        sink.write(f"##[error]cannot start {argv[0]}: {exc}\n")
        return 127
    assert proc.stdout is not None

    def pump() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            sink.write(raw.decode(errors="replace"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    killed = False
    while proc.poll() is None:
        if cancel.is_set() or time.monotonic() > deadline:
            killed = True
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
    reader.join(timeout=5)
    proc.stdout.close()
    return -9 if killed else int(proc.returncode)


class JobRunner:
    """Runs one job message to its conclusion."""

    def __init__(
        self,
        client: RunnerClient,
        settings: Settings,
        *,
        tuning: Tuning,
        job: dict[str, Any],
        diag_dir: Path,
        cancel: threading.Event,
    ):
        self.client = client
        self.settings = settings
        self.tuning = tuning
        self.job = job
        self.job_id = int(job["id"])
        self.cancelled_by_server = threading.Event()
        self.cancel = AnyOf(cancel, self.cancelled_by_server)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self.diag_path = diag_dir / f"Worker_{stamp}-utc.log"
        self.deadline = time.monotonic() + (tuning.job_timeout or 365 * 86400.0)
        self.started_hook_failed = False

    # ---- environment ---------------------------------------------------------------------

    def _paths(self) -> tuple[Path, Path, Path]:
        repo_name = str(self.job["repository"]).split("/", 1)[-1]
        work = self.settings.work_folder
        workspace = work / repo_name / repo_name
        temp = work / "_temp"
        return work, workspace, temp

    def environment(self, event_path: Path) -> dict[str, str]:
        """The variables job hooks and steps see.

        Args:
            event_path: the event payload file.

        Returns:
            os.environ + GITHUB_* / RUNNER_* + the runner's ``.env``.
        """
        job = self.job
        work, workspace, temp = self._paths()
        repository = str(job["repository"])
        ref = str(job.get("ref", ""))
        payload = job.get("event_payload") or {}
        pull = payload.get("pull_request") if isinstance(payload, dict) else None
        head_ref = base_ref = ""
        if isinstance(pull, dict):
            head_ref = str((pull.get("head") or {}).get("ref", ""))
            base_ref = str((pull.get("base") or {}).get("ref", ""))
        arch = {"x64": "X64", "arm64": "ARM64", "arm": "ARM"}.get(
            str(self.settings.runner.get("arch") or host_arch()), "X64"
        )
        # the runner's own inputs (a JIT config, tokens) are not for jobs
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_RUNNER_INPUT_")}
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_REPOSITORY": repository,
                "GITHUB_REPOSITORY_OWNER": repository.split("/", 1)[0],
                "GITHUB_WORKFLOW": str(job.get("workflow", "")),
                "GITHUB_RUN_ID": str(job.get("run_id", "")),
                "GITHUB_RUN_NUMBER": str(job.get("run_number", job.get("run_id", ""))),
                "GITHUB_RUN_ATTEMPT": str(job.get("run_attempt", 1)),
                "GITHUB_JOB": str(job.get("name", "")),
                "GITHUB_EVENT_NAME": str(job.get("event", "")),
                "GITHUB_EVENT_PATH": str(event_path),
                "GITHUB_SHA": str(job.get("head_sha", "")),
                "GITHUB_REF": ref,
                "GITHUB_REF_NAME": ref.rsplit("/", 1)[-1],
                "GITHUB_HEAD_REF": head_ref,
                "GITHUB_BASE_REF": base_ref,
                "GITHUB_ACTOR": str(job.get("actor", "")),
                "GITHUB_SERVER_URL": str(job.get("server_url", "")),
                "GITHUB_API_URL": str(job.get("api_url", "")),
                "GITHUB_WORKSPACE": str(workspace),
                "RUNNER_NAME": self.settings.name,
                "RUNNER_OS": "Linux",
                "RUNNER_ARCH": arch,
                "RUNNER_TEMP": str(temp),
                "RUNNER_TOOL_CACHE": str(work / "_tool"),
                "RUNNER_WORKSPACE": str(workspace.parent),
            }
        )
        env.update(read_env_file(root_dir()))
        return env

    # ---- steps ---------------------------------------------------------------------------

    def _report(self, step: dict[str, Any]) -> None:
        try:
            self.client.step(self.job_id, step)
        except ProtocolError as exc:
            self.sink.write(f"[runner] could not report step {step['number']}: {exc}\n")

    def _step(self, number: int, name: str) -> dict[str, Any]:
        step = {"number": number, "name": name, "status": "in_progress", "conclusion": None}
        step["started_at"] = time.time()
        self._report(step)
        return step

    def _finish(self, step: dict[str, Any], conclusion: str) -> None:
        step.update(status="completed", conclusion=conclusion, completed_at=time.time())
        self._report(step)

    def _hook(self, variable: str, env: dict[str, str], cwd: Path) -> int | None:
        path = env.get(variable, "").strip()
        if not path:
            return None
        kind = "started" if variable == HOOK_STARTED else "completed"
        self.sink.write(
            f"A job {kind} hook has been configured by the self-hosted runner administrator\n"
        )
        argv = [*BASH, path] if path.endswith(".sh") else [path]
        if variable == HOOK_COMPLETED:
            # the clean-up hook runs even for a cancelled or timed-out job, on its own clock
            deadline, cancel = time.monotonic() + COMPLETED_HOOK_TIMEOUT, AnyOf()
        else:
            deadline, cancel = self.deadline, self.cancel
        code = run_process(
            argv, env=env, cwd=cwd, sink=self.sink, deadline=deadline, cancel=cancel
        )
        if code != 0:
            self.sink.write(f"##[error]Process completed with exit code {code}.\n")
        return code

    def _clean_temp(self, temp: Path) -> None:
        for entry in temp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def run(self) -> str:
        """Run the job and report it.

        Returns:
            The conclusion: success, failure or cancelled.
        """
        self.diag_path.parent.mkdir(parents=True, exist_ok=True)
        with self.diag_path.open("a") as diag:
            self.sink = LogSink(self.client, self.job_id, diag)
            beat = Heartbeat(self.client, self.tuning.heartbeat, self.cancelled_by_server)
            try:
                conclusion = self._run_steps()
            except Exception as exc:  # any bug still concludes the job
                self.sink.write(f"##[error]runner failure: {exc!r}\n")
                conclusion = "failure"
            finally:
                beat.stop()
                self.sink.close()
        try:
            self.client.complete(self.job_id, conclusion)
        except ProtocolError as exc:
            with self.diag_path.open("a") as diag:
                diag.write(f"[runner] could not report the conclusion: {exc}\n")
        return conclusion

    def _run_steps(self) -> str:
        work, workspace, temp = self._paths()
        for path in (workspace, temp, work / "_tool", temp / "_github_workflow"):
            path.mkdir(parents=True, exist_ok=True)
        event_path = temp / "_github_workflow" / "event.json"
        event_path.write_text(json.dumps(self.job.get("event_payload") or {}))
        env = self.environment(event_path)
        commands = [str(c) for c in self.job.get("steps", [])]
        self.sink.write(f"Job {self.job.get('name')} (id {self.job_id}) on {self.settings.name}\n")

        setup = self._step(1, "Set up job")
        started = self._hook(HOOK_STARTED, env, workspace)
        ok = started in (None, 0)
        self._finish(setup, "success" if ok else "failure")

        for index, command in enumerate(commands):
            name = "Run " + (command.strip().splitlines() or [""])[0][:80]
            number = index + 2
            if not ok or self.cancel.is_set():
                skipped = {"number": number, "name": name, "status": "completed"}
                self._report({**skipped, "conclusion": "skipped"})
                continue
            step = self._step(number, name)
            script = temp / f"step-{self.job_id}-{number}.sh"
            script.write_text(command + "\n")
            self.sink.write(f"##[group]{name}\n{command}\n##[endgroup]\n")
            code = run_process(
                [*BASH, str(script)],
                env=env,
                cwd=workspace,
                sink=self.sink,
                deadline=self.deadline,
                cancel=self.cancel,
            )
            if code != 0:
                self.sink.write(f"##[error]Process completed with exit code {code}.\n")
                ok = False
            self._finish(step, "success" if code == 0 else "failure")

        complete = self._step(len(commands) + 2, "Complete job")
        self._hook(HOOK_COMPLETED, env, workspace)
        self._finish(complete, "success")
        self._clean_temp(temp)
        if self.cancel.is_set():
            return "cancelled"
        return "success" if ok else "failure"
