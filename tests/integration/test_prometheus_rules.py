"""The Prometheus alert rules, as the cos-agent relation carries them, under `promtool test rules`.

The rules are rendered by the provider's own function (cosl topology) and fed series labelled
the way the agent labels what it scrapes (topology of the application, ``juju_unit``,
``instance``, ``job``; no ``juju_charm``). Each alert has series that must make it fire and
series that must not. Needs Debian's ``prometheus`` package (``scripts/setup-prometheus.sh``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cosl import JujuTopology

from charms.github_runner.v0.cos_agent import render_rules

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "src" / "prometheus_alert_rules"
TOPOLOGY = JujuTopology(
    model="ci",
    model_uuid="0f2b6c1e-7d3a-4e2b-9c8d-112233445566",
    application="gh",
    unit="gh/0",
    charm_name="github-runner",
)
AGENT_LABELS = {
    "juju_model": "ci",
    "juju_model_uuid": "0f2b6c1e-7d3a-4e2b-9c8d-112233445566",
    "juju_application": "gh",
    "juju_unit": "gh/0",
    "instance": "ci_0f2b6c1e-7d3a-4e2b-9c8d-112233445566_gh_gh/0",
    "job": "juju_ci_0f2b6c1_gh_github-runner_9464",
}
RULE_LABELS = {**TOPOLOGY.label_matcher_dict}  # what cosl adds to every rule


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: run scripts/setup-prometheus.sh (Debian's prometheus)"
    return path


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    merged = {**labels, **AGENT_LABELS}
    body = ", ".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def alert(name: str, eval_time: str, severity: str, **labels: str) -> dict[str, Any]:
    expected = {"severity": severity, **RULE_LABELS, **labels}
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": [{"exp_labels": expected}]}


def silent(name: str, eval_time: str) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": []}


def queue_buckets(bucket: str) -> list[dict[str, str]]:
    """One job a minute, each in ``bucket`` (and every bucket above it)."""
    bounds = ["1.0", "5.0", "30.0", "60.0", "300.0", "600.0", "1200.0", "+Inf"]
    name = "runner_queue_duration_seconds_bucket"
    return [
        series(name, "0+1x120" if float(le) >= float(bucket) else "0x120", flavor="gh", le=le)
        for le in bounds
    ]


CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, Any]]]] = {
    "not-online-fires": (
        [series("deleted_runners_total", "0+1x60", flavor="gh", reason="unhealthy")],
        [alert("GithubRunnerNotComingOnline", "50m", "critical", flavor="gh")],
    ),
    "not-online-silent-when-runners-come-online": (
        [
            series("deleted_runners_total", "0+1x60", flavor="gh", reason="unhealthy"),
            series("runner_time_to_online_seconds_count", "0+1x60", flavor="gh"),
        ],
        [silent("GithubRunnerNotComingOnline", "50m")],
    ),
    "no-idle-fires-when-all-busy": (
        [
            series("idle_runners_count", "0x60", flavor="gh"),
            series("busy_runners_count", "4x60", flavor="gh"),
            series("expected_runners_count", "4x60", flavor="gh"),
        ],
        [alert("GithubRunnerNoIdleRunnersWhileJobsWait", "45m", "warning", flavor="gh")],
    ),
    "no-idle-fires-when-the-queue-waits": (
        [
            series("idle_runners_count", "0x60", flavor="gh"),
            series("busy_runners_count", "1x60", flavor="gh"),
            series("expected_runners_count", "4x60", flavor="gh"),
            series("reactive_queue_depth", "3x60", flavor="gh"),
        ],
        [alert("GithubRunnerNoIdleRunnersWhileJobsWait", "45m", "warning", flavor="gh")],
    ),
    "no-idle-silent-with-idle-runners-or-none-expected": (
        [
            series("idle_runners_count", "1x60", flavor="gh"),
            series("busy_runners_count", "4x60", flavor="gh"),
            series("expected_runners_count", "4x60", flavor="gh"),
            series("idle_runners_count", "0x60", flavor="other"),
            series("busy_runners_count", "0x60", flavor="other"),
            series("expected_runners_count", "0x60", flavor="other"),
            series("reactive_queue_depth", "0x60", flavor="other"),
        ],
        [silent("GithubRunnerNoIdleRunnersWhileJobsWait", "45m")],
    ),
    "creation-failures-fire": (
        [series("runner_creation_failures_total", "0+1x60", flavor="gh")],
        [alert("GithubRunnerCreationFailures", "40m", "warning", flavor="gh")],
    ),
    "creation-failures-silent-when-old": (
        [series("runner_creation_failures_total", "5x60", flavor="gh")],
        [silent("GithubRunnerCreationFailures", "40m")],
    ),
    "rate-limit-fires": (
        [
            series("github_api_rate_limit_remaining", "100x30"),
            series("github_api_rate_limit_limit", "5000x30"),
        ],
        [alert("GithubRunnerApiRateLimitLow", "20m", "warning", **AGENT_LABELS)],
    ),
    "rate-limit-silent": (
        [
            series("github_api_rate_limit_remaining", "4000x30"),
            series("github_api_rate_limit_limit", "5000x30"),
        ],
        [silent("GithubRunnerApiRateLimitLow", "20m")],
    ),
    "queue-wait-fires": (
        queue_buckets("600.0"),
        [alert("GithubRunnerJobQueueWaitHigh", "90m", "warning", flavor="gh")],
    ),
    "queue-wait-silent": (
        queue_buckets("30.0"),
        [silent("GithubRunnerJobQueueWaitHigh", "90m")],
    ),
}


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rendered = render_rules(RULES_DIR, TOPOLOGY, "promql")
    for group in rendered["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templates: checked in tests/unit, not by promtool
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered), encoding="utf-8")
    check = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return path


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rendered = render_rules(RULES_DIR, TOPOLOGY, "promql")
    alerts = {rule["alert"] for group in rendered["groups"] for rule in group["rules"]}
    firing = {t["alertname"] for _, tests in CASES.values() for t in tests if t["exp_alerts"]}
    quiet = {t["alertname"] for _, tests in CASES.values() for t in tests if not t["exp_alerts"]}
    assert alerts == firing == quiet


@pytest.mark.parametrize("case", sorted(CASES))
def test_promtool_rule_case(case: str, rules_file: Path, tmp_path: Path) -> None:
    input_series, alert_tests = CASES[case]
    spec = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": input_series, "alert_rule_test": alert_tests}
        ],
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
