"""Provider side of the ``cos_agent`` interface, built on ``cosl``: dashboards, rules, scrape jobs.

The charm declares::

    provides:
      cos-agent:
        interface: cos_agent

and creates, in ``__init__``::

    self._cos = COSAgentProvider(
        self,
        relation_name="cos-agent",
        metrics_endpoints=[{"path": "/metrics", "port": 9464}],
        log_files=["/var/log/github-runner-metrics.log"],
    )

with dashboards in ``./src/grafana_dashboards``, Loki rules in ``./src/loki_alert_rules`` and
Prometheus rules in ``./src/prometheus_alert_rules`` (the interface's usual places).

What the provider writes: each unit puts one key, ``config``, in its own unit data bag of every
``cos-agent`` relation, a JSON object with ``metrics_alert_rules`` and ``log_alert_rules``
(``{"groups": [...]}``), ``dashboards`` (each LZMA-compressed then base64-encoded: cosl's
``LZMABase64``), ``metrics_scrape_jobs`` (``metrics_path`` + ``static_configs`` on
``localhost``) and ``log_slots``.

Topology (``cosl.JujuTopology``): rule groups get cosl's names
(``<model>_<uuid-prefix>_<app>_<group>_rules``) and every rule cosl's topology labels. Selectors
in the rule files carry the ``%%juju_topology%%`` placeholder, replaced with
``JujuTopology.alert_expression_str``: ``juju_model``, ``juju_model_uuid`` and
``juju_application``. Those are the labels the agent (a subordinate) attaches to what it
collects for this application, log lines and scraped series alike, with ``juju_unit``,
``instance`` and ``job``; it does not attach ``juju_charm``, so no selector may require it.

Log files: the agent collects files under ``/var/log``; ``log_files`` names the files the charm
writes and is checked to be there, so that a file the agent cannot see fails loudly.

Data is written on relation-joined and relation-changed of the relation, and refreshed for all
relations on upgrade-charm and config-changed (rules and dashboards ship with the charm).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from cosl import JujuTopology, LZMABase64
from cosl.rules import Rules
from ops import CharmBase, EventBase, Object, Relation

# The unique Charmhub library identifier, never change it.
LIBID = "4b0f5a0c7d3e4f7a9a8e2c1d6b5e3f21"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# Increment this PATCH version before using `charmcraft publish-lib` or reset to 0 if you are
# raising the major API version.
LIBPATCH = 3

PYDEPS = ["cosl"]

logger = logging.getLogger(__name__)

DATA_KEY = "config"
DEFAULT_RELATION_NAME = "cos-agent"
RULE_SUFFIXES = (".rule", ".rules", ".yaml", ".yml")
LOG_DIR = "/var/log/"
TOPOLOGY_PLACEHOLDER = "%%juju_topology%%"


def encode_dashboard(dashboard_json: str) -> str:
    """Encode a dashboard the way the interface carries it: LZMA, then base64 (cosl).

    Args:
        dashboard_json: The dashboard as JSON text.

    Returns:
        The encoded dashboard.
    """
    return LZMABase64.compress(dashboard_json)


def topology_of(charm: CharmBase) -> JujuTopology:
    """Return the Juju topology of a charm's unit (cosl).

    Args:
        charm: The charm.

    Returns:
        The topology.
    """
    return JujuTopology(
        model=charm.model.name,
        model_uuid=charm.model.uuid,
        application=charm.model.app.name,
        unit=charm.model.unit.name,
        charm_name=charm.meta.name,
    )


def render_rules(
    directory: Path, topology: JujuTopology, query_type: Literal["logql", "promql"]
) -> dict[str, Any]:
    """Read the rule files of a directory and label them with the topology (cosl).

    Each ``%%juju_topology%%`` in an expression becomes the topology's alert matchers; cosl
    names the groups and adds the topology labels to every rule.

    Args:
        directory: The rule files (``.rule``, ``.rules``, ``.yaml``, ``.yml``).
        topology: The unit's topology.
        query_type: ``promql`` or ``logql``.

    Returns:
        ``{"groups": [...]}`` (no groups when the directory is missing or empty).
    """
    rules = Rules(query_type=query_type, topology=topology)
    if directory.is_dir():
        matchers = topology.alert_expression_str
        for path in sorted(p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES):
            try:
                text = path.read_text(encoding="utf-8").replace(TOPOLOGY_PLACEHOLDER, matchers)
                data = yaml.safe_load(text)
            except (OSError, yaml.YAMLError):
                logger.exception("Rule file %s is not valid YAML: left out", path.name)
                continue
            if isinstance(data, dict) and data:
                rules.add(data, group_name=path.stem, group_name_prefix=topology.identifier)
    return {"groups": rules.as_dict().get("groups", [])}


class COSAgentProvider(Object):
    """Writes this unit's dashboards, alert rules and scrape jobs into ``cos-agent`` relations."""

    def __init__(
        self,
        charm: CharmBase,
        relation_name: str = DEFAULT_RELATION_NAME,
        *,
        dashboard_dirs: Sequence[str] = ("./src/grafana_dashboards",),
        log_alert_rules_dir: str | None = "./src/loki_alert_rules",
        metrics_alert_rules_dir: str | None = "./src/prometheus_alert_rules",
        metrics_endpoints: Sequence[dict[str, Any]] = (),
        log_files: Sequence[str] = (),
        log_slots: Sequence[str] = (),
    ) -> None:
        """Build the provider and observe the events that (re)write the data.

        Args:
            charm: The charm.
            relation_name: The ``cos_agent`` relation endpoint.
            dashboard_dirs: Directories of ``*.json`` Grafana dashboards (relative to the charm).
            log_alert_rules_dir: Directory of Loki rule files (relative to the charm).
            metrics_alert_rules_dir: Directory of Prometheus rule files.
            metrics_endpoints: ``{"path": "/metrics", "port": 9464}`` entries to scrape locally.
            log_files: Absolute paths of the log files the charm writes; must be under /var/log.
            log_slots: Snap log slots (``"snap:slot"``).

        Raises:
            ValueError: If a log file is not an absolute path under /var/log.
        """
        super().__init__(charm, relation_name)
        for log_file in log_files:
            if not log_file.startswith(LOG_DIR) or ".." in Path(log_file).parts:
                raise ValueError(f"the agent only collects logs under {LOG_DIR}: {log_file}")
        self._charm = charm
        self._relation_name = relation_name
        self._dashboard_dirs = tuple(dashboard_dirs)
        self._log_rules_dir = log_alert_rules_dir
        self._metrics_rules_dir = metrics_alert_rules_dir
        self._metrics_endpoints = tuple(metrics_endpoints)
        self.log_files = tuple(log_files)
        self._log_slots = tuple(log_slots)
        events = charm.on[relation_name]
        self.framework.observe(events.relation_joined, self._on_refresh)
        self.framework.observe(events.relation_changed, self._on_refresh)
        self.framework.observe(charm.on.upgrade_charm, self._on_refresh)
        self.framework.observe(charm.on.config_changed, self._on_refresh)

    def _path(self, directory: str) -> Path:
        path = Path(directory)
        return path if path.is_absolute() else self._charm.charm_dir / path

    def dashboards(self) -> list[str]:
        """Return the encoded dashboards (invalid JSON files are logged and left out).

        Returns:
            One encoded dashboard per ``*.json`` file, in name order.
        """
        encoded = []
        for directory in self._dashboard_dirs:
            for path in sorted(self._path(directory).glob("*.json")):
                try:
                    dashboard = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    logger.exception("Dashboard %s is not valid JSON: left out", path.name)
                    continue
                encoded.append(encode_dashboard(json.dumps(dashboard, separators=(",", ":"))))
        return encoded

    def _rules(self, directory: str | None, query_type: Literal["logql", "promql"]) -> Any:
        if directory is None:
            return {"groups": []}
        return render_rules(self._path(directory), topology_of(self._charm), query_type)

    def _scrape_jobs(self) -> list[dict[str, Any]]:
        return [
            {
                "job_name": f"{self.model.app.name}_{endpoint.get('port')}",
                "metrics_path": endpoint.get("path", "/metrics"),
                "static_configs": [{"targets": [f"localhost:{endpoint['port']}"]}],
            }
            for endpoint in self._metrics_endpoints
        ]

    def data(self) -> dict[str, Any]:
        """Return what this unit publishes under ``config``.

        Returns:
            The interface data (see the module docstring).
        """
        return {
            "metrics_alert_rules": self._rules(self._metrics_rules_dir, "promql"),
            "log_alert_rules": self._rules(self._log_rules_dir, "logql"),
            "dashboards": self.dashboards(),
            "metrics_scrape_jobs": self._scrape_jobs(),
            "log_slots": list(self._log_slots),
        }

    def update(self, relations: Iterable[Relation] | None = None) -> None:
        """Write the data into the given relations (default: all ``cos-agent`` relations).

        Args:
            relations: The relations to write to.
        """
        targets = (
            list(relations) if relations is not None else self.model.relations[self._relation_name]
        )
        if not targets:
            return
        payload = json.dumps(self.data(), sort_keys=True)
        for relation in targets:
            relation.data[self._charm.unit][DATA_KEY] = payload

    def _on_refresh(self, event: EventBase) -> None:
        relation = getattr(event, "relation", None)
        self.update([relation] if isinstance(relation, Relation) else None)
