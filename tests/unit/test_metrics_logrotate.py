"""The logrotate template rotates the metrics log the events are written to."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from metrics.events import METRICS_LOG_PATH

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "logrotate-github-runner-metrics"


def test_template_names_the_metrics_log() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    assert f"{METRICS_LOG_PATH} {{" in text
    assert "copytruncate" not in text  # writers reopen the file for every event


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_accepts_the_template(tmp_path: Path) -> None:
    result = subprocess.run(
        ["logrotate", "--debug", "--state", str(tmp_path / "state"), str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
