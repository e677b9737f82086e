"""COSAgentProvider with ops.testing: a minimal charm, its cos-agent relation data.

The rules in the relation data are checked against the labels the agent attaches to what it
collects for this application: the application's topology (``juju_model``,
``juju_model_uuid``, ``juju_application``), ``juju_unit``, ``instance``, ``job`` and, for
log lines, ``filename``. The agent attaches no ``juju_charm``.
"""

from __future__ import annotations

import base64
import json
import lzma
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import ops
import pytest
import yaml
from ops import testing

from charms.github_runner.v0.cos_agent import (
    DATA_KEY,
    COSAgentProvider,
    encode_dashboard,
    render_rules,
    topology_of,
)
from observability.series import BY_NAME, Series
from tests.unit.query_text import Selector, selectors

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "src" / "grafana_dashboards"
LOG_RULES = ROOT / "src" / "loki_alert_rules"
METRICS_RULES = ROOT / "src" / "prometheus_alert_rules"
AGENT_LABELS = {
    "juju_model",
    "juju_model_uuid",
    "juju_application",
    "juju_unit",
    "instance",
    "job",
}
LOG_LINE_LABELS = AGENT_LABELS | {"filename"}
META: dict[str, Any] = {
    "name": "runner-test",
    "provides": {"cos-agent": {"interface": "cos_agent"}},
}
MODEL = testing.Model(name="ci", uuid="0f2b6c1e-7d3a-4e2b-9c8d-112233445566")


def decode_dashboard(encoded: str) -> str:
    """Decode a dashboard as the agent does: base64, then LZMA (the interface's format)."""
    return lzma.decompress(base64.b64decode(encoded)).decode("utf-8")


class ProviderCharm(ops.CharmBase):
    """Minimal charm using the provider with the project's dashboards and rules."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self.cos = COSAgentProvider(
            self,
            relation_name="cos-agent",
            dashboard_dirs=[str(DASHBOARDS)],
            log_alert_rules_dir=str(LOG_RULES),
            metrics_alert_rules_dir=str(METRICS_RULES),
            metrics_endpoints=[{"path": "/metrics", "port": 9464}],
            log_files=["/var/log/github-runner-metrics.log"],
        )


def relation_config(state: testing.State, relation: testing.Relation) -> dict[str, Any]:
    out = state.get_relation(relation.id)
    assert isinstance(out, testing.Relation)
    unit_data = cast("Mapping[str, str]", out.local_unit_data)
    data: dict[str, Any] = json.loads(unit_data[DATA_KEY])
    return data


@pytest.fixture(name="ctx")
def ctx_fixture() -> testing.Context[ProviderCharm]:
    return testing.Context(ProviderCharm, meta=META)


def test_relation_joined_writes_the_config(ctx: testing.Context[ProviderCharm]) -> None:
    relation = testing.Relation("cos-agent", remote_app_name="grafana-agent")
    state = ctx.run(
        ctx.on.relation_joined(relation), testing.State(relations={relation}, model=MODEL)
    )
    config = relation_config(state, relation)
    assert set(config) == {
        "metrics_alert_rules",
        "log_alert_rules",
        "dashboards",
        "metrics_scrape_jobs",
        "log_slots",
    }
    assert config["metrics_alert_rules"]["groups"]
    assert config["log_slots"] == []
    assert config["metrics_scrape_jobs"] == [
        {
            "job_name": "runner-test_9464",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": ["localhost:9464"]}],
        }
    ]


def test_dashboards_are_lzma_base64_json(ctx: testing.Context[ProviderCharm]) -> None:
    relation = testing.Relation("cos-agent")
    state = ctx.run(
        ctx.on.relation_changed(relation), testing.State(relations={relation}, model=MODEL)
    )
    dashboards = [
        json.loads(decode_dashboard(d)) for d in relation_config(state, relation)["dashboards"]
    ]
    expected = [json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))]
    assert dashboards == expected


def test_log_rules_carry_topology(ctx: testing.Context[ProviderCharm]) -> None:
    relation = testing.Relation("cos-agent")
    state = ctx.run(
        ctx.on.relation_changed(relation), testing.State(relations={relation}, model=MODEL)
    )
    groups = relation_config(state, relation)["log_alert_rules"]["groups"]
    source = yaml.safe_load((LOG_RULES / "github_runner_metrics.rule").read_text())["groups"]
    assert [g["name"] for g in groups] == [
        f"ci_0f2b6c1e_runner_test_{g['name'].replace('-', '_')}_rules" for g in source
    ]
    rules = groups[0]["rules"]
    assert len(rules) == len(source[0]["rules"])
    for rule in rules:
        assert rule["labels"]["juju_application"] == "runner-test"
        assert rule["labels"]["juju_model_uuid"] == MODEL.uuid
        assert rule["labels"]["juju_charm"] == "runner-test"  # a rule label, never a selector
        assert rule["labels"]["severity"]
        assert "%%juju_topology%%" not in rule["expr"]


def relation_rules(ctx: testing.Context[ProviderCharm], key: str) -> list[dict[str, Any]]:
    relation = testing.Relation("cos-agent")
    state = ctx.run(
        ctx.on.relation_changed(relation), testing.State(relations={relation}, model=MODEL)
    )
    groups = relation_config(state, relation)[key]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def check_selector(selector: Selector, allowed: set[str]) -> None:
    """A selector matches the application's topology and only labels the series carry."""
    topology = {
        "juju_model": "ci",
        "juju_model_uuid": MODEL.uuid,
        "juju_application": "runner-test",
    }
    assert selector.equal().items() >= topology.items(), selector
    assert "juju_charm" not in selector.labels(), selector
    assert selector.labels() <= allowed, (selector, selector.labels() - allowed)


def test_metrics_rule_selectors_match_the_agents_labels(
    ctx: testing.Context[ProviderCharm],
) -> None:
    rules = relation_rules(ctx, "metrics_alert_rules")
    assert rules
    for rule in rules:
        found = selectors(rule["expr"])
        assert found, rule["alert"]
        for selector in found:
            assert selector.metric, (rule["alert"], selector)
            base = next((s for s in BY_NAME.values() if selector.metric in s.names()), None)
            assert isinstance(base, Series), f"{selector.metric} is no exported series"
            extra = {"le"} if selector.metric.endswith("_bucket") else set()
            check_selector(selector, AGENT_LABELS | set(base.labels) | extra)


def test_log_rule_selectors_match_the_agents_labels(ctx: testing.Context[ProviderCharm]) -> None:
    rules = relation_rules(ctx, "log_alert_rules")
    assert rules
    for rule in rules:
        found = selectors(rule["expr"])
        assert found, rule["alert"]
        for selector in found:
            assert selector.metric is None
            check_selector(selector, LOG_LINE_LABELS)
            filename = selector.equal()["filename"]
            assert filename.startswith("/var/log/") and filename.endswith(
                "log"
            )  # /var/log/**/*log


def test_relation_rules_are_what_render_rules_gives(ctx: testing.Context[ProviderCharm]) -> None:
    class Probe(ops.CharmBase):
        pass

    relation = testing.Relation("cos-agent")
    state = ctx.run(
        ctx.on.relation_changed(relation), testing.State(relations={relation}, model=MODEL)
    )
    config = relation_config(state, relation)
    probe_ctx = testing.Context(Probe, meta=META)
    with probe_ctx(probe_ctx.on.start(), testing.State(model=MODEL)) as manager:
        topology = topology_of(manager.charm)
    assert config["metrics_alert_rules"] == render_rules(METRICS_RULES, topology, "promql")
    assert config["log_alert_rules"] == render_rules(LOG_RULES, topology, "logql")


def test_refresh_on_upgrade_writes_every_relation(ctx: testing.Context[ProviderCharm]) -> None:
    first = testing.Relation("cos-agent")
    second = testing.Relation("cos-agent")
    state = ctx.run(ctx.on.upgrade_charm(), testing.State(relations={first, second}, model=MODEL))
    assert relation_config(state, first) == relation_config(state, second)


def test_no_relation_no_error(ctx: testing.Context[ProviderCharm]) -> None:
    ctx.run(ctx.on.config_changed(), testing.State(model=MODEL))


def test_broken_files_are_left_out(tmp_path: Path) -> None:
    dashboards = tmp_path / "dashboards"
    rules = tmp_path / "rules"
    dashboards.mkdir()
    rules.mkdir()
    (dashboards / "good.json").write_text('{"title": "ok"}')
    (dashboards / "bad.json").write_text("{nope")
    (rules / "single.rule").write_text(
        'alert: A\nexpr: count_over_time({filename="x"} [1m]) > 0\nlabels: {severity: info}\n'
    )
    (rules / "bad.rules").write_text("groups: [\n")
    (rules / "ignored.txt").write_text("x")

    class Charm(ops.CharmBase):
        def __init__(self, framework: ops.Framework) -> None:
            super().__init__(framework)
            self.cos = COSAgentProvider(
                self, dashboard_dirs=[str(dashboards)], log_alert_rules_dir=str(rules)
            )

    ctx = testing.Context(Charm, meta=META)
    relation = testing.Relation("cos-agent")
    state = ctx.run(
        ctx.on.relation_joined(relation), testing.State(relations={relation}, model=MODEL)
    )
    config = relation_config(state, relation)
    assert [json.loads(decode_dashboard(d)) for d in config["dashboards"]] == [{"title": "ok"}]
    [group] = config["log_alert_rules"]["groups"]
    assert group["name"].endswith("_single_rules")
    assert group["rules"][0]["alert"] == "A"


def test_log_files_must_be_collectable() -> None:
    class Charm(ops.CharmBase):
        def __init__(self, framework: ops.Framework) -> None:
            super().__init__(framework)
            self.cos = COSAgentProvider(self, log_files=["/home/ubuntu/metrics.log"])

    ctx = testing.Context(Charm, meta=META)
    with pytest.raises(testing.errors.UncaughtCharmError, match="/var/log"):
        ctx.run(ctx.on.start(), testing.State())


def test_encoding_round_trip() -> None:
    text = json.dumps({"title": "é", "panels": []})
    assert decode_dashboard(encode_dashboard(text)) == text
