"""The intake's configuration file (the charm writes it) and the secret files it names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from intake import errors as intake_errors
from intake.__main__ import main
from intake.config import IntakeConfig
from intake.server import build_app
from runner_type import Arch
from tests.unit.test_intake_server import FakePublisher


def write(tmp_path: Path, **overrides: Any) -> Path:
    (tmp_path / "secret").write_text("s3cret-webhook\n")
    (tmp_path / "mq").write_text("amqp://guest:guest@127.0.0.1:5672//\n")
    data: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "secret_file": str(tmp_path / "secret"),
        "mq_uri_file": str(tmp_path / "mq"),
        "flavors": [{"queue_name": "runner-a", "labels": ["small", "x64"]}],
        "ledger": str(tmp_path / "ledger.sqlite"),
        "max_body_bytes": 1048576,
        "api_url": "https://api.github.com/",
    }
    data.update(overrides)
    path = tmp_path / "intake.json"
    path.write_text(json.dumps({k: v for k, v in data.items() if v is not None}))
    return path


def test_the_contract_file_loads(tmp_path: Path) -> None:
    config = IntakeConfig.load(write(tmp_path))
    assert config.api_url == "https://api.github.com"
    assert config.read_secret() == b"s3cret-webhook"
    assert config.read_mq_uri() == "amqp://guest:guest@127.0.0.1:5672//"
    [flavor] = config.routing_flavors()
    assert flavor.queue_name == "runner-a"
    assert flavor.labels == frozenset({"small", "x64"})
    assert config.threads == 4
    assert config.publish_timeout == 5.0


def test_a_flavor_may_name_its_arch(tmp_path: Path) -> None:
    flavors = [{"queue_name": "arm", "labels": ["big"], "arch": "arm64"}]
    [flavor] = IntakeConfig.load(write(tmp_path, flavors=flavors)).routing_flavors()
    assert flavor.arch is Arch.ARM64


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"host": "intake.example"}, "host"),
        ({"port": 70000}, "port"),
        ({"flavors": []}, "flavors"),
        ({"flavors": [{"queue_name": "bad name", "labels": []}]}, "queue_name"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"api_url": "ftp://api.github.com"}, "api_url"),
        ({"api_url": "https://user:pw@api.github.com"}, "api_url"),
        ({"ledger": None}, "ledger"),
        ({"extra_key": 1}, "extra_key"),
    ],
)
def test_invalid_configurations_name_the_field(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    path = write(tmp_path, **overrides)
    with pytest.raises(intake_errors.IntakeConfigError) as caught:
        IntakeConfig.load(path)
    assert field in caught.value.reason
    assert caught.value.path == str(path)


def test_unreadable_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(intake_errors.IntakeConfigError, match="cannot read"):
        IntakeConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(intake_errors.IntakeConfigError, match="not UTF-8 JSON"):
        IntakeConfig.load(tmp_path / "bad.json")


def test_an_empty_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    config = IntakeConfig.load(write(tmp_path))
    (tmp_path / "secret").write_text("  \n")
    with pytest.raises(intake_errors.IntakeConfigError, match="empty"):
        config.read_secret()
    (tmp_path / "mq").unlink()
    with pytest.raises(intake_errors.IntakeConfigError) as caught:
        config.read_mq_uri()
    assert "guest" not in str(caught.value)


def test_build_app_reads_the_files(tmp_path: Path) -> None:
    app = build_app(IntakeConfig.load(write(tmp_path)), FakePublisher())
    assert [flavor.queue_name for flavor in app.flavors] == ["runner-a"]
    assert "s3cret" not in repr(app)
    default = build_app(IntakeConfig.load(write(tmp_path)))
    assert "guest" not in repr(default.publisher)


def test_main_refuses_an_invalid_configuration(tmp_path: Path) -> None:
    assert main(["--config", str(write(tmp_path, port=-1))]) == 2


def test_the_module_runs_and_refuses_a_missing_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "intake", "--config", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot start" in done.stderr
