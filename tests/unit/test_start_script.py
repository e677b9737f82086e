"""start.sh as rendered for a runner, run against a scratch runner directory (issue 15, item 9).

The script runs as root in the instance and writes into the metrics store, where a job may
leave links: it must replace them, never write through them. The JIT config reaches the
runner in its environment, never on its command line.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path

import pytest

from manager.templates import template_environment

FAKE_RUN = """#!/bin/sh
printf '%s\\n' "$@" > args.txt
printf '%s' "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" > jit-env.txt
exit "${FAKE_EXIT:-0}"
"""


def _start_script(runner_dir: Path, metrics_dir: Path) -> Path:
    text = (
        template_environment()
        .get_template("start.sh.j2")
        .render(
            runner_dir=str(runner_dir),
            metrics_dir=str(metrics_dir),
            runner_user=getpass.getuser(),
            power_off=False,
        )
    )
    script = runner_dir / "start.sh"
    script.write_text(text)
    script.chmod(0o755)
    return script


@pytest.fixture
def runner_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "runner"
    directory.mkdir()
    run = directory / "run.sh"
    run.write_text(FAKE_RUN)
    run.chmod(0o755)
    (tmp_path / "metrics").mkdir()
    return directory


def _run(script: Path, **env: str) -> int:
    result = subprocess.run(
        [str(script)],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode


def _post_job(metrics: Path) -> dict[str, object]:
    path = metrics / "post-job-metrics.json"
    assert path.is_file() and not path.is_symlink()
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "link", [".post-job-metrics.json.tmp", "post-job-metrics.json"], ids=["tmp", "target"]
)
def test_links_in_the_metrics_store_are_replaced_not_followed(
    runner_dir: Path, tmp_path: Path, link: str
) -> None:
    outside = tmp_path / "host-file"
    outside.write_text("precious\n")
    metrics = tmp_path / "metrics"
    (metrics / link).symlink_to(outside)
    assert _run(_start_script(runner_dir, metrics), FAKE_EXIT="3") == 3
    assert outside.read_text() == "precious\n"
    assert _post_job(metrics)["status"] == "abnormal"
    assert _post_job(metrics)["status_info"] == {"code": 3}


def test_a_linked_metrics_directory_gets_nothing(runner_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = tmp_path / "linked-metrics"
    linked.symlink_to(elsewhere)
    assert _run(_start_script(runner_dir, linked)) == 0
    assert list(elsewhere.iterdir()) == []


def test_the_pre_job_report_stays(runner_dir: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    report = {"timestamp": 1, "status": "repo-policy-check-failure", "status_info": {"code": 403}}
    (metrics / "post-job-metrics.json").write_text(json.dumps(report))
    assert _run(_start_script(runner_dir, metrics), FAKE_EXIT="1") == 1
    assert _post_job(metrics) == report


def test_jit_config_goes_by_environment_and_its_file_is_gone(
    runner_dir: Path, tmp_path: Path
) -> None:
    jit = "eyJzZWNyZXQiOiAiaml0In0="
    (runner_dir / ".jitconfig").write_text(jit)
    (runner_dir / ".jitconfig").chmod(0o600)
    assert _run(_start_script(runner_dir, tmp_path / "metrics")) == 0
    assert (runner_dir / "args.txt").read_text().strip() == ""
    assert (runner_dir / "jit-env.txt").read_text() == jit
    assert not (runner_dir / ".jitconfig").exists()
