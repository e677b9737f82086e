"""The Jinja environment of the charm's templates, with one escaping filter per file format.

Every value a template takes from an option, a relation or the model goes through the filter of
its file's format:

- ``env_value``: an ``env`` file line (``KEY=value``, read verbatim by the runner): the value
  must not hold a line break or any other control character;
- ``systemd_value``: a setting of a systemd unit (``Description=``, ``Environment=``...):
  ``%`` is escaped (``%%``, no specifier expansion); control characters and backslashes
  (line continuations) are refused;
- ``systemd_arg``: one word of an ``ExecStart=`` command line: double-quoted with backslashes and
  double quotes escaped, ``%`` and ``$`` doubled (no specifier or variable expansion);
  ``systemd_arg(command=False)`` for a quoted ``Environment=`` assignment (``$`` kept);
- ``shell``: a word of a bash script (:func:`shlex.quote`); control characters are refused;
- ``json``: a JSON value (:func:`json.dumps`).

A value that cannot be written raises :class:`errors.TemplateValueError` (it is never shown).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from errors import TemplateValueError
from paths import TEMPLATES_DIR

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _line(value: Any, format: str) -> str:
    text = str(value)
    if _CONTROL.search(text):
        raise TemplateValueError(format, "it holds a line break or another control character")
    return text


def env_value(value: Any) -> str:
    """Return ``value`` for an env file line (``KEY=value``)."""
    return _line(value, "env")


def systemd_value(value: Any) -> str:
    """Return ``value`` for a systemd unit setting, specifiers escaped."""
    text = _line(value, "systemd")
    if "\\" in text:
        raise TemplateValueError("systemd", "it holds a backslash")
    return text.replace("%", "%%")


def systemd_arg(value: Any, command: bool = True) -> str:
    """Return ``value`` as one double-quoted word of a unit setting.

    Args:
        value: The value.
        command: Whether the word is on a command line (``ExecStart=``), where ``$`` expands
            variables and is doubled; ``Environment="KEY=value"`` takes ``command=False``.

    Returns:
        The quoted word.
    """
    text = _line(value, "systemd")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (escaped.replace("$", "$$") if command else escaped) + '"'


def shell(value: Any) -> str:
    """Return ``value`` as one word of a bash script."""
    return shlex.quote(_line(value, "shell"))


def json_value(value: Any) -> str:
    """Return ``value`` as JSON."""
    return json.dumps(value)


FILTERS = {
    "env_value": env_value,
    "systemd_value": systemd_value,
    "systemd_arg": systemd_arg,
    "shell": shell,
    "json": json_value,
}


def template_environment() -> Environment:
    """Return the Jinja environment of the templates (env files, shell scripts, units).

    Returns:
        The environment; undefined variables are errors; the format filters are set.
    """
    environment = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=False,  # noqa: S701 - env files, shell scripts and units: filters escape
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters.update(FILTERS)
    return environment


@functools.cache
def shared_template_environment() -> Environment:
    """Return one template environment for the process (systemd units of the host)."""
    return template_environment()
