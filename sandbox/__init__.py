"""A local stand-in for GitHub Enterprise Server: the self-hosted runner REST API and a runner app.

Start it in-process with :class:`sandbox.server.SandboxServer` or from a shell with
``python -m sandbox serve``. See ``sandbox/README.md`` for the routes it serves.
"""

from __future__ import annotations

__all__ = ["DEFAULT_RUNNER_VERSION"]

DEFAULT_RUNNER_VERSION = "2.330.0"
