"""The Jinja environment of the runner templates (shell scripts and env files)."""

from __future__ import annotations

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from paths import TEMPLATES_DIR


def template_environment() -> Environment:
    """Return the Jinja environment of the runner templates (shell scripts and env files).

    Returns:
        The environment; undefined variables are errors.
    """
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=False,  # noqa: S701 - renders shell scripts and env files, not HTML
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
