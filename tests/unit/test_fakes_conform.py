"""Each unit fake satisfies the Protocol of the seam it stands for, and so does the real client.

Statically: the module-level annotated assignments below are checked by mypy
(``.venv/bin/mypy tests/unit/test_fakes_conform.py``). At runtime: every Protocol member exists
on the implementation, with the same parameter names, kinds and defaults.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from github_api.client import GithubClient
from github_api.seam import GithubPlatform
from metrics.github import JobsOfRunClient
from reactive.consumer import GithubJobChecker
from repo_policy.policy import PolicyGitHub
from tests.unit.fakes_github import FakeGithub


def _protocol_methods(protocol: type) -> list[str]:
    """Return the public methods a Protocol declares (its own and its bases')."""
    names = {
        name
        for klass in protocol.__mro__
        if klass is not object and getattr(klass, "_is_protocol", False)
        for name, value in vars(klass).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }
    return sorted(names)


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """Return a method's parameters as (name, kind, default)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


# --- GitHub -------------------------------------------------------------------------------------

_GH: GithubPlatform = FakeGithub()
_GH_REAL: GithubPlatform = GithubClient("ghp_static-check-only", "https://ghes.example/api/v3")
# The narrower Protocols of the consumers, fed from the platform (as the core does) or the client.
_GH_JOBS: JobsOfRunClient = _GH
_GH_CHECKER: GithubJobChecker = _GH
_GH_POLICY: PolicyGitHub = GithubClient("ghp_static-check-only", "https://ghes.example/api/v3")


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (GithubPlatform, FakeGithub),
        (GithubPlatform, GithubClient),
        (JobsOfRunClient, GithubClient),
        (GithubJobChecker, GithubClient),
        (PolicyGitHub, GithubClient),
    ],
)
def test_github_implementations_match_their_protocol(protocol: type, implementation: type) -> None:
    methods = _protocol_methods(protocol)
    assert methods, f"{protocol.__name__} declares no methods"
    for name in methods:
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        expected = _shape(getattr(protocol, name))
        actual = _shape(getattr(implementation, name))
        assert actual == expected, f"{implementation.__name__}.{name} differs"
