"""Provider side of the ``cos_agent`` interface: hand dashboards and alert rules to the agent.

Written for github-runner (no library is vendored). The charm declares::

    provides:
      cos-agent:
        interface: cos_agent

and creates, in ``__init__``::

    self._cos = COSAgentProvider(
        self,
        relation_name="cos-agent",
        dashboard_dirs=["./src/grafana_dashboards"],
        log_alert_rules_dir="./src/loki_alert_rules",
        log_files=["/var/log/github-runner-metrics.log"],
    )

What the provider writes: each unit puts one key, ``config``, in its own unit data bag of every
``cos-agent`` relation, a JSON object with:

- ``metrics_alert_rules``: ``{"groups": [...]}``, Prometheus rules (empty when none);
- ``log_alert_rules``: ``{"groups": [...]}``, Loki rules;
- ``dashboards``: a list of Grafana dashboards, each the dashboard JSON compressed with LZMA
  (xz container) and then base64 encoded;
- ``metrics_scrape_jobs``: Prometheus scrape jobs (``metrics_path`` + ``static_configs``);
- ``log_slots``: snap log slots (``"snap:slot"``) for the agent to connect to.

Rule groups are renamed ``<model>_<model-uuid-prefix>_<app>_<group>`` to be unique, every rule
gets the Juju topology labels (``juju_model``, ``juju_model_uuid``, ``juju_application``,
``juju_charm``), and every LogQL stream selector in a log rule gets the same topology matchers,
so that an alert only looks at this application's logs.

Log files: the agent (a subordinate on the same machine) collects files under ``/var/log``; the
dashboards select them by the ``filename`` label. ``log_files`` names the files the charm
writes and is checked to be there, so that a file the agent cannot see fails loudly.

Data is written on relation-joined and relation-changed of the relation, and refreshed for all
relations on upgrade-charm and config-changed (rules and dashboards ship with the charm).
"""

from __future__ import annotations

import base64
import json
import logging
import lzma
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from ops import CharmBase, EventBase, Object, Relation

# The unique Charmhub library identifier, never change it.
LIBID = "4b0f5a0c7d3e4f7a9a8e2c1d6b5e3f21"
# Increment this major API version when introducing breaking changes.
LIBAPI = 0
# Increment this PATCH version before using `charmcraft publish-lib` or reset to 0 if you are
# raising the major API version.
LIBPATCH = 2

logger = logging.getLogger(__name__)

DATA_KEY = "config"
DEFAULT_RELATION_NAME = "cos-agent"
RULE_SUFFIXES = (".rule", ".rules", ".yaml", ".yml")
LOG_DIR = "/var/log/"


def encode_dashboard(dashboard_json: str) -> str:
    """Encode a dashboard the way the interface carries it: LZMA, then base64.

    Args:
        dashboard_json: The dashboard as JSON text.

    Returns:
        The encoded dashboard.
    """
    return base64.b64encode(lzma.compress(dashboard_json.encode("utf-8"))).decode("ascii")


def _selector_end(expr: str, start: int) -> int:
    """Return the index of the ``}`` closing the selector opened at ``start`` (-1 if none)."""
    i = start + 1
    while i < len(expr):
        char = expr[i]
        if char in '"`':
            i = _string_end(expr, i)
        elif char == "}":
            return i
        i += 1
    return -1


def _string_end(expr: str, start: int) -> int:
    """Return the index of the quote closing the string literal opened at ``start``."""
    quote = expr[start]
    i = start + 1
    while i < len(expr):
        if quote == '"' and expr[i] == "\\":
            i += 2
            continue
        if expr[i] == quote:
            return i
        i += 1
    return len(expr) - 1


def inject_log_matchers(expr: str, matchers: dict[str, str]) -> str:
    """Add label matchers to every stream selector ``{...}`` of a LogQL expression.

    String literals (``"..."``, backquoted) are copied as they are, so templates such as
    ``line_format "{{.x}}"`` are left alone. A matcher for a label the selector already has is
    not added again.

    Args:
        expr: The LogQL expression.
        matchers: Label name -> value to require.

    Returns:
        The expression with the matchers added.
    """
    out: list[str] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in '"`':
            end = _string_end(expr, i)
            out.append(expr[i : end + 1])
            i = end + 1
            continue
        if char == "{":
            end = _selector_end(expr, i)
            if end < 0:
                out.append(expr[i:])
                break
            body = expr[i + 1 : end].strip()
            extra = [
                f'{name}="{_escape(value)}"'
                for name, value in matchers.items()
                if f"{name}=" not in body.replace(" ", "")
            ]
            out.append("{" + ", ".join(([body] if body else []) + extra) + "}")
            i = end + 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _load_rule_file(path: Path) -> list[dict[str, Any]]:
    """Read the rule groups of a file: ``groups: [...]``, a list of rules, or one rule."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("groups"), list):
        return [group for group in data["groups"] if isinstance(group, dict)]
    rules = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    rules = [rule for rule in rules if isinstance(rule, dict) and "expr" in rule]
    return [{"name": path.stem, "rules": rules}] if rules else []


class COSAgentProvider(Object):
    """Writes this unit's dashboards, alert rules and scrape jobs into ``cos-agent`` relations."""

    def __init__(
        self,
        charm: CharmBase,
        relation_name: str = DEFAULT_RELATION_NAME,
        *,
        dashboard_dirs: Sequence[str] = ("./src/grafana_dashboards",),
        log_alert_rules_dir: str | None = "./src/loki_alert_rules",
        metrics_alert_rules_dir: str | None = None,
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
            metrics_alert_rules_dir: Directory of Prometheus rule files, if any.
            metrics_endpoints: ``{"path": "/metrics", "port": 9100}`` entries to scrape locally.
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

    def _topology(self) -> dict[str, str]:
        return {
            "juju_model": self.model.name,
            "juju_model_uuid": self.model.uuid,
            "juju_application": self.model.app.name,
            "juju_charm": self._charm.meta.name,
        }

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

    def _rules(self, directory: str | None, *, logql: bool) -> dict[str, Any]:
        if directory is None or not self._path(directory).is_dir():
            return {"groups": []}
        topology = self._topology()
        prefix = "_".join(
            (topology["juju_model"], topology["juju_model_uuid"][:8], topology["juju_application"])
        )
        groups = []
        files = sorted(p for p in self._path(directory).iterdir() if p.suffix in RULE_SUFFIXES)
        for path in files:
            try:
                file_groups = _load_rule_file(path)
            except (OSError, yaml.YAMLError):
                logger.exception("Rule file %s is not valid YAML: left out", path.name)
                continue
            for group in file_groups:
                rules = []
                for original in group.get("rules") or []:
                    rule = dict(original)
                    rule["labels"] = {**(rule.get("labels") or {}), **topology}
                    if logql:
                        rule["expr"] = inject_log_matchers(str(rule["expr"]), topology)
                    rules.append(rule)
                groups.append(
                    {**group, "name": f"{prefix}_{group.get('name', path.stem)}", "rules": rules}
                )
        return {"groups": groups}

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
            "metrics_alert_rules": self._rules(self._metrics_rules_dir, logql=False),
            "log_alert_rules": self._rules(self._log_rules_dir, logql=True),
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
