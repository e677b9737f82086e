"""Each unit fake satisfies the Protocol of the seam it stands for, and so does the real client.

Statically: the module-level annotated assignments below are checked by mypy
(``.venv/bin/mypy tests/unit/test_fakes_conform.py``). At runtime: every Protocol member exists
on the implementation, with the same parameter names, kinds and defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from github_api.client import GithubClient
from github_api.seam import GithubPlatform
from juju.manager_port import RunnerManagerPort
from lxd import LxdClient, LxdCloud, LxdInstanceFiles, LxdInstanceHandle
from metrics.github import JobsOfRunClient
from openstack_backend.client import OpenstackClient
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.policy_checks import PolicyService
from openstack_backend.seam import OpenstackCloud
from reactive.consumer import GithubJobChecker
from reactive.factory import SpawningManager
from repo_policy.client import RepoPolicyComplianceClient
from repo_policy.policy import PolicyGitHub
from runner_manager import RunnerManager
from tests.unit.fakes_core import FakeRepoPolicy
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.fakes_openstack import FakeOpenstack


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


def _protocol_properties(protocol: type) -> list[str]:
    """Return the public properties a Protocol declares."""
    return sorted(
        name
        for name, value in vars(protocol).items()
        if not name.startswith("_") and isinstance(value, property)
    )


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


# --- LXD ----------------------------------------------------------------------------------------

_LXD_FAKE = FakeLxd()
_LXD: LxdCloud = _LXD_FAKE
_LXD_INSTANCE: LxdInstanceHandle = _LXD_FAKE.add_instance("conform-0")
_LXD_FILES: LxdInstanceFiles = _LXD_FAKE.add_instance("conform-1").files
_LXD_REAL: LxdCloud = LxdClient(endpoint="/nonexistent.socket")  # connects lazily: not here


def _lxd_fakes() -> dict[type, object]:
    """One object of each LXD fake, by the Protocol it stands for."""
    lxd = FakeLxd()
    instance = lxd.create("conform-0", "github-runner-test")
    return {LxdCloud: lxd, LxdInstanceHandle: instance, LxdInstanceFiles: instance.files}


def _assert_matches(protocol: type, fake: object) -> None:
    """Check that an object has the methods (same shapes) and properties of a Protocol."""
    kind = type(fake).__name__
    assert _protocol_methods(protocol), f"{protocol.__name__} declares no methods"
    for name in _protocol_methods(protocol):
        assert hasattr(fake, name), f"{kind} lacks {name}"
        expected = _shape(getattr(protocol, name))
        actual = _shape(getattr(type(fake), name))
        assert actual == expected, f"{kind}.{name} differs"
    for name in _protocol_properties(protocol):
        assert hasattr(fake, name), f"{kind} lacks {name}"
        assert not inspect.ismethod(getattr(fake, name)), f"{kind}.{name} is a method"


@pytest.mark.parametrize("protocol", [LxdCloud, LxdInstanceHandle, LxdInstanceFiles])
def test_lxd_fakes_match_their_protocol(protocol: type) -> None:
    _assert_matches(protocol, _lxd_fakes()[protocol])


def test_the_lxd_check_sees_drift() -> None:
    class Renamed:
        def push(
            self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0
        ) -> None:
            """A renamed parameter."""

        def pull(self, path: str, max_bytes: int | None = None) -> bytes:
            return b""

    class Nameless:
        pass

    with pytest.raises(AssertionError, match=r"Renamed\.push differs"):
        _assert_matches(LxdInstanceFiles, Renamed())
    with pytest.raises(AssertionError, match="Nameless lacks"):
        _assert_matches(LxdInstanceHandle, Nameless())


# --- OpenStack ----------------------------------------------------------------------------------

_OS: OpenstackCloud = FakeOpenstack()
_OS_REAL: OpenstackCloud = OpenstackClient(Path("/nonexistent/clouds.yaml"), "none")  # lazy


@pytest.mark.parametrize("implementation", [FakeOpenstack, OpenstackClient])
def test_openstack_implementations_match_their_protocol(implementation: type) -> None:
    methods = _protocol_methods(OpenstackCloud)
    assert "create_server" in methods
    for name in methods:
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        expected = _shape(getattr(OpenstackCloud, name))
        assert _shape(getattr(implementation, name)) == expected, f"{name} differs"


def _openstack_manager_is_a_port(manager: OpenstackRunnerManager) -> RunnerManagerPort:
    """Statically (mypy): the OpenStack manager is what the charm calls."""
    return manager


def test_openstack_manager_matches_the_runner_manager_port() -> None:
    for name in _protocol_methods(RunnerManagerPort):
        expected = _shape(getattr(RunnerManagerPort, name))
        assert _shape(getattr(OpenstackRunnerManager, name)) == expected, f"{name} differs"


def _managers_spawn(
    openstack: OpenstackRunnerManager, lxd: RunnerManager
) -> tuple[SpawningManager, SpawningManager]:
    """Statically (mypy): a reactive consumer can spawn through either backend's manager."""
    return openstack, lxd


_POLICY_FAKE: PolicyService = FakeRepoPolicy()
_POLICY_REAL: PolicyService = RepoPolicyComplianceClient("http://127.0.0.1:9", "svc")


@pytest.mark.parametrize("implementation", [FakeRepoPolicy, RepoPolicyComplianceClient])
def test_policy_implementations_match_the_openstack_managers_protocol(
    implementation: type,
) -> None:
    methods = _protocol_methods(PolicyService)
    assert {"get_one_time_token", "checks_in_flight"} <= set(methods)
    for name in methods:
        expected = _shape(getattr(PolicyService, name))
        assert _shape(getattr(implementation, name)) == expected, f"{name} differs"
