"""The charm's start.sh runs the sandbox runner without the JIT config on any command line.

actions/runner reads ``--jitconfig`` or, like every option, ``ACTIONS_RUNNER_INPUT_JITCONFIG``
(and removes the variable from what hooks and steps see). start.sh uses the variable: a job
listing every process's ``/proc/<pid>/cmdline`` in the instance finds no JIT config.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

import requests

from manager.templates import template_environment
from sandbox.server import SandboxServer
from tests.sandbox.sandbox_testlib import FAST_ENV, get_job, install_runner, jit_config, queue_job

LIST_COMMAND_LINES = (
    "for p in /proc/[0-9]*; do {{ tr '\\0' ' ' < $p/cmdline; }} 2>/dev/null || true; echo; "
    "done > {out}; env > {env}"
)


def test_no_process_shows_the_jit_config(
    sandbox: SandboxServer, admin: requests.Session, tmp_path: Path
) -> None:
    runner_dir = install_runner(sandbox, admin, tmp_path / "actions-runner")
    script = runner_dir / "start.sh"
    script.write_text(
        template_environment()
        .get_template("start.sh.j2")
        .render(
            runner_dir=str(runner_dir),
            metrics_dir=str(tmp_path / "metrics"),
            runner_user=getpass.getuser(),
            power_off=False,
        )
    )
    script.chmod(0o755)
    jit = jit_config(admin, sandbox, "start-sh")["encoded_jit_config"]
    (runner_dir / ".jitconfig").write_text(jit)
    (runner_dir / ".jitconfig").chmod(0o600)
    out, env = tmp_path / "cmdlines.txt", tmp_path / "env.txt"
    job = queue_job(sandbox, steps=[LIST_COMMAND_LINES.format(out=out, env=env)])
    result = subprocess.run(
        [str(script)],
        check=False,
        env={**os.environ, **FAST_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    done = get_job(sandbox, job["id"])
    assert done["conclusion"] == "success", done["log"]
    command_lines = out.read_text()
    assert "Runner.Listener run" in command_lines, "the listener was running during the step"
    assert jit not in command_lines
    assert jit not in env.read_text(), "steps do not inherit the runner's inputs"
    assert not (runner_dir / ".jitconfig").exists()
