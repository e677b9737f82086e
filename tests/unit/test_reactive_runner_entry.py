"""The consumer entry (``python3 -m reactive.runner``): its config file, its factory, its exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import errors
from github_api.types import JobInfo
from reactive import runner as reactive_runner_module
from reactive import runner_manager
from reactive.factory import ManagerSpawner
from reactive.runner import load_consumer_settings, load_runner_manager
from reactive.runner_manager import MQ_URI_ENV
from tests.unit.fakes_reactive import real_section, write_consumer_config

SECRET_URI = "memory://guest:s3cr3t-password@localhost//"


class _IdleSpawner:
    def spawn_one(self) -> str:
        raise AssertionError("no message is ever published in these tests")


class _IdleChecker:
    def get_job_by_url(self, url: str) -> JobInfo:
        raise AssertionError("no message is ever published in these tests")


def idle_components(section: Mapping[str, Any]) -> tuple[_IdleSpawner, _IdleChecker]:
    """A factory for consumers that never get a message (memory:// in their own process)."""
    assert section == {"marker": "ok"}
    return _IdleSpawner(), _IdleChecker()


def bad_components(section: Mapping[str, Any]) -> str:
    return "not a pair"


# --- the config seam ----------------------------------------------------------------------


def test_load_runner_manager_uses_the_factory_given(tmp_path: Path) -> None:
    spawner, checker = load_runner_manager(
        write_consumer_config(tmp_path / "c.json"), idle_components
    )
    assert isinstance(spawner, _IdleSpawner)
    assert isinstance(checker, _IdleChecker)


def test_load_runner_manager_builds_the_units_manager_by_default(tmp_path: Path) -> None:
    path = write_consumer_config(tmp_path / "c.json", real_section(tmp_path / "state"))
    spawner, checker = load_runner_manager(path)
    assert isinstance(spawner, ManagerSpawner)
    assert (spawner.manager.app_name, spawner.manager.prefix) == ("test-app", "test-app-0-")
    assert checker is spawner.manager.github_client


def test_load_runner_manager_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(errors.ReactiveRunnerError):
        load_runner_manager(tmp_path / "missing.json", idle_components)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(errors.ReactiveRunnerError):
        load_runner_manager(tmp_path / "list.json", idle_components)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(errors.ReactiveRunnerError):
        load_runner_manager(tmp_path / "broken.json", idle_components)
    with pytest.raises(errors.ReactiveRunnerError):
        load_runner_manager(write_consumer_config(tmp_path / "b.json"), bad_components)  # type: ignore[arg-type]
    with pytest.raises(errors.ReactiveRunnerError):
        load_runner_manager(write_consumer_config(tmp_path / "s.json", 1), idle_components)
    with pytest.raises(errors.ReactiveRunnerError, match="section lacks"):
        load_runner_manager(
            write_consumer_config(tmp_path / "m.json")
        )  # not what a reconcile writes


def test_load_consumer_settings(tmp_path: Path) -> None:
    path = write_consumer_config(tmp_path / "c.json")
    settings = load_consumer_settings(path, "app")
    assert settings.queue_name == "app"
    assert settings.receive_timeout == 0.2
    (tmp_path / "d.json").write_text(json.dumps({"consumer": []}))
    with pytest.raises(errors.ReactiveRunnerError):
        load_consumer_settings(tmp_path / "d.json", "app")


# --- the entry, in process ----------------------------------------------------------------


def test_reactive_runner_consumes_until_stopped(tmp_path: Path) -> None:

    path = write_consumer_config(tmp_path / "c.json")
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    started = time.monotonic()
    reactive_runner_module.reactive_runner(
        "memory://", "in-process", config_path=path, stop=stop, factory=idle_components
    )
    timer.join()
    assert time.monotonic() - started < 5


@pytest.fixture
def entry_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what main() does to the process: signal handlers and root log handlers."""
    import logging

    handlers = list(logging.getLogger().handlers)
    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
    saved = {s: signal.getsignal(s) for s in signals}
    monkeypatch.setenv(MQ_URI_ENV, SECRET_URI)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    for handler in logging.getLogger().handlers:
        if handler not in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()


@pytest.mark.usefixtures("entry_env")
@pytest.mark.parametrize(
    ("raised", "code"),
    [(None, 0), (errors.ReactiveRunnerError("bad config"), 1), (RuntimeError("bug"), 1)],
)
def test_main_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raised: Exception | None, code: int
) -> None:
    seen: dict[str, Any] = {}

    def fake_runner(mq_uri: str, queue_name: str, **kwargs: Any) -> None:
        seen.update(mq_uri=mq_uri, queue_name=queue_name, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets the stop event
        assert kwargs["stop"].is_set()
        assert not kwargs["drain"].is_set()
        if raised is not None:
            raise raised

    monkeypatch.setattr(reactive_runner_module, "reactive_runner", fake_runner)
    argv = ["--config", str(tmp_path / "c.json"), "--log-dir", str(tmp_path), "--", "app"]
    assert reactive_runner_module.main(argv) == code
    assert seen["mq_uri"] == SECRET_URI
    assert seen["queue_name"] == "app"
    assert MQ_URI_ENV not in os.environ  # removed at once: children do not inherit it
    (log,) = tmp_path.glob("*.log")
    text = log.read_text()
    assert "Received signal 15" in text
    assert "s3cr3t" not in text


@pytest.mark.usefixtures("entry_env")
def test_main_sigusr1_asks_for_a_drain_not_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_runner(mq_uri: str, queue_name: str, **kwargs: Any) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)  # the pool's drain request
        seen.update(kwargs)

    monkeypatch.setattr(reactive_runner_module, "reactive_runner", fake_runner)
    argv = ["--config", str(tmp_path / "c.json"), "--log-dir", str(tmp_path), "--", "app"]
    assert reactive_runner_module.main(argv) == 0
    assert seen["drain"].is_set()
    assert not seen["stop"].is_set()
    (log,) = tmp_path.glob("*.log")
    assert f"Received signal {int(signal.SIGUSR1)}; draining" in log.read_text()


def test_entry_without_uri_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != MQ_URI_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(
        [sys.executable, "-m", "reactive.runner", "--log-dir", str(tmp_path), "--", "q"],
        env=env,
        cwd=Path(runner_manager.__file__).parents[1],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (log,) = tmp_path.glob("*.log")
    assert MQ_URI_ENV in log.read_text()
