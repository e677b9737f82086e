"""The Prometheus feed: state file, feed from plans, exporter text, API metering, runner logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from github_api.parse import HttpReply
from github_api.retry import TransportError
from juju.metrics_service import MetricsExporterService
from observability import series as s
from observability.exporter import registry_for
from observability.feed import MetricsFeed
from observability.github_meter import MeteredTransport, route_of
from observability.runner_logs import collect_command, keep_log, rotate
from observability.state import MAX_PENDING_ONLINE, MetricsState, StateFile
from reconcile_plan import (
    DeleteReason,
    Deletion,
    GithubView,
    InstanceState,
    InstanceView,
    ReconcilePlan,
    Runner,
    RunnerState,
)
from tests.unit.fakes_systemd import FakeSystemctl
from tests.unit.systemd_verify import verify

NOW = datetime.now(timezone.utc)


def runner(name: str, state: RunnerState, online: bool = False) -> Runner:
    instance = InstanceView(name=name, state=InstanceState.RUNNING, created_at=NOW)
    github = GithubView(id=1, name=name, online=online, busy=state is RunnerState.BUSY)
    return Runner(name=name, state=state, instance=instance, github=github)


def plan(*runners: Runner, deletions: tuple[Deletion, ...] = ()) -> ReconcilePlan:
    return ReconcilePlan(runners=tuple(runners), deletions=deletions, create=0, delta=0)


def exposition(path: Path) -> str:
    return generate_latest(registry_for(path)).decode()


@pytest.fixture
def state_file(tmp_path: Path) -> StateFile:
    return StateFile(tmp_path / "state" / "prometheus-state.json")


# --- the state file ------------------------------------------------------------------------------


def test_counters_and_histograms_accumulate_across_writers(state_file: StateFile) -> None:
    other = StateFile(state_file.path)  # another process, same file
    state_file.update(lambda st: st.inc(s.CREATED, ("gh",)))
    other.update(lambda st: st.inc(s.CREATED, ("gh",), 2))
    state_file.update(lambda st: st.observe(s.QUEUE_DURATION, ("gh",), 7))
    other.update(lambda st: st.observe(s.QUEUE_DURATION, ("gh",), 9000))
    state = state_file.read()
    assert state.value(s.CREATED, ("gh",)) == 3.0
    histogram = state.histograms[s.QUEUE_DURATION.name]['["gh"]']
    assert sum(histogram.counts) == 2 and histogram.sum == 9007
    assert histogram.counts[2] == 1 and histogram.counts[-1] == 1  # le=30 and +Inf


def test_counters_never_go_down(state_file: StateFile) -> None:
    state_file.update(lambda st: st.inc(s.CREATED, ("gh",), 2))
    state_file.update(lambda st: st.inc(s.CREATED, ("gh",), -5))
    assert state_file.read().value(s.CREATED, ("gh",)) == 2.0


@pytest.mark.parametrize("content", [b"{not json", b'{"values": 3}', b"x" * (5 << 20)])
def test_a_corrupt_state_reads_empty_and_is_replaced(
    state_file: StateFile, content: bytes
) -> None:
    state_file.path.parent.mkdir(parents=True)
    state_file.path.write_bytes(content)
    assert state_file.read() == MetricsState()
    assert "# TYPE idle_runners_count gauge" in exposition(state_file.path)
    assert state_file.update(lambda st: st.set(s.IDLE, ("gh",), 1))
    assert state_file.read().value(s.IDLE, ("gh",)) == 1.0


def test_an_unwritable_state_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert not StateFile(blocker / "state.json").update(lambda st: st.set(s.IDLE, ("gh",), 1))


def test_wrong_label_count_is_refused(state_file: StateFile) -> None:
    assert not state_file.update(lambda st: st.set(s.IDLE, (), 1))
    assert state_file.read().values == {}


def test_pending_runners_are_bounded(state_file: StateFile) -> None:
    def many(st: MetricsState) -> None:
        for i in range(MAX_PENDING_ONLINE + 10):
            st.pending_online[f"r{i}"] = float(i)

    state_file.update(many)
    pending = state_file.read().pending_online
    assert len(pending) == MAX_PENDING_ONLINE and "r0" not in pending


# --- the feed ------------------------------------------------------------------------------------


def test_a_reconcile_sets_the_runner_gauges(state_file: StateFile) -> None:
    feed = MetricsFeed(state_file, "gh")
    feed.reconciled(
        plan(
            runner("a", RunnerState.IDLE, True),
            runner("b", RunnerState.BUSY, True),
            runner("c", RunnerState.STARTING),
            runner("d", RunnerState.UNHEALTHY),
        ),
        expected=3,
        duration=2.5,
    )
    state = state_file.read()
    assert [state.value(g, ("gh",)) for g in (s.EXPECTED, s.IDLE, s.BUSY, s.STARTING)] == [
        3,
        1,
        1,
        1,
    ]
    assert state.value(s.UNHEALTHY, ("gh",)) == 1
    assert state.histograms[s.RECONCILE_DURATION.name]['["gh"]'].sum == 2.5


def test_time_to_online_is_measured_once_per_runner(state_file: StateFile) -> None:
    feed = MetricsFeed(state_file, "gh")
    feed.runner_created("a", 4.0)
    # The reconcile that created "a" did not observe it: it stays pending (regression).
    feed.reconciled(plan(), expected=1, duration=5.0)
    assert "a" in state_file.read().pending_online
    feed.reconciled(plan(runner("a", RunnerState.IDLE, True)), expected=1, duration=0.1)
    feed.reconciled(plan(runner("a", RunnerState.IDLE, True)), expected=1, duration=0.1)
    histogram = state_file.read().histograms[s.TIME_TO_ONLINE.name]['["gh"]']
    assert sum(histogram.counts) == 1 and 4.0 <= histogram.sum < 60
    assert state_file.read().pending_online == {}


def test_runners_that_go_before_online_are_forgotten(state_file: StateFile) -> None:
    feed = MetricsFeed(state_file, "gh")
    feed.runner_created("gone", 1.0)
    feed.runner_created("bad", 1.0)
    doomed = runner("bad", RunnerState.UNHEALTHY)
    feed.reconciled(
        plan(doomed, deletions=(Deletion(doomed, DeleteReason.UNHEALTHY),)), 1, duration=0.0
    )
    assert state_file.read().pending_online == {}
    assert time_to_online_count(state_file) == 0


def time_to_online_count(state_file: StateFile) -> int:
    histograms = state_file.read().histograms.get(s.TIME_TO_ONLINE.name, {})
    return sum(sum(h.counts) for h in histograms.values())


def test_deletions_jobs_quarantines_and_reactive_are_exported(state_file: StateFile) -> None:
    feed = MetricsFeed(state_file, "gh")
    feed.runners_deleted(["unhealthy", "surplus", "unhealthy"])
    feed.creation_failed(2)
    feed.job(idle=3.0, queue=12.0, duration=None)
    feed.quarantined()
    feed.reactive(queue_depth=None, consumers=2)
    feed.reactive(queue_depth=5, consumers=3)
    text = exposition(state_file.path)
    for line in (
        'deleted_runners_total{flavor="gh",reason="unhealthy"} 2.0',
        'deleted_runners_total{flavor="gh",reason="surplus"} 1.0',
        'runner_creation_failures_total{flavor="gh"} 2.0',
        'runner_queue_duration_seconds_bucket{flavor="gh",le="30.0"} 1.0',
        'runner_queue_duration_seconds_sum{flavor="gh"} 12.0',
        'runner_idle_duration_seconds_count{flavor="gh"} 1.0',
        'metrics_store_quarantines_total{flavor="gh"} 1.0',
        'reactive_queue_depth{flavor="gh"} 5.0',
        'reactive_consumers_count{flavor="gh"} 3.0',
    ):
        assert line in text, line
    assert 'job_duration_seconds_count{flavor="gh"}' not in text


def test_every_catalogued_series_is_exposed_with_its_type(state_file: StateFile) -> None:
    text = exposition(state_file.path)
    for series in s.SERIES:
        assert f"# TYPE {series.name} {series.kind.value}" in text, series.name


# --- GitHub API metering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "route"),
    [
        ("/repos/o/r/actions/runners", "/repos/{owner}/{repo}/actions/runners"),
        ("/repos/o/r/actions/runners/42", "/repos/{owner}/{repo}/actions/runners/{runner_id}"),
        (
            "/orgs/acme/actions/runners/generate-jitconfig",
            "/orgs/{org}/actions/runners/generate-jitconfig",
        ),
        (
            "/repos/o/r/actions/runs/7/jobs?page=2",
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        ),
        (
            "/repos/o/r/collaborators/bob/permission",
            "/repos/{owner}/{repo}/collaborators/{user}/permission",
        ),
        (
            "/repos/o/r/branches/feat%2Fx/protection",
            "/repos/{owner}/{repo}/branches/{branch}/protection",
        ),
        ("/repos/o/r/pulls/3", "/repos/{owner}/{repo}/pulls/{number}"),
        ("/repos/o/r/contents/secret-name", "/repos/{owner}/{repo}/contents/secret-name"),
        ("/repos/o/r/x/123", "other"),
        ("/rate_limit", "/rate_limit"),
    ],
)
def test_routes_are_templates(url: str, route: str) -> None:
    assert route_of(url) == route


class FakeTransport:
    def __init__(self, reply: HttpReply | None) -> None:
        self.reply = reply
        self.sent: list[tuple[str, str]] = []

    def send(
        self, verb: str, url: str, params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> HttpReply:
        self.sent.append((verb, url))
        if self.reply is None:
            raise TransportError("timeout")
        return self.reply


def test_metered_transport_counts_requests_and_keeps_the_rate_limit(
    state_file: StateFile,
) -> None:
    headers = {"x-ratelimit-remaining": "4321", "x-ratelimit-limit": "5000"}
    headers["x-ratelimit-reset"] = "1900000000"
    ok = MeteredTransport(FakeTransport(HttpReply(200, headers, "{}")), state_file)
    ok.send("GET", "/repos/o/r/actions/runners", {"per_page": 100}, None)
    ok.send("GET", "/repos/o/r/actions/runners", None, None)
    down = MeteredTransport(FakeTransport(None), state_file)
    with pytest.raises(TransportError):
        down.send("DELETE", "/repos/o/r/actions/runners/9", None, None)
    text = exposition(state_file.path)
    route = "/repos/{owner}/{repo}/actions/runners"
    assert f'github_api_requests_total{{method="GET",route="{route}",status="200"}} 2.0' in text
    assert f'method="DELETE",route="{route}/{{runner_id}}",status="0"}} 1.0' in text
    assert "github_api_rate_limit_remaining 4321.0" in text
    assert "github_api_rate_limit_limit 5000.0" in text
    assert "github_api_rate_limit_reset_timestamp_seconds 1.9e+09" in text


# --- runner logs ---------------------------------------------------------------------------------


def test_runner_logs_are_plain_bounded_files(tmp_path: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(100_000))
    path = keep_log(tmp_path / "logs", "gh-0-abc", data, max_bytes=4096)
    assert path == tmp_path / "logs" / "gh-0-abc.log"
    text = path.read_bytes()
    assert len(text) <= 4096 + 64 and text.startswith(b"[... earlier lines cut ...]\nline ")
    assert text.endswith(b"line 99999\n")


def test_old_runner_logs_are_rotated_out(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for i in range(5):
        keep_log(logs, f"r{i}", b"x", max_files=3)
        os.utime(logs / f"r{i}.log", (1000 + i, 1000 + i))
    (logs / "reactive").mkdir()
    assert sorted(p.name for p in logs.glob("*.log")) == ["r2.log", "r3.log", "r4.log"]
    assert rotate(logs, 1) == [logs / "r2.log", logs / "r3.log"]


def test_a_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (logs / "r.log").symlink_to(victim)
    (logs / ".r.log.tmp").symlink_to(victim)
    keep_log(logs, "r", b"new")
    assert victim.read_text() == "keep" and (logs / "r.log").read_bytes() == b"new"
    with pytest.raises(ValueError, match="runner name"):
        keep_log(logs, "../r", b"x")


def test_collect_command_gathers_each_source_under_a_header() -> None:
    cmd = collect_command("/home/ubuntu/actions-runner")
    assert cmd[:2] == ["bash", "-c"]
    assert "/home/ubuntu/actions-runner/_diag/*.log /var/log/syslog" in cmd[2]
    assert "> /tmp/github-runner-logs.log" in cmd[2] and "tail -c" in cmd[2]


def test_collect_command_runs(tmp_path: Path) -> None:
    diag = tmp_path / "runner" / "_diag"
    diag.mkdir(parents=True)
    (diag / "Runner_1.log").write_text("hello\n")
    out = tmp_path / "out.log"
    subprocess.run(collect_command(str(tmp_path / "runner"), str(out)), check=True, timeout=30)
    assert f"==> {diag / 'Runner_1.log'} <==\nhello\n" in out.read_text()


# --- the exporter's service ----------------------------------------------------------------------


def test_exporter_unit_binds_loopback(tmp_path: Path) -> None:
    systemctl = FakeSystemctl({"is-active": 3})
    service = MetricsExporterService(
        "gh/0", config_root=tmp_path / "etc", unit_dir=tmp_path, systemctl=systemctl
    )
    assert service.ensure() is True
    assert service.unit_path.name == "github-runner-metrics-gh-0.service"
    text = service.unit_path.read_text()
    assert f'--host "127.0.0.1" --port {service.port()}' in text
    assert '--state-file "/var/lib/github-runner/gh-0/prometheus-state.json"' in text
    assert service.ensure() is False
    service.remove()
    assert not service.unit_path.exists()
    assert ["daemon-reload"] in systemctl.calls


def test_two_units_on_one_machine_get_their_own_exporter(tmp_path: Path) -> None:
    # Another unit's remembered port is never taken, nor a port something listens on.
    busy = {9465}
    services = [
        MetricsExporterService(
            name,
            config_root=tmp_path / "etc",
            unit_dir=tmp_path,
            systemctl=FakeSystemctl({"is-active": 3}),
            port_free=lambda _host, port: port not in busy,
        )
        for name in ("gh/0", "other/3")
    ]
    ports = [s.port() for s in services]
    assert ports == [9464, 9466]
    assert [s.metrics_endpoints() for s in services] == [
        [{"path": "/metrics", "port": 9464}],
        [{"path": "/metrics", "port": 9466}],
    ]
    assert len({s.unit_path for s in services}) == 2
    assert len({s.state_file for s in services}) == 2
    assert services[0].port() == 9464  # remembered


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_exporter_unit_verifies_clean(tmp_path: Path) -> None:
    path = tmp_path / "github-runner-metrics-gh-0.service"
    service = MetricsExporterService("gh/0", config_root=tmp_path / "etc", unit_dir=tmp_path)
    path.write_text(service.render_unit())
    assert verify(path) == (0, [])


def test_state_keys_are_json_label_lists(state_file: StateFile) -> None:
    state_file.update(lambda st: st.set(s.IDLE, ('g"h',), 1))
    raw = json.loads(state_file.path.read_text())
    assert raw["values"]["idle_runners_count"] == {'["g\\"h"]': 1.0}
    assert 'idle_runners_count{flavor="g\\"h"} 1.0' in exposition(state_file.path)
