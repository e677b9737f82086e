"""Dashboards and alert rules: valid files, and every field they read exists in the events.

A renamed or removed event field (or event name, or status value) breaks a test here instead of
silently emptying a panel or muting an alert.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from metrics.events import (
    EVENT_TYPES,
    Event,
    Reconciliation,
    RunnerInstalled,
    RunnerStart,
    RunnerStop,
)
from metrics.type import CodeInformation, PostJobStatus

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "src" / "grafana_dashboards").glob("*.json"))
RULE_FILES = sorted((ROOT / "src" / "loki_alert_rules").glob("*.rule"))
LOG_FILE = "/var/log/github-runner-metrics.log"

# Labels that come from the log shipper (stream labels), not from the JSON line.
STREAM_LABELS = {
    "filename",
    "juju_model",
    "juju_model_uuid",
    "juju_application",
    "juju_unit",
    "juju_charm",
}
BUILTIN_VARIABLES = {"__interval", "__range", "__rate_interval", "__auto"}

SAMPLES: dict[str, Event] = {
    cls.event_name: event
    for cls, event in (
        (RunnerInstalled, RunnerInstalled(timestamp=1, flavor="f", duration=1)),
        (
            RunnerStart,
            RunnerStart(
                timestamp=1,
                flavor="f",
                workflow="w",
                repo="o/r",
                github_event="push",
                idle=1,
                queue_duration=1,
            ),
        ),
        (
            RunnerStop,
            RunnerStop(
                timestamp=1,
                flavor="f",
                workflow="w",
                repo="o/r",
                github_event="push",
                status="normal",
                status_info=CodeInformation(code=1),
                job_duration=1,
                job_conclusion="success",
            ),
        ),
        (
            Reconciliation,
            Reconciliation(
                timestamp=1,
                flavor="f",
                crashed_runners=0,
                idle_runners=0,
                active_runners=0,
                expected_runners=0,
                duration=1,
            ),
        ),
    )
}


def flatten(data: dict[str, Any], prefix: str = "") -> set[str]:
    """The labels Loki's ``| json`` parser makes of a line: nested keys joined with ``_``."""
    labels: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            labels |= flatten(value, f"{prefix}{key}_")
        else:
            labels.add(f"{prefix}{key}")
    return labels


EVENT_FIELDS = {
    name: flatten(json.loads(event.model_dump_json())) for name, event in SAMPLES.items()
}


def strip_selectors(expr: str) -> str:
    """Drop stream selectors ``{...}`` (stream labels, not JSON fields)."""
    return re.sub(r"\{[^{}]*\}", "{}", expr)


def used_fields(expr: str) -> set[str]:
    """Fields a LogQL expression reads after ``| json``: filters, unwrap, by/without."""
    body = strip_selectors(expr)
    fields = set(re.findall(r"\|\s*([A-Za-z_]\w*)\s*(?:=~|!~|!=|==|=|>=|<=|>|<)", body))
    fields |= set(
        re.findall(r"\bunwrap\s+(?:(?:duration|duration_seconds|bytes)\(\s*)?([A-Za-z_]\w*)", body)
    )
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", body):
        fields |= {name.strip() for name in group.split(",") if name.strip()}
    return fields - {"__error__"} - STREAM_LABELS


def used_events(expr: str) -> set[str]:
    names: set[str] = set()
    for op, value in re.findall(r'\bevent\s*(=~|=)\s*"([^"]*)"', strip_selectors(expr)):
        names |= set(value.split("|")) if op == "=~" else {value}
    return names


def used_statuses(expr: str) -> set[str]:
    return set(re.findall(r'\bstatus\s*(?:=|!=)\s*"([^"]*)"', strip_selectors(expr)))


def template_fields(text: str) -> set[str]:
    """Labels named in a legend ``{{flavor}}`` or an annotation ``{{ $labels.flavor }}``."""
    fields = set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", text))
    fields |= set(re.findall(r"\$labels\.([A-Za-z_]\w*)", text))
    return fields - STREAM_LABELS


def check_expr(expr: str, extra_fields: frozenset[str] = frozenset()) -> None:
    events = used_events(expr)
    assert events, f"query selects no event: {expr}"
    unknown_events = events - set(EVENT_FIELDS)
    assert not unknown_events, f"unknown events {unknown_events} in {expr}"
    allowed = set().union(*(EVENT_FIELDS[name] for name in events))
    missing = (used_fields(expr) | extra_fields) - allowed
    assert not missing, f"fields {missing} are not fields of {events}: {expr}"
    assert used_statuses(expr) <= {status.value for status in PostJobStatus}
    assert f'filename="{LOG_FILE}"' in expr


def load_dashboard(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels_with_targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel.get("type") != "row"]


def all_dashboard_exprs() -> list[tuple[str, str, str]]:
    return [
        (path.name, target["expr"], target.get("legendFormat", ""))
        for path in DASHBOARDS
        for panel in panels_with_targets(load_dashboard(path))
        for target in panel["targets"]
    ]


def all_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


# --- the extractor itself ----------------------------------------------------------------------


def test_extractor_sees_filters_unwraps_and_groupings() -> None:
    expr = (
        'quantile_over_time(0.5, {filename="x", juju_model=~"$m"} | json | __error__="" '
        '| event="runner_start" | queue_duration < 60 | repo!="a" | unwrap duration(idle) '
        "[5m]) by (flavor, github_event)"
    )
    assert used_fields(expr) == {
        "event",
        "queue_duration",
        "repo",
        "idle",
        "flavor",
        "github_event",
    }
    assert used_events(expr) == {"runner_start"}
    assert used_events('x | event=~"runner_start|runner_stop"') == {"runner_start", "runner_stop"}
    assert template_fields("{{flavor}} {{ $labels.repo }} {{ $value }}") == {"flavor", "repo"}


def test_a_renamed_field_is_caught() -> None:
    selector = f'{{filename="{LOG_FILE}"}}'
    expr = f'sum by (flavour) (count_over_time({selector} | json | event="runner_start" [1m]))'
    with pytest.raises(AssertionError, match="flavour"):
        check_expr(expr)
    expr = f'count_over_time({{filename="{LOG_FILE}"}} | json | event="runner_started" [1m])'
    with pytest.raises(AssertionError, match="unknown events"):
        check_expr(expr)


def test_nested_status_info_is_flattened_like_loki() -> None:
    assert "status_info_code" in EVENT_FIELDS["runner_stop"]
    assert set(EVENT_FIELDS) == {cls.event_name for cls in EVENT_TYPES}


def test_samples_cover_every_model_field() -> None:
    """The samples set every field (no None), so the flattened labels are complete."""
    for name, event in SAMPLES.items():
        dumped = json.loads(event.model_dump_json())
        assert set(dumped) == set(type(event).model_fields), name
        assert None not in dumped.values(), name


# --- dashboards ----------------------------------------------------------------------------------


def test_there_are_two_dashboards() -> None:
    assert {path.name for path in DASHBOARDS} == {
        "github_runner_operations.json",
        "github_runner_long_term.json",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["lokids"]["type"] == "datasource"
    assert variables["lokids"]["query"] == "loki"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    panels = panels_with_targets(dashboard)
    assert len(panels) >= 8
    for panel in panels:
        assert panel["title"]
        assert panel["datasource"] == {"type": "loki", "uid": "${lokids}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${lokids}"
            used_vars = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used_vars <= set(variables) | BUILTIN_VARIABLES, used_vars
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${lokids}"


@pytest.mark.parametrize(
    ("name", "expr", "legend"), all_dashboard_exprs(), ids=lambda v: str(v)[:40]
)
def test_dashboard_queries_read_existing_fields(name: str, expr: str, legend: str) -> None:
    check_expr(expr, frozenset(template_fields(legend)))


def test_operations_dashboard_covers_the_metrics() -> None:
    dashboard = load_dashboard(
        ROOT / "src" / "grafana_dashboards" / "github_runner_operations.json"
    )
    exprs = [t["expr"] for p in panels_with_targets(dashboard) for t in p["targets"]]
    text = "\n".join(exprs)
    for needle in (
        "quantile_over_time(0.5,",
        "quantile_over_time(0.95,",
        "max_over_time(",
        "queue_duration < 60",
        "unwrap queue_duration",
        "unwrap idle ",
        "unwrap job_duration",
        "unwrap duration",
        "unwrap idle_runners",
        "unwrap crashed_runners",
        "by (status)",
        "by (job_conclusion)",
        "by (repo)",
        'status="repo-policy-check-failure"',
    ):
        assert needle in text, needle
    all_events = set().union(*(used_events(e) for e in exprs))
    assert all_events == set(EVENT_FIELDS)


# --- alert rules ---------------------------------------------------------------------------------


def test_rule_files_exist() -> None:
    assert RULE_FILES


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r["alert"])
def test_rule_structure_and_fields(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"GithubRunner[A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    if "for" in rule:
        assert re.fullmatch(r"\d+[smh]", rule["for"])
    fields = template_fields(rule["annotations"]["summary"] + rule["annotations"]["description"])
    check_expr(rule["expr"])
    grouped_labels = {
        label.strip()
        for group in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"])
        for label in group.split(",")
        if label.strip()
    }
    assert fields <= grouped_labels, f"annotation labels {fields - grouped_labels} are not grouped"


def test_rules_cover_the_alerts() -> None:
    names = {rule["alert"] for rule in all_rules()}
    assert names >= {
        "GithubRunnerJobQueueDurationHigh",
        "GithubRunnerNoIdleRunners",
        "GithubRunnerShortIdleTime",
        "GithubRunnerCrashedRunners",
        "GithubRunnerRepoPolicyCheckFailures",
        "GithubRunnerRepoPolicyServerErrors",
    }
