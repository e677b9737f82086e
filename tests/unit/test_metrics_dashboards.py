"""Dashboards and alert rules: valid files, and every field or series they read exists.

Loki dashboards and rules read fields of the metric events; Prometheus ones read the series of
the unit's /metrics (``observability.series``). A renamed or removed event field, event name,
status value, series or series label breaks a test here instead of silently emptying a panel or
muting an alert.
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
from observability.series import SERIES, sample_names
from tests.unit.query_text import metric_names, selectors

ROOT = Path(__file__).resolve().parents[2]
ALL_DASHBOARDS = sorted((ROOT / "src" / "grafana_dashboards").glob("*.json"))
PROM_DASHBOARDS = [p for p in ALL_DASHBOARDS if "prometheus" in p.stem]
DASHBOARDS = [p for p in ALL_DASHBOARDS if p not in PROM_DASHBOARDS]
RULE_FILES = sorted((ROOT / "src" / "loki_alert_rules").glob("*.rule"))
PROM_RULE_FILES = sorted((ROOT / "src" / "prometheus_alert_rules").glob("*.rules"))
# Labels the agent attaches to scraped series; ``le`` of histogram buckets.
SCRAPE_LABELS = {"juju_model", "juju_model_uuid", "juju_application", "juju_unit", "instance"}
SERIES_LABELS = {name: set(s.labels) for s in SERIES for name in s.names()}
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


def test_there_are_three_dashboards() -> None:
    assert {path.name for path in ALL_DASHBOARDS} == {
        "github_runner_operations.json",
        "github_runner_long_term.json",
        "github_runner_prometheus.json",
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


# --- Prometheus: series names and labels ---------------------------------------------------------


def check_promql(expr: str, legend: str = "") -> None:
    """Every series exists on /metrics; every label used is one of a selected series' labels."""
    body = expr.replace("%%juju_topology%%", 'juju_model="m"')
    names = metric_names(body)
    assert names, f"query selects no series: {expr}"
    unknown = names - sample_names()
    assert not unknown, f"series {unknown} are not exported (observability.series): {expr}"
    allowed = SCRAPE_LABELS | set().union(*(SERIES_LABELS[name] for name in names))
    if any(name.endswith("_bucket") for name in names):
        allowed.add("le")
    used = {label for sel in selectors(body) for label in sel.labels()}
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", body):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    used |= set(re.findall(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", legend))
    used |= set(re.findall(r"\$labels\.([A-Za-z_]\w*)", legend))
    assert used <= allowed, f"labels {used - allowed} are on none of {names}: {expr}"


def prom_dashboard_exprs() -> list[tuple[str, str, str]]:
    return [
        (path.name, target["expr"], target.get("legendFormat", ""))
        for path in PROM_DASHBOARDS
        for panel in panels_with_targets(load_dashboard(path))
        for target in panel["targets"]
    ]


def prom_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in PROM_RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def test_the_promql_check_catches_renames() -> None:
    with pytest.raises(AssertionError, match="idle_runner_count"):
        check_promql('sum by (flavor) (idle_runner_count{juju_model="m"})')
    with pytest.raises(AssertionError, match="flavour"):
        check_promql("sum by (flavour) (idle_runners_count)")
    with pytest.raises(AssertionError, match="reason"):
        check_promql('created_runners_total{reason="x"}')
    check_promql("histogram_quantile(0.9, sum by (le) (rate(job_duration_seconds_bucket[5m])))")


@pytest.mark.parametrize("path", PROM_DASHBOARDS, ids=lambda p: p.name)
def test_prometheus_dashboard_structure(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["title"] and dashboard["uid"]
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["prometheusds"] == {**variables["prometheusds"], "type": "datasource"}
    assert variables["prometheusds"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels_with_targets(dashboard):
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${prometheusds}"}
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for target in panel["targets"]:
            used_vars = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used_vars <= set(variables) | BUILTIN_VARIABLES, used_vars
            for sel in selectors(target["expr"]):
                assert {"juju_model", "juju_application", "juju_unit"} <= sel.labels(), sel


@pytest.mark.parametrize(
    ("name", "expr", "legend"), prom_dashboard_exprs(), ids=lambda v: str(v)[:40]
)
def test_prometheus_dashboard_queries_read_exported_series(
    name: str, expr: str, legend: str
) -> None:
    check_promql(expr, legend)


def test_prometheus_dashboard_shows_states_waits_and_budget() -> None:
    (path,) = PROM_DASHBOARDS
    panels = panels_with_targets(load_dashboard(path))
    text = "\n".join(t["expr"] for p in panels for t in p["targets"])
    for state in ("expected", "idle", "busy", "starting", "unhealthy"):
        assert f"{state}_runners_count" in text, state
    heatmaps = [p for p in panels if p["type"] == "heatmap"]
    assert any(
        "runner_queue_duration_seconds_bucket" in t["expr"] for p in heatmaps for t in p["targets"]
    )
    assert "github_api_rate_limit_remaining" in text and "github_api_requests_total" in text
    used = set().union(*(metric_names(t["expr"]) for p in panels for t in p["targets"]))
    shown = {s.name for s in SERIES if s.names() & used}
    assert shown == {s.name for s in SERIES}, {s.name for s in SERIES} - shown


@pytest.mark.parametrize("rule", prom_rules(), ids=lambda r: r["alert"])
def test_prometheus_rule_structure_and_series(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"GithubRunner[A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    text = rule["annotations"]["summary"] + rule["annotations"]["description"]
    check_promql(rule["expr"], text)
    assert rule["expr"].count("%%juju_topology%%") == len(selectors(rule["expr"]))


def test_prometheus_rules_cover_the_alerts() -> None:
    assert {rule["alert"] for rule in prom_rules()} == {
        "GithubRunnerNotComingOnline",
        "GithubRunnerNoIdleRunnersWhileJobsWait",
        "GithubRunnerCreationFailures",
        "GithubRunnerApiRateLimitLow",
        "GithubRunnerJobQueueWaitHigh",
    }
