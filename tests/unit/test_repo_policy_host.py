"""The policy service installer: files, modes, systemd calls only when something changed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from errors import SubprocessError
from juju.policy_host import RepoPolicyService
from juju.unit_ports import port_is_free
from tests.unit.fakes_systemd import FakeSystemctl

SERVICE_NAME = "github-runner-repo-policy-github-runner-0"


def service(tmp_path: Path, systemctl: FakeSystemctl) -> RepoPolicyService:
    return RepoPolicyService(
        "github-runner/0",
        config_dir=tmp_path / "etc",
        unit_dir=tmp_path / "systemd",
        charm_dir=Path("/var/lib/juju/agents/unit-github-runner-0/charm"),
        systemctl=systemctl,
        port_free=lambda host, port: True,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


POLICY = {
    "allow_pull_request_target": False,
    "allow_unprotected_branches": False,
    "default": "deny",
}


def test_first_install_writes_private_files_and_starts(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    endpoint = svc.ensure(
        github_token="ghp_x", github_api_url="https://api.github.com", policy=POLICY
    )
    assert endpoint.url == "http://127.0.0.1:8567"
    assert len(endpoint.service_token) >= 32 and endpoint.service_token not in repr(endpoint)
    etc = tmp_path / "etc"
    assert mode(etc / "service-token") == 0o600 and mode(etc / "github-token") == 0o600
    assert (etc / "github-token").read_text() == "ghp_x"
    assert mode(etc / "policy.json") == 0o644
    unit = svc.unit_path.read_text()
    assert "--port 8567" in unit and '--host "127.0.0.1"' in unit
    assert "ghp_x" not in unit and endpoint.service_token not in unit
    assert "{{" not in unit
    assert systemctl.calls == [
        ["daemon-reload"],
        ["enable", f"{SERVICE_NAME}.service"],
        ["restart", f"{SERVICE_NAME}.service"],
    ]


def test_nothing_changed_costs_one_is_active(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    first = svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)
    systemctl.calls.clear()
    again = svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)
    assert again.service_token == first.service_token, "the service token is stable"
    assert systemctl.calls == [["is-active", "--quiet", f"{SERVICE_NAME}.service"]]


def test_a_dead_service_is_started_and_a_new_token_restarts_it(tmp_path: Path) -> None:
    systemctl = FakeSystemctl({"is-active": 3})
    svc = service(tmp_path, systemctl)
    svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)
    systemctl.calls.clear()
    svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)
    assert systemctl.calls[-1] == ["enable", "--now", f"{SERVICE_NAME}.service"]
    systemctl.calls.clear()
    svc.ensure(github_token="rotated", github_api_url="https://api.github.com", policy=POLICY)
    assert ["restart", f"{SERVICE_NAME}.service"] in systemctl.calls


def test_policy_changes_need_no_restart(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)
    systemctl.calls.clear()
    svc.ensure(
        github_token="t",
        github_api_url="https://api.github.com",
        policy={**POLICY, "default": "allow"},
    )
    assert '"default": "allow"' in (tmp_path / "etc" / "policy.json").read_text()
    assert systemctl.calls == [["is-active", "--quiet", f"{SERVICE_NAME}.service"]]


def test_systemctl_failure_is_an_error(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeSystemctl({"restart": 1}))
    with pytest.raises(SubprocessError):
        svc.ensure(github_token="t", github_api_url="https://api.github.com", policy=POLICY)


def test_remove_stops_the_service_and_deletes_its_tokens(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    svc.ensure(github_token="ghp_x", github_api_url="https://api.github.com", policy=POLICY)
    systemctl.calls.clear()
    svc.remove()
    assert systemctl.calls == [["disable", "--now", f"{SERVICE_NAME}.service"], ["daemon-reload"]]
    assert not svc.unit_path.exists()
    assert list((tmp_path / "etc").iterdir()) == [], "no token is left behind"
    systemctl.calls.clear()
    svc.remove()  # idempotent
    assert systemctl.calls == []


def test_remove_fails_when_the_reload_fails_but_the_tokens_are_gone(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeSystemctl({"daemon-reload": 1}))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "github-token").write_text("ghp_x")
    svc.unit_path.parent.mkdir()
    svc.unit_path.write_text("[Unit]\n")
    with pytest.raises(SubprocessError):
        svc.remove()
    assert not (tmp_path / "etc" / "github-token").exists()


def _unit(tmp_path: Path, name: str, busy: set[int] | None = None) -> RepoPolicyService:
    return RepoPolicyService(
        name,
        config_root=tmp_path / "etc",
        unit_dir=tmp_path / "systemd",
        systemctl=FakeSystemctl(),
        port_free=lambda host, port: port not in (busy or set()),
    )


def test_two_applications_on_one_machine_have_their_own_service(tmp_path: Path) -> None:
    one, other = _unit(tmp_path, "ci-a/0"), _unit(tmp_path, "ci-b/0", busy={8568})
    first = one.ensure(github_token="a", github_api_url="https://api.github.com", policy=POLICY)
    second = other.ensure(github_token="b", github_api_url="https://api.github.com", policy=POLICY)
    assert first.url == "http://127.0.0.1:8567"
    assert second.url == "http://127.0.0.1:8569", "a sibling's port and a busy one are skipped"
    assert one.unit_path.name == "github-runner-repo-policy-ci-a-0.service"
    assert other.unit_path.name == "github-runner-repo-policy-ci-b-0.service"
    assert one.config_dir == tmp_path / "etc" / "ci-a-0" / "repo-policy"
    assert (one.config_dir / "github-token").read_text() == "a"
    assert (other.config_dir / "github-token").read_text() == "b"
    assert first.service_token != second.service_token
    assert "StateDirectory=github-runner-repo-policy-ci-b-0\n" in other.unit_path.read_text()
    # The port is remembered: a restart of the charm, or the port in use by the service itself.
    again = _unit(tmp_path, "ci-a/0", busy={8567})
    assert again.ensure(github_token="a", github_api_url="https://api.github.com",
                        policy=POLICY).url == first.url  # fmt: skip
    other.remove()
    assert (one.config_dir / "github-token").exists() and one.unit_path.exists()


def test_the_machine_wide_service_of_this_unit_goes(tmp_path: Path) -> None:
    legacy = tmp_path / "systemd" / "github-runner-repo-policy.service"
    legacy.parent.mkdir()
    legacy.write_text("[Unit]\nDescription=Pre-job repository policy service of ci-b/0\n")
    (tmp_path / "etc" / "repo-policy").mkdir(parents=True)
    (tmp_path / "etc" / "repo-policy" / "github-token").write_text("old")
    _unit(tmp_path, "ci-a/0").ensure(github_token="a", github_api_url="https://x", policy=POLICY)
    assert legacy.exists(), "another unit's service stays"
    _unit(tmp_path, "ci-b/0").ensure(github_token="b", github_api_url="https://x", policy=POLICY)
    assert not legacy.exists()
    assert not (tmp_path / "etc" / "repo-policy" / "github-token").exists()


def test_port_is_free_binds_loopback() -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert port_is_free("127.0.0.1", port) is False
    assert port_is_free("127.0.0.1", port) is True
