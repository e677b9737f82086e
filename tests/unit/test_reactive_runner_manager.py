"""The reactive process manager, with real short-lived consumer processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import errors
from reactive import runner as reactive_runner_module
from reactive import runner_manager
from reactive.pid_files import mark_draining, write_pid_file
from reactive.runner import load_consumer_settings
from reactive.runner_manager import (
    MQ_URI_ENV,
    ReactiveRunnerConfig,
    ReactiveRunnerError,
    list_processes,
    reconcile,
)
from tests.unit.fakes_reactive import real_section, write_consumer_config

SECRET_URI = "memory://guest:s3cr3t-password@localhost//"


@pytest.fixture
def config(tmp_path: Path) -> Iterator[ReactiveRunnerConfig]:
    cfg = ReactiveRunnerConfig(
        SECRET_URI,
        "test-app",
        config_path=write_consumer_config(
            tmp_path / "reactive.json", real_section(tmp_path / "state")
        ),
        pid_dir=tmp_path / "pids",
        log_dir=tmp_path / "logs",
        timeout="2m",
        kill_grace=5.0,
        user=None,
    )
    yield cfg
    reconcile(0, cfg, drain=False)  # never leave processes behind


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_spawn_three_then_reconcile_to_one(config: ReactiveRunnerConfig) -> None:
    assert reconcile(3, config) == 3
    procs = list_processes(config.pid_dir)
    assert len(procs) == 3
    # each `timeout` process starts one python consumer, which logs to <its pid>.log
    wait_for(lambda: all(children_of(p.pid) for p in procs))
    consumers = {p.pid: children_of(p.pid)[0] for p in procs}
    wait_for(lambda: all((config.log_dir / f"{c}.log").exists() for c in consumers.values()))
    wait_for(
        lambda: all(
            "Consuming queue test-app" in (config.log_dir / f"{c}.log").read_text()
            for c in consumers.values()
        )
    )
    for pid in [*consumers, *consumers.values()]:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"s3cr3t" not in cmdline
    assert reconcile(3, config) == 0

    assert reconcile(1, config) == -2
    # The newest two are drained (SIGUSR1 to the consumer, not to `timeout`): idle, each ends
    # at its next receive_timeout and logs its clean end; no SIGTERM, no SIGKILL.
    drained = [p.pid for p in procs[1:]]
    wait_for(lambda: not any(running(pid) or running(consumers[pid]) for pid in drained))
    for pid in drained:
        log = (config.log_dir / f"{consumers[pid]}.log").read_text()
        assert f"Received signal {int(signal.SIGUSR1)}; draining" in log
        assert "Consumer for queue test-app drained" in log
        assert "Received signal 15" not in log
        assert "s3cr3t" not in log
    assert [p.pid for p in list_processes(config.pid_dir)] == [procs[0].pid]
    assert running(consumers[procs[0].pid])
    assert sorted(p.name for p in config.pid_dir.glob("*.json")) == [f"{procs[0].pid}.json"]
    assert reconcile(1, config) == 0
    assert "Received signal" not in (config.log_dir / f"{consumers[procs[0].pid]}.log").read_text()


def test_without_drain_surplus_is_stopped_at_once(config: ReactiveRunnerConfig) -> None:
    """Teardown: SIGTERM (a held message requeued at once), gone when reconcile returns."""
    assert reconcile(2, config) == 2
    procs = list_processes(config.pid_dir)
    wait_for(lambda: all(children_of(p.pid) for p in procs))
    consumer = children_of(procs[1].pid)[0]
    wait_for(lambda: "Consuming queue" in log_of(config, consumer))
    assert reconcile(0, config, drain=False) == -2
    assert list_processes(config.pid_dir) == []
    assert not running(consumer)
    assert "Received signal 15; finishing" in log_of(config, consumer)
    assert "Consumer for queue test-app stopped" in log_of(config, consumer)


def log_of(config: ReactiveRunnerConfig, consumer: int) -> str:
    path = config.log_dir / f"{consumer}.log"
    return path.read_text() if path.exists() else ""


def started_consumers(config: ReactiveRunnerConfig) -> dict[int, int]:
    """The consumers alive, each `timeout` pid to its python consumer, once they consume."""
    procs = list_processes(config.pid_dir)
    wait_for(lambda: all(children_of(p.pid) for p in procs))
    consumers = {p.pid: children_of(p.pid)[0] for p in procs}
    wait_for(lambda: all("Consuming queue" in log_of(config, c) for c in consumers.values()))
    return consumers


def test_draining_consumers_are_not_counted_nor_signalled_again(
    config: ReactiveRunnerConfig,
) -> None:
    assert reconcile(2, config) == 2
    consumers = started_consumers(config)
    newest = list_processes(config.pid_dir)[-1]
    # Marked draining as a reconcile marks it, without the signal: a consumer that holds a
    # message while the runner it made boots (a real one would already have exited, idle).
    mark_draining(newest, time.monotonic())
    (holder,) = [p for p in list_processes(config.pid_dir) if p.drain_since is not None]
    assert holder.pid == newest.pid
    assert reconcile(2, config) == 1, "the draining one does not count: one started in its place"
    assert reconcile(2, config) == 0
    assert len(list_processes(config.pid_dir)) == 3
    assert reconcile(1, config) == -1
    assert "Received signal" not in log_of(config, consumers[newest.pid]), "never signalled"
    # The surplus was chosen among the others: the newest of them, the one started above.
    others = [p for p in list_processes(config.pid_dir) if p.pid not in consumers]
    wait_for(lambda: all(not running(p.pid) for p in others))
    assert [p.pid for p in list_processes(config.pid_dir)] == [
        pid for pid in consumers if pid != newest.pid
    ] + [newest.pid]
    assert running(consumers[newest.pid])


def test_overdue_drain_is_stopped_the_old_way(tmp_path: Path) -> None:
    path = write_consumer_config(tmp_path / "reactive.json", real_section(tmp_path / "state"))
    data = json.loads(path.read_text())
    data["consumer"]["pickup_timeout"] = 2  # the bound: 2 + kill_grace 1 + drain_margin 0
    path.write_text(json.dumps(data))
    cfg = ReactiveRunnerConfig(
        SECRET_URI,
        "test-app",
        config_path=path,
        pid_dir=tmp_path / "pids",
        log_dir=tmp_path / "logs",
        kill_grace=1.0,
        drain_margin=0.0,
        user=None,
    )
    try:
        assert reconcile(2, cfg) == 2
        consumers = started_consumers(cfg)
        young, old = list_processes(cfg.pid_dir)
        mark_draining(young, time.monotonic() - 2.5)  # within its bound
        mark_draining(old, time.monotonic() - 3.5)  # past it
        assert reconcile(0, cfg) == 0, "draining ones are not counted"
        assert [p.pid for p in list_processes(cfg.pid_dir)] == [young.pid]
        assert "Received signal 15; finishing" in log_of(cfg, consumers[old.pid])
        assert not running(consumers[old.pid])
        assert "Received signal" not in log_of(cfg, consumers[young.pid])
    finally:
        reconcile(0, cfg, drain=False)
    assert list_processes(cfg.pid_dir) == []


def test_drain_marks_survive_in_the_pid_file(tmp_path: Path) -> None:
    me = os.getpid()
    start = int(Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19])
    path = write_pid_file(tmp_path, me, start, "q", "abc")
    (record,) = list_processes(tmp_path)
    assert record.drain_since is None
    marked = mark_draining(record, 12.5)
    assert marked.drain_since == 12.5
    assert list_processes(tmp_path) == [marked]
    assert json.loads(path.read_text())["queue"] == "q"  # the rest of the record kept
    for bad in ("soon", True, None):
        path.write_text(json.dumps({**json.loads(path.read_text()), "drain_since": bad}))
        assert list_processes(tmp_path)[0].drain_since is None
    assert list(tmp_path.glob("*.tmp")) == []


def test_stale_pid_file_of_dead_process_is_cleaned(config: ReactiveRunnerConfig) -> None:
    config.pid_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = config.pid_dir / f"{dead.pid}.json"
    stale.write_text(json.dumps({"pid": dead.pid, "start_time": 1}))
    garbage = config.pid_dir / "12345.json"
    garbage.write_text("not json")
    assert reconcile(1, config) == 1
    assert not stale.exists()
    assert not garbage.exists()
    assert len(list_processes(config.pid_dir)) == 1


def test_reused_pid_is_not_counted_nor_signalled(config: ReactiveRunnerConfig) -> None:
    """A pid file whose pid now belongs to another process (here: pytest itself)."""
    config.pid_dir.mkdir(parents=True)
    me = os.getpid()
    real_start = int(Path(f"/proc/{me}/stat").read_text().rsplit(")", 1)[1].split()[19])
    reused = config.pid_dir / f"{me}.json"
    reused.write_text(json.dumps({"pid": me, "start_time": real_start - 1}))
    assert list_processes(config.pid_dir) == []
    assert not reused.exists()
    # and with the file back, scaling to zero must not signal us (we are still running)
    reused.write_text(json.dumps({"pid": me, "start_time": real_start - 1}))
    assert reconcile(0, config) == 0
    assert not reused.exists()


def test_surplus_ignoring_sigterm_is_killed_after_grace(tmp_path: Path) -> None:
    """No consumer under the recorded process to drain (it starts or ends): stopped at once."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    time.sleep(0.3)  # let it install the handler
    start = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    (pid_dir / f"{proc.pid}.json").write_text(json.dumps({"pid": proc.pid, "start_time": start}))
    cfg = ReactiveRunnerConfig(
        SECRET_URI,
        "test-app",
        config_path=tmp_path / "none.json",
        pid_dir=pid_dir,
        log_dir=tmp_path / "logs",
        kill_grace=0.5,
        user=None,
    )
    started = time.monotonic()
    assert reconcile(0, cfg) == -1
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5
    assert list(pid_dir.glob("*.json")) == []


def test_consumer_that_dies_is_replaced(config: ReactiveRunnerConfig) -> None:
    assert reconcile(2, config) == 2
    victim = list_processes(config.pid_dir)[0]
    wait_for(lambda: bool(children_of(victim.pid)))
    os.kill(children_of(victim.pid)[0], signal.SIGKILL)  # the python consumer
    wait_for(lambda: len(list_processes(config.pid_dir)) == 1)
    assert reconcile(2, config) == 1
    assert len(list_processes(config.pid_dir)) == 2


def test_consumer_with_bad_config_exits_and_logs(tmp_path: Path) -> None:
    cfg = ReactiveRunnerConfig(
        SECRET_URI,
        "test-app",
        config_path=write_consumer_config(
            tmp_path / "bad.json"
        ),  # not a section a reconcile writes
        pid_dir=tmp_path / "pids",
        log_dir=tmp_path / "logs",
        user=None,
    )
    assert reconcile(1, cfg) == 1
    wait_for(lambda: list_processes(cfg.pid_dir) == [])
    logs = [p for p in cfg.log_dir.glob("*.log") if p.name[0].isdigit()]
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "runner_manager section lacks 'charm_state'" in text
    assert "s3cr3t" not in text


def test_negative_quantity_rejected(config: ReactiveRunnerConfig) -> None:
    with pytest.raises(ReactiveRunnerError):
        reconcile(-1, config)


@pytest.mark.parametrize(
    ("queue", "timeout"),
    [("", "1h"), ("--config", "1h"), ("a b", "1h"), ("app", "1h; rm"), ("app", "-k")],
)
def test_config_validates_command_line_fields(queue: str, timeout: str) -> None:
    with pytest.raises(ReactiveRunnerError):
        ReactiveRunnerConfig(SECRET_URI, queue, timeout=timeout)


@pytest.mark.parametrize("module", ["", "-c", "reactive.runner; rm", "reactive..runner", "1a"])
def test_config_validates_the_entry_module(module: str) -> None:
    with pytest.raises(ReactiveRunnerError):
        ReactiveRunnerConfig(SECRET_URI, "app", entry_module=module)


def test_command_runs_the_entry_module() -> None:
    assert runner_manager._command(ReactiveRunnerConfig(SECRET_URI, "app"))[6:8] == [
        "-m",
        "reactive.runner",
    ]
    other = ReactiveRunnerConfig(SECRET_URI, "app", entry_module="tests.entry")
    assert runner_manager._command(other)[6:8] == ["-m", "tests.entry"]


def test_config_repr_hides_uri() -> None:
    cfg = ReactiveRunnerConfig(SECRET_URI, "app")
    assert "s3cr3t" not in repr(cfg)
    assert "s3cr3t" not in str(cfg)
    assert issubclass(ReactiveRunnerError, errors.ReactiveError)


def test_command_has_no_secret_and_runs_under_timeout() -> None:
    cfg = ReactiveRunnerConfig(SECRET_URI, "app", timeout="30m", kill_grace=10)
    cmd = runner_manager._command(cfg)
    assert cmd[0] == runner_manager.TIMEOUT_COMMAND
    assert "30m" in cmd
    assert cmd[-2:] == ["--", "app"]
    assert not any("s3cr3t" in part for part in cmd)
    # the lifetime ends in a drain, to the consumer alone, killed only after a drain's bound
    assert cmd[1:3] == ["--foreground", "--signal=USR1"]
    kill_after = int(cmd[3].removeprefix("--kill-after=").removesuffix("s"))
    assert kill_after == int(runner_manager._drain_limit(cfg)) >= 300 + 10


def test_consumer_lifetime_ends_in_a_drain(config: ReactiveRunnerConfig) -> None:
    short = ReactiveRunnerConfig(
        config.mq_uri,
        config.queue_name,
        config_path=config.config_path,
        pid_dir=config.pid_dir,
        log_dir=config.log_dir,
        timeout="2s",
        kill_grace=config.kill_grace,
        user=None,
    )
    assert reconcile(1, short) == 1
    (process,) = list_processes(short.pid_dir)
    wait_for(lambda: not running(process.pid), timeout=30)
    logs = "".join(p.read_text() for p in short.log_dir.glob("*.log"))
    assert f"Received signal {int(signal.SIGUSR1)}; draining" in logs
    assert "finishing" not in logs  # not the SIGTERM path


def test_run_as_user_only_when_root_and_user_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner_manager._run_as(None) is None
    assert runner_manager._run_as("no-such-user-here") is None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert runner_manager._run_as("root") is not None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert runner_manager._run_as("root") is None


def test_seed_constants_exist() -> None:
    for name in (
        "RUNNER_INSTALLED_TS_FILE_NAME",
        "REMOVED_RUNNER_LOG_STR",
        "REACTIVE_RUNNER_LOG_PATH",
        "REACTIVE_RUNNER_SCRIPT_FILE",
        "REACTIVE_RUNNER_TIMEOUT_STR",
        "PYTHON_BIN",
        "PS_COMMAND_LINE_LIST",
        "TIMEOUT_COMMAND",
        "UBUNTU_USER",
    ):
        assert hasattr(runner_manager, name)
    assert runner_manager.REACTIVE_RUNNER_SCRIPT_FILE.exists()
    assert callable(reactive_runner_module.reactive_runner)


def test_spawn_passes_secret_in_env_and_absolute_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: dict[str, Any] = {}

    def fake_popen(cmd: list[str], **kwargs: Any) -> None:
        captured.update(cmd=cmd, **kwargs)
        raise OSError("not really starting anything")

    monkeypatch.setattr(sys, "path", ["relative/dir", "", *sys.path])
    monkeypatch.setattr(runner_manager.subprocess, "Popen", fake_popen)
    cfg = ReactiveRunnerConfig(
        SECRET_URI, "app", pid_dir=tmp_path / "p", log_dir=tmp_path / "l", user=None
    )
    with pytest.raises(ReactiveRunnerError):
        reconcile(1, cfg)
    assert captured["env"][MQ_URI_ENV] == SECRET_URI
    assert not any("s3cr3t" in part for part in captured["cmd"])
    paths = captured["env"]["PYTHONPATH"].split(os.pathsep)
    assert all(os.path.isabs(p) for p in paths)  # the child runs in another directory
    assert os.path.abspath("relative/dir") in paths
    assert captured["start_new_session"] is True
    assert Path(captured["cwd"]) == Path(runner_manager.__file__).resolve().parents[1]
    assert list((tmp_path / "p").glob("*.json")) == []


def test_consumers_with_outdated_config_are_replaced(config: ReactiveRunnerConfig) -> None:
    assert reconcile(2, config) == 2
    first = {p.pid for p in list_processes(config.pid_dir)}
    assert reconcile(2, config) == 0
    assert {p.pid for p in list_processes(config.pid_dir)} == first  # same config: kept
    data = json.loads(config.config_path.read_text())
    data["consumer"]["pickup_timeout"] = 99  # e.g. new labels or a rotated token
    config.config_path.write_text(json.dumps(data))
    assert reconcile(2, config) == 0  # the count did not change...
    second = {p.pid for p in list_processes(config.pid_dir)}
    assert len(second) == 2
    assert not second & first  # ...but both consumers were restarted
    for pid in first:
        assert not running(pid)
    assert reconcile(1, config) == -1
    wait_for(lambda: {p.pid for p in list_processes(config.pid_dir)} < second)  # one drained


def test_write_runner_config_is_private_atomic_and_loadable(tmp_path: Path) -> None:
    cfg = ReactiveRunnerConfig(
        SECRET_URI, "app", config_path=tmp_path / "etc" / "reactive.json", user=None
    )
    section = {"marker": "ok"}
    consumer = {"supported_labels": ["linux", "x64"], "pickup_timeout": 10}
    assert runner_manager.write_runner_config(cfg, section, consumer) is True
    assert cfg.config_path.stat().st_mode & 0o777 == 0o600
    assert runner_manager.write_runner_config(cfg, section, consumer) is False
    assert json.loads(cfg.config_path.read_text())["runner_manager"] == section
    assert load_consumer_settings(cfg.config_path, "app").pickup_timeout == 10
    consumer["pickup_timeout"] = 20
    assert runner_manager.write_runner_config(cfg, section, consumer) is True
    assert list(cfg.config_path.parent.iterdir()) == [cfg.config_path]
    with pytest.raises(ReactiveRunnerError):
        runner_manager.write_runner_config(cfg, {"x": object()})
