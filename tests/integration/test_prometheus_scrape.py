"""A real Prometheus scrapes the unit's exporter during an LXD run; its query API has the values.

The manager reconciles one real runner (LXD container, sandbox GitHub); the exporter runs as the
charm runs it (``python -m observability serve`` on loopback) and Debian's Prometheus scrapes it
every second (``scripts/setup-prometheus.sh``). Scrapes make no GitHub request: the manager's
routes on the sandbox keep their counts while Prometheus scrapes.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.local import RESOURCES, LocalEnvironment, LocalOptions
from observability.state import STATE_FILE_NAME
from runner_manager_type import LXDFlushMode

pytestmark = pytest.mark.lxd

LIST_RUNNERS = "GET /repos/{owner}/{repo}/actions/runners"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def env() -> Iterator[LocalEnvironment]:
    options = LocalOptions(app_name="pm", repo="octo/pm", metrics=True)
    with LocalEnvironment(options) as local:
        yield local
        local.manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK)


@pytest.fixture
def servers(env: LocalEnvironment, tmp_path: Path) -> Iterator[str]:
    """Start the exporter and a Prometheus scraping it; yield Prometheus's base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus missing: run scripts/setup-prometheus.sh"
    exporter_port, prometheus_port = free_port(), free_port()
    state_file = env.manager.settings.state_dir / STATE_FILE_NAME
    serve = ["serve", "--host", "127.0.0.1", "--port", str(exporter_port)]
    exporter = subprocess.Popen(
        [sys.executable, "-m", "observability", *serve, "--state-file", str(state_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: github-runner\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n",
        encoding="utf-8",
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(  # Debian's prometheus, on loopback only
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{prometheus_port}"
    finally:
        for process in (prometheus, exporter):
            process.terminate()
        for process in (prometheus, exporter):
            process.wait(timeout=20)
        log.close()


def query(base: str, promql: str) -> dict[str, float]:
    """Instant query; returns {label set as text: value}."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            data = json.loads(response.read())
    except OSError:
        return {}
    return {
        json.dumps(item["metric"], sort_keys=True): float(item["value"][1])
        for item in data["data"]["result"]
    }


def single(base: str, promql: str) -> float | None:
    values = list(query(base, promql).values())
    return values[0] if len(values) == 1 else None


def test_prometheus_scrapes_what_the_manager_observed(env: LocalEnvironment, servers: str) -> None:
    assert env.manager.reconcile(1, RESOURCES) == 1
    env.wait_online(1, 60)
    env.manager.reconcile(1, RESOURCES)  # sees the runner online: idle, time to online

    expected = {
        'expected_runners_count{flavor="pm"}': 1.0,
        'idle_runners_count{flavor="pm"}': 1.0,
        'starting_runners_count{flavor="pm"}': 0.0,
        'created_runners_total{flavor="pm"}': 1.0,
        'runner_time_to_online_seconds_count{flavor="pm"}': 1.0,
        'reconcile_duration_seconds_count{flavor="pm"}': 2.0,
    }
    try:
        wait_for(
            lambda: all(single(servers, q) == v for q, v in expected.items()), 30, "Prometheus"
        )
    except AssertionError:
        assert {q: single(servers, q) for q in expected} == expected
        raise
    jit = 'github_api_requests_total{method="POST", status="201", '
    jit += 'route="/repos/{owner}/{repo}/actions/runners/generate-jitconfig"}'
    assert single(servers, jit) == 1.0
    remaining = single(servers, "github_api_rate_limit_remaining")
    assert remaining is not None and remaining > 0
    online = single(servers, 'runner_time_to_online_seconds_sum{flavor="pm"}')
    assert online is not None and 0 < online < 120
    assert single(servers, 'up{job="github-runner"}') == 1.0

    # Scrapes call nobody: the manager's listing route keeps its count over several scrapes.
    before = env.control("GET", "/stats")["requests"].get(LIST_RUNNERS, 0)
    time.sleep(3)  # three scrape intervals
    assert env.control("GET", "/stats")["requests"].get(LIST_RUNNERS, 0) == before
    scrapes = single(servers, 'count_over_time(up{job="github-runner"}[3s])')
    assert scrapes is not None and scrapes >= 2
