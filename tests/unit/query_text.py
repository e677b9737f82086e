"""Reading PromQL and LogQL text in tests: selectors, their matchers, the series they name.

Enough of both languages for the project's own rules and dashboards: selectors are ``{...}``
outside string literals, optionally preceded by a metric name; matchers are
``label op "value"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_NAME_BEFORE = re.compile(r"([A-Za-z_:][\w:]*)\s*$")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


@dataclass(frozen=True)
class Selector:
    """One selector: the metric it names (None: a LogQL stream selector) and its matchers."""

    metric: str | None
    matchers: tuple[tuple[str, str, str], ...]

    def labels(self) -> set[str]:
        """The label names it matches on."""
        return {name for name, _, _ in self.matchers}

    def equal(self) -> dict[str, str]:
        """The ``label="value"`` matchers."""
        return {name: value for name, op, value in self.matchers if op == "="}


def _string_end(text: str, start: int) -> int:
    quote, i = text[start], start + 1
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return len(text) - 1


def selectors(expr: str) -> list[Selector]:
    """Return the selectors of an expression, in order."""
    found: list[Selector] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in '"`':
            i = _string_end(expr, i) + 1
            continue
        if char == "{":
            j = i + 1
            while j < len(expr) and expr[j] != "}":
                j = _string_end(expr, j) + 1 if expr[j] in '"`' else j + 1
            name = _NAME_BEFORE.search(expr[:i])
            metric = name.group(1) if name and name.group(1) not in _KEYWORDS else None
            found.append(Selector(metric, tuple(_MATCHER.findall(expr[i + 1 : j]))))
            i = j + 1
            continue
        i += 1
    return found


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (with or without braces)."""
    body = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    body = re.sub(r"\{[^{}]*\}", "{}", body)
    body = re.sub(r"\[[^\]]*\]", "", body)
    body = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", body)
    names = set()
    for match in re.finditer(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\s*(\{|\(|)", body):
        name, follow = match.groups()
        if follow == "(" or name in _KEYWORDS | _FUNCTION_WORDS or re.fullmatch(r"\d", name):
            continue
        names.add(name)
    return names


_FUNCTION_WORDS = {"and", "or", "unless", "inf", "nan", "le"}
