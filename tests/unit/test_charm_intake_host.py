"""The webhook intake installer: private files, the config the intake reads, systemd calls."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from errors import SubprocessError
from juju.intake_host import IntakeFlavor, IntakeService, IntakeSettings, webhook_url
from tests.unit.fakes_systemd import FakeSystemctl
from tests.unit.systemd_verify import verify

SERVICE = "github-runner-intake-github-runner-0.service"
SECRET = "whsec-0123456789abcdef"
MQ_URI = "amqp://guest:hunter2@127.0.0.1:5672//"
CONTRACT_KEYS = {
    "host",
    "port",
    "secret_file",
    "mq_uri_file",
    "flavors",
    "ledger",
    "max_body_bytes",
    "api_url",
}


def service(
    tmp_path: Path, systemctl: FakeSystemctl, unit: str = "github-runner/0"
) -> IntakeService:
    return IntakeService(
        unit,
        config_root=tmp_path / "etc",
        unit_dir=tmp_path / "systemd",
        charm_dir=Path("/var/lib/juju/agents/unit-github-runner-0/charm"),
        systemctl=systemctl,
        port_free=lambda host, port: True,
    )


def settings(tmp_path: Path, secret: str = SECRET, mq_uri: str = MQ_URI) -> IntakeSettings:
    return IntakeSettings(
        webhook_secret=SecretStr(secret),
        mq_uri=SecretStr(mq_uri),
        flavors=(IntakeFlavor("github-runner", ("linux", "self-hosted", "x64")),),
        api_url="https://api.github.com",
        ledger=tmp_path / "state" / "github-runner-0" / "intake-ledger.sqlite",
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_install_writes_root_only_files_and_starts(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    port = svc.ensure(settings(tmp_path))
    assert port == 8580
    etc = svc.config_dir
    assert etc == tmp_path / "etc" / "github-runner-0" / "intake"
    for name in ("webhook-secret", "mq-uri", "intake.json"):
        assert mode(etc / name) == 0o600, name
    assert (etc / "webhook-secret").read_text() == SECRET
    assert (etc / "mq-uri").read_text() == MQ_URI
    config = json.loads((etc / "intake.json").read_text())
    assert set(config) == CONTRACT_KEYS
    assert config["host"] == "0.0.0.0" and config["port"] == 8580  # noqa: S104
    assert config["secret_file"] == str(etc / "webhook-secret")
    assert config["mq_uri_file"] == str(etc / "mq-uri")
    assert config["flavors"] == [
        {"queue_name": "github-runner", "labels": ["linux", "self-hosted", "x64"]}
    ]
    assert config["ledger"] == str(tmp_path / "state/github-runner-0/intake-ledger.sqlite")
    assert config["max_body_bytes"] == 1 << 20
    assert config["api_url"] == "https://api.github.com"
    assert (tmp_path / "state" / "github-runner-0").is_dir(), "the ledger's directory exists"
    unit = svc.unit_path.read_text()
    assert f"-m intake --config {json.dumps(str(etc / 'intake.json'))}" in unit
    assert f'ReadWritePaths="{tmp_path}/state/github-runner-0"\n' in unit
    assert "{{" not in unit
    for text in (unit, (etc / "intake.json").read_text()):
        assert SECRET not in text and "hunter2" not in text
    assert systemctl.calls == [["daemon-reload"], ["enable", SERVICE], ["restart", SERVICE]]


def test_nothing_changed_costs_one_is_active(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    svc.ensure(settings(tmp_path))
    systemctl.calls.clear()
    assert svc.ensure(settings(tmp_path)) == 8580
    assert systemctl.calls == [["is-active", "--quiet", SERVICE]]


@pytest.mark.parametrize(
    "changed",
    [
        {"secret": "rotated-0123456789abcdef"},
        {"mq_uri": "mongodb://u:p@198.18.1.1:27017/github-runner"},
    ],
)
def test_a_new_secret_or_broker_uri_restarts_it(tmp_path: Path, changed: dict[str, str]) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    svc.ensure(settings(tmp_path))
    systemctl.calls.clear()
    svc.ensure(settings(tmp_path, **changed))
    assert ["restart", SERVICE] in systemctl.calls


def test_a_dead_intake_is_started(tmp_path: Path) -> None:
    systemctl = FakeSystemctl({"is-active": 3})
    svc = service(tmp_path, systemctl)
    svc.ensure(settings(tmp_path))
    systemctl.calls.clear()
    svc.ensure(settings(tmp_path))
    assert systemctl.calls[-1] == ["enable", "--now", SERVICE]


def test_systemctl_failure_is_an_error(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeSystemctl({"restart": 1}))
    with pytest.raises(SubprocessError):
        svc.ensure(settings(tmp_path))


def test_units_of_a_machine_get_their_own_port(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    first = service(tmp_path, systemctl, "github-runner/0").ensure(settings(tmp_path))
    other = service(tmp_path, systemctl, "other-app/3")
    assert other.service_name == "github-runner-intake-other-app-3"
    assert (first, other.ensure(settings(tmp_path))) == (8580, 8581)


def test_remove_deletes_the_secrets_and_keeps_the_port(tmp_path: Path) -> None:
    systemctl = FakeSystemctl()
    svc = service(tmp_path, systemctl)
    svc.ensure(settings(tmp_path))
    systemctl.calls.clear()
    svc.remove()
    assert systemctl.calls == [["disable", "--now", SERVICE], ["daemon-reload"]]
    assert not svc.unit_path.exists()
    assert sorted(p.name for p in svc.config_dir.iterdir()) == ["port"]
    systemctl.calls.clear()
    svc.remove()  # idempotent
    assert systemctl.calls == []
    assert svc.ensure(settings(tmp_path)) == 8580, "the URL set on GitHub stays right"


def test_remove_for_good_forgets_the_port(tmp_path: Path) -> None:
    svc = service(tmp_path, FakeSystemctl())
    svc.ensure(settings(tmp_path))
    svc.remove(keep_port=False)
    assert list(svc.config_dir.iterdir()) == []


def test_webhook_url() -> None:
    assert webhook_url("198.18.0.5", 8580) == "http://198.18.0.5:8580/webhook"
    assert webhook_url("2001:db8::5", 8581) == "http://[2001:db8::5]:8581/webhook"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_unit_verifies_clean(tmp_path: Path) -> None:
    svc = service(tmp_path / "odd %n dir", FakeSystemctl())  # '%' must not be a specifier
    path = tmp_path / f"{svc.service_name}.service"
    path.write_text(svc.render_unit(tmp_path / "odd %n dir" / "ledger.sqlite"))
    assert verify(path) == (0, [])


def test_host_refuses_the_intake_when_the_build_has_no_intake_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``intake`` package: ``webhook-secret`` is refused, no service is written or started."""
    import importlib.util

    from errors import ConfigError
    from juju.host import HostSystem

    systemctl = FakeSystemctl()
    intake = service(tmp_path, systemctl)
    host = HostSystem("github-runner/0", intake=intake)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "intake" else real(name, *a)
    )
    with pytest.raises(ConfigError) as caught:
        host.ensure_intake(settings(tmp_path))
    assert caught.value.option == "webhook-secret"
    assert not (tmp_path / "systemd" / SERVICE).exists()
