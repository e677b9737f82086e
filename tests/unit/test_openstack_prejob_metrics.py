"""OpenStack runners' pre-job check and metrics, end to end on the fakes and the real service.

The manager creates a runner on the OpenStack fake with the policy fake's one-time token; the
hook its user data writes (the real ``pre-job.sh.j2``, bash + curl + jq) runs on the host
against the unit's real policy service (waitress on 127.0.0.1, built from its files with the
metrics push route), which refuses the unknown token: the job fails and both metrics files
land in the runner's store by PUT; once the server is gone the manager extracts them and issues
``runner_start`` / ``runner_stop`` like LXD's manager.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from config.settings import RunnerManagerSettings
from errors import RepoPolicyError
from observability import series
from observability.state import STATE_FILE_NAME, StateFile
from openstack_backend.manager import OpenstackRunnerManager
from openstack_backend.metrics_push import push_key_path, stores_dir
from openstack_backend.user_data import UserDataConfig
from repo_policy.service import BackgroundServer, ServiceFiles, build_app
from runner_manager_type import OpenstackRunnerManagerConfig
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy, make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_openstack import FakeOpenstack, openstack_config, unit_settings
from tests.unit.test_openstack_user_data import pre_job_of

RESOURCES = VirtualMachineResources(cpu=1, memory="1GiB", disk="10GiB")
needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "curl", "jq")), reason="needs bash curl jq"
)


def make_manager(
    tmp_path: Path, url: str | None, policy: object, metrics: bool = True
) -> tuple[OpenstackRunnerManager, FakeOpenstack, FakeGithub]:
    settings = unit_settings(tmp_path)
    state = make_state(is_metrics_enabled=metrics)
    config = openstack_config(state, repo_policy_url=url, service_token="svc")
    cloud, github = FakeOpenstack(), FakeGithub()
    user_data = UserDataConfig(
        runner_dir=str(tmp_path / "runner"),
        metrics_dir=str(tmp_path / "metrics"),
        repo_policy_url=url,
    )
    manager = OpenstackRunnerManager(
        "gh",
        0,
        config,
        cloud,
        github,
        settings=settings,
        user_data=user_data,
        policy=policy,  # type: ignore[arg-type]
    )
    return manager, cloud, github


def write_runner_files(script: str, runner_dir: Path) -> Path:
    """Do what the user data does with the hook and the tokens (as this user, on the host)."""
    hook = pre_job_of(script)
    runner_dir.mkdir(parents=True, exist_ok=True)
    (runner_dir / "pre-job.sh").write_text(hook)
    for name in (".repo-policy-token", ".metrics-push-token"):
        match = re.search(rf"printf '%s' (\S+) \\\n.*{re.escape(name)}\"", script)
        assert match, name
        (runner_dir / name).write_text(match.group(1))
    return runner_dir / "pre-job.sh"


@needs_tools
def test_a_refused_check_fails_the_job_and_its_metrics_are_pushed_and_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "metrics.log"
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(log))
    state_dir = tmp_path / "state" / "gh-0"
    (tmp_path / "svc-token").write_text("svc")
    files = ServiceFiles(
        token_file=tmp_path / "svc-token",
        github_token_file=tmp_path / "absent",
        github_api_url="http://127.0.0.1:9",
        metrics_stores=stores_dir(state_dir),
        metrics_push_key=push_key_path(state_dir),
    )
    policy = FakeRepoPolicy()
    with BackgroundServer(build_app(files), threads=2) as server:
        manager, cloud, github = make_manager(tmp_path, server.url, policy)
        manager.reconcile(1, RESOURCES)
        (created,) = cloud.servers.values()
        assert policy.issued == 1
        store = stores_dir(state_dir) / created.name
        assert (store / "runner-installed.timestamp").is_file()
        script = created.user_data
        assert "one-time-1" in script
        assert f"{server.url}/metrics/{created.name}/" in script
        hook = write_runner_files(script, tmp_path / "runner")
        (tmp_path / "metrics").mkdir()
        env = {
            "PATH": os.environ["PATH"],
            "GITHUB_REPOSITORY": "octo/app",
            "GITHUB_WORKFLOW": "ci",
            "GITHUB_RUN_ID": "42",
            "GITHUB_EVENT_NAME": "push",
        }
        result = subprocess.run(
            ["bash", str(hook)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 1, result.stderr
    assert "Repository policy check refused this job" in result.stderr
    assert not (tmp_path / "runner" / ".repo-policy-token").exists()
    pushed = json.loads((store / "post-job-metrics.json").read_text())
    assert pushed["status"] == "repo-policy-check-failure"
    assert json.loads((store / "pre-job-metrics.json").read_text())["repository"] == "octo/app"
    # the job ended: the server powered off and went, GitHub dropped the ephemeral runner
    cloud.servers.clear()
    github.records.clear()
    manager.reconcile(0, RESOURCES)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.count("runner_installed") == 1
    stop = next(e for e in events if e["event"] == "runner_stop")
    assert stop["status"] == "repo-policy-check-failure"
    assert "runner_start" in names
    assert not store.exists(), "a read store is deleted"


def test_a_runner_alive_keeps_its_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(tmp_path / "metrics.log"))
    manager, cloud, _ = make_manager(tmp_path, "http://127.0.0.1:9", FakeRepoPolicy())
    manager.reconcile(1, RESOURCES)
    manager.reconcile(1, RESOURCES)
    (created,) = cloud.servers.values()
    assert (stores_dir(tmp_path / "state" / "gh-0") / created.name).is_dir()


def test_each_reconcile_issues_reconciliation_and_feeds_prometheus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OpenStack reconcile ends as the LXD one does: the event and the runner gauges."""
    log = tmp_path / "metrics.log"
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(log))
    manager, cloud, github = make_manager(tmp_path, "http://127.0.0.1:9", FakeRepoPolicy())
    manager.reconcile(2, RESOURCES)
    cloud.boot()
    for server in cloud.servers.values():
        record = github.by_name(server.name)
        assert record is not None
        record.online = True
    manager.reconcile(2, RESOURCES)

    events = [json.loads(line) for line in log.read_text().splitlines()]
    reconciles = [e for e in events if e["event"] == "reconciliation"]
    assert len(reconciles) == 2
    assert [(e["idle_runners"], e["active_runners"]) for e in reconciles] == [(2, 0), (2, 0)]
    assert {e["expected_runners"] for e in reconciles} == {2}
    assert {e["flavor"] for e in reconciles} == {"gh"}
    feed = StateFile(tmp_path / "state" / "gh-0" / STATE_FILE_NAME).read()
    assert feed.value(series.EXPECTED, ("gh",)) == 2
    assert feed.value(series.IDLE, ("gh",)) == 2  # what the second reconcile observed
    assert feed.value(series.STARTING, ("gh",)) == 0


class RefusingPolicy:
    def get_one_time_token(self) -> str:
        raise RepoPolicyError("policy service unreachable")


def test_no_token_no_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(tmp_path / "metrics.log"))
    manager, cloud, github = make_manager(tmp_path, "http://127.0.0.1:9", RefusingPolicy())
    manager.reconcile(2, RESOURCES)
    assert not cloud.servers
    assert not github.records
    assert len(manager.last_report.failed) == 2
    stores = stores_dir(tmp_path / "state" / "gh-0")
    assert not stores.exists() or not list(stores.iterdir())


def test_a_refused_server_leaves_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(tmp_path / "metrics.log"))
    manager, cloud, github = make_manager(tmp_path, "http://127.0.0.1:9", FakeRepoPolicy())
    cloud.quota = 0
    manager.reconcile(1, RESOURCES)
    assert manager.last_report.quota_exceeded
    assert not github.records
    assert not list(stores_dir(tmp_path / "state" / "gh-0").iterdir())


def test_without_metrics_no_store_and_no_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(tmp_path / "metrics.log"))
    policy = FakeRepoPolicy()
    manager, cloud, _ = make_manager(tmp_path, "http://127.0.0.1:9", policy, metrics=False)
    manager.reconcile(1, RESOURCES)
    (created,) = cloud.servers.values()
    assert "/metrics/" not in created.user_data
    assert "one-time-1" in created.user_data
    assert not stores_dir(tmp_path / "state" / "gh-0").exists()


def test_without_a_policy_url_no_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(tmp_path / "metrics.log"))
    policy = FakeRepoPolicy()
    manager, cloud, _ = make_manager(tmp_path, None, policy)
    manager.reconcile(1, RESOURCES)
    (created,) = cloud.servers.values()
    assert policy.issued == 0
    assert "/check" not in created.user_data


def test_the_config_repr_hides_the_tokens() -> None:
    state = make_state()
    config = OpenstackRunnerManagerConfig(
        charm_state=state,
        path=state.path,
        labels=(),
        token="ghp_secret",
        flavor="f",
        image="i",
        network="n",
        dockerhub_mirror=None,
    )
    shown = repr(replace(config, repo_policy_url="http://10.0.0.1:8567", service_token="svc-x"))
    assert "ghp_secret" not in shown and "svc-x" not in shown
    assert "http://10.0.0.1:8567" in shown


def test_the_units_policy_service_takes_the_pushes_where_the_manager_reads(
    tmp_path: Path,
) -> None:
    from juju.policy_host import RepoPolicyService

    state_dir = tmp_path / "state" / "gh-0"
    service = RepoPolicyService(
        "gh/0", config_dir=tmp_path / "etc", unit_dir=tmp_path / "units", state_dir=state_dir
    )
    unit = service.render_unit("https://api.github.com", "10.0.0.1", 8567)
    (start,) = (line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert f'--metrics-stores "{stores_dir(state_dir)}"' in start
    assert f'--metrics-push-key "{push_key_path(state_dir)}"' in start
    assert f"ReadWritePaths=-{stores_dir(state_dir)} -{push_key_path(state_dir).parent}" in unit
    assert "ExecStartPre=+/bin/mkdir -p -m 0700" in unit
    default = RepoPolicyService("gh/0", config_dir=tmp_path / "etc", unit_dir=tmp_path / "u")
    settings = RunnerManagerSettings.for_unit("gh", 0)
    assert default.state_dir == settings.state_dir


def test_the_manager_config_takes_the_units_policy_endpoint() -> None:
    from ops import testing

    from juju.manager_port import manager_config
    from juju.policy_host import RepoPolicyEndpoint
    from tests.unit.test_juju_openstack_options import CLOUDS, _openstack, build

    secret = testing.Secret(tracked_content={"clouds-yaml": CLOUDS})
    state = build(_openstack(**{"openstack-clouds-yaml-secret-id": secret.id}), secrets=[secret])
    endpoint = RepoPolicyEndpoint("http://10.0.0.5:8567", "svc-secret")
    config = manager_config(state, Path("/var/lib/runners"), endpoint)
    assert isinstance(config, OpenstackRunnerManagerConfig)
    assert (config.repo_policy_url, config.service_token) == (endpoint.url, endpoint.service_token)
    assert "svc-secret" not in repr(config)
    bare = manager_config(state, Path("/var/lib/runners"), None)
    assert isinstance(bare, OpenstackRunnerManagerConfig)
    assert (bare.repo_policy_url, bare.service_token) == (None, "")
