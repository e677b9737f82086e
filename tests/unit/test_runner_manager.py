"""RunnerManager against fakes of its seams: plans executed, failures isolated, no leaks."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

import errors
from artifacts import runner_image
from config.settings import RunnerManagerSettings
from github_api.types import GitHubRepo, JobInfo, JobStatus
from lxd.network import unit_resource_name
from lxd.types import InstanceStatus
from metrics.storage import DirectoryStorageManager
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDFlushMode, LXDRunnerManagerConfig, RunnerManagerClients
from runner_type import VirtualMachineResources
from tests.unit.fakes_core import FakeRepoPolicy, make_state, runner_tarball
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd

RES = VirtualMachineResources(cpu=1, memory="512MiB", disk="2GiB")


@pytest.fixture
def lxd() -> FakeLxd:
    return FakeLxd()


OWN = unit_resource_name("gh", 0)  # the unit's own bridge and pool


@pytest.fixture
def github() -> FakeGithub:
    return FakeGithub()


@pytest.fixture
def settings(tmp_path: Path) -> RunnerManagerSettings:
    return RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron" / "github-runner-image",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
        busy_delete_wait=0.2,
        repo_check_wait=0.5,
        lock_timeout=0.2,
        clone_from_template=False,  # runners counted alone: see test_runner_template
    )


def make_manager(
    lxd, github, settings, metrics_enabled: bool = False, storage=None, repo_policy_url=None
):
    state = make_state(is_metrics_enabled=metrics_enabled)
    if repo_policy_url:
        settings = RunnerManagerSettings(
            **{**settings.__dict__, "repo_policy_url": repo_policy_url}
        )
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=state.path,
        service_token="service-token",
        token=state.token.get_secret_value(),
    )
    jinja = template_environment()
    clients = RunnerManagerClients(github=github, jinja=jinja, lxd=lxd, repo=FakeRepoPolicy())
    runner_tarball(settings.state_dir.parent / "runner.tar.gz")
    return RunnerManager(
        "gh", 0, config, clients=clients, settings=settings, metrics_storage=storage
    )


def go_online(github: FakeGithub, busy: set[str] = frozenset()) -> None:
    for rec in github.records.values():
        rec.online = True
        rec.busy = rec.name in busy


def test_reconcile_creates_registers_and_starts(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    assert manager.reconcile(3, RES) == 3
    assert len(lxd.instances) == 3
    assert {r.name for r in github.records.values()} == set(lxd.instances)
    for inst in lxd.instances.values():
        assert inst.name.startswith("gh-0-") and len(inst.name) == len("gh-0-") + 8
        assert inst.config["user.github-runner.app"] == "gh"
        assert inst.config["user.github-runner.unit"] == "gh-0"
        assert inst.devices == {}, "no proxy device: runners reach GitHub over their NIC"
        assert inst.profiles[:2] == ["default", f"runner-net-{OWN}-pool-{OWN}-ipf"]
        assert inst.addressed, "the DHCP lease is awaited before the runner starts"
        pushed = inst.files_pushed
        app = "/home/ubuntu/actions-runner"
        assert {f"{app}/.env", f"{app}/pre-job.sh", f"{app}/start.sh", f"{app}/.jitconfig"} <= set(
            pushed
        )
        assert pushed[f"{app}/.jitconfig"][1:] == (0o600, 1000, 1000)
        assert (
            b"ACTIONS_RUNNER_HOOK_JOB_STARTED=/home/ubuntu/actions-runner/pre-job.sh"
            in pushed[f"{app}/.env"][0]
        )
        assert any("systemd-run" in " ".join(c) for c in inst.commands)
    labels = next(iter(github.records.values())).labels
    assert labels == ("self-hosted", "linux", "x64", "gh", "noble", "fast")
    # test mode: containers, unbounded root disk; the runner NIC's profile beside the limits
    assert lxd.profiles == {"cpu-1-mem-512MiB", f"runner-net-{OWN}-pool-{OWN}-ipf"}


def test_scale_down_removes_idle_and_keeps_busy(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(3, RES)
    busy = sorted(lxd.instances)[0]
    go_online(github, busy={busy})
    assert manager.reconcile(1, RES) == -2
    assert set(lxd.instances) == {busy}
    assert [r.name for r in github.records.values()] == [busy]
    assert manager.reconcile(0, RES) == -1
    assert set(lxd.instances) == {busy}, "a busy runner is never scaled down"


def test_steady_state_costs_one_github_call(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(2, RES)
    go_online(github)
    github.calls.clear()
    assert manager.reconcile(2, RES) == 0
    assert github.calls == ["list_runners"]


def test_one_failure_never_aborts_the_reconcile(lxd, github, settings) -> None:
    lxd.fail_create_every = 2
    manager = make_manager(lxd, github, settings)
    manager.reconcile(4, RES)
    assert len(lxd.instances) == 2
    assert len(manager.last_report.created) == 2
    assert len(manager.last_report.failed) == 2
    assert {r.name for r in github.records.values()} == set(lxd.instances)


def test_failed_registration_leaves_nothing(lxd, github, settings) -> None:
    github.fail_jit = errors.GithubApiError("boom", status=503)
    manager = make_manager(lxd, github, settings)
    manager.reconcile(2, RES)
    assert lxd.instances == {}
    assert github.records == {}
    assert len(lxd.deleted) == 2


def test_failure_after_registration_deregisters(lxd, github, settings) -> None:
    lxd.fail_exec = True  # the start command fails after the JIT registration
    manager = make_manager(lxd, github, settings)
    manager.reconcile(1, RES)
    assert lxd.instances == {} and github.records == {}


def test_registration_fallback_uses_config_sh_and_hides_token(lxd, github, settings) -> None:
    github.fail_jit = errors.GithubNotFoundError("no JIT here", status=404)
    manager = make_manager(lxd, github, settings)
    manager.reconcile(1, RES)
    (inst,) = lxd.instances.values()
    config_cmd = next(c for c in inst.commands if c[0].endswith("config.sh"))
    assert "--ephemeral" in config_cmd and "reg-token" in config_cmd
    assert f"{inst.name}" in config_cmd


def test_orphans_and_unhealthy_are_cleaned(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.add_instance("gh-0-orphan00", age=timedelta(hours=1))  # no record after the timeout
    github.add_record("gh-0-gone0000", online=False)  # record, no instance
    github.add_record("other-0-aaaa", online=False)  # another unit's: never touched
    lxd.add_instance("gh-1-aaaaaaaa")  # another unit's instance: never touched
    manager.reconcile(0, RES)
    assert "gh-0-orphan00" not in lxd.instances
    assert github.by_name("gh-0-gone0000") is None
    assert github.by_name("other-0-aaaa") is not None
    assert "gh-1-aaaaaaaa" in lxd.instances


@pytest.mark.parametrize(
    ("mode", "busy_left"),
    [
        (LXDFlushMode.FLUSH_IDLE, True),
        (LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK, True),
        (LXDFlushMode.FLUSH_BUSY, False),
        (LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK, False),
        (LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK, False),
    ],
)
def test_flush_modes(lxd, github, settings, mode, busy_left) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(3, RES)
    busy = sorted(lxd.instances)[0]
    go_online(github, busy={busy})
    flushed = manager.flush(mode)
    assert flushed == (2 if busy_left else 3)
    assert (busy in lxd.instances) is busy_left
    assert len(lxd.instances) == (1 if busy_left else 0)


def test_busy_flush_removes_the_record_once_github_releases_it(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(1, RES)
    go_online(github, busy=set(lxd.instances))
    (inst,) = lxd.instances.values()
    real_delete = inst.delete

    def delete_and_release(**kwargs):
        real_delete(**kwargs)
        for rec in github.records.values():
            rec.busy, rec.online = False, False

    inst.delete = delete_and_release  # GitHub sees the runner gone once its instance is
    assert manager.flush(LXDFlushMode.FLUSH_BUSY) == 1
    assert github.records == {}


def test_force_flush_without_github_deletes_instances(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(2, RES)
    github.fail_list = errors.GithubTokenError("octo/repo")
    assert manager.flush(LXDFlushMode.FORCE_FLUSH_WAIT_REPO_CHECK) == 2
    assert lxd.instances == {}
    with pytest.raises(errors.GithubTokenError):
        manager.flush(LXDFlushMode.FLUSH_BUSY)


def test_wait_repo_check_waits_for_checks_in_flight(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings, repo_policy_url="http://127.0.0.1:9/")
    manager.reconcile(1, RES)
    go_online(github)
    (inst,) = lxd.instances.values()
    repo = manager._clients.repo
    repo.in_flight = {inst.config["user.github-runner.policy-token-sha256"], "f" * 64}
    repo.in_flight_polls = 2  # the service answers the check after the second look
    assert manager.flush(LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK) == 1
    assert repo.in_flight_calls == 3
    assert lxd.instances == {}


def test_wait_repo_check_is_bounded(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings, repo_policy_url="http://127.0.0.1:9/")
    manager.reconcile(1, RES)
    go_online(github)
    (inst,) = lxd.instances.values()
    manager._clients.repo.in_flight = {inst.config["user.github-runner.policy-token-sha256"]}
    assert manager.flush(LXDFlushMode.FLUSH_BUSY_WAIT_REPO_CHECK) == 1
    assert manager._clients.repo.in_flight_calls > 1


def test_checks_of_other_runners_do_not_delay(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings, repo_policy_url="http://127.0.0.1:9/")
    manager.reconcile(1, RES)
    go_online(github)
    manager._clients.repo.in_flight = {"f" * 64}  # another unit's runner, or a guess
    assert manager.flush(LXDFlushMode.FLUSH_IDLE_WAIT_REPO_CHECK) == 1
    assert manager._clients.repo.in_flight_calls == 1


def test_lock_excludes_a_second_process(lxd, github, settings) -> None:
    first = make_manager(lxd, github, settings)
    second = make_manager(lxd, github, settings)
    with first._locked("test"), pytest.raises(errors.ReconcileError, match="held the lock"):
        second.reconcile(1, RES)


def test_policy_token_is_pushed_when_the_service_is_configured(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings, repo_policy_url="http://127.0.0.1:9/")
    manager.reconcile(1, RES)
    (inst,) = lxd.instances.values()
    token = inst.files_pushed["/home/ubuntu/actions-runner/.repo-policy-token"]
    assert token == (b"one-time-1", 0o600, 1000, 1000)
    assert b"/check" in inst.files_pushed["/home/ubuntu/actions-runner/pre-job.sh"][0]


def test_metrics_round_trip(lxd, github, settings, tmp_path, monkeypatch) -> None:
    log = tmp_path / "metrics.log"
    monkeypatch.setenv("GITHUB_RUNNER_METRICS_LOG", str(log))
    storage = DirectoryStorageManager(tmp_path / "stores", tmp_path / "quarantine")
    manager = make_manager(lxd, github, settings, metrics_enabled=True, storage=storage)
    manager.reconcile(1, RES)
    (inst,) = lxd.instances.values()
    assert inst.devices["metrics"]["path"] == "/metrics-exchange"
    store = Path(inst.devices["metrics"]["source"])
    installed = float((store / "runner-installed.timestamp").read_text())
    (store / "pre-job-metrics.json").write_text(
        json.dumps(
            {
                "timestamp": installed + 5,
                "workflow": "ci",
                "workflow_run_id": 7,
                "repository": "octo/repo",
                "event": "push",
            }
        )
    )
    (store / "post-job-metrics.json").write_text(
        json.dumps({"timestamp": installed + 65, "status": "normal", "status_info": {"code": 0}})
    )
    from datetime import datetime, timezone

    created = datetime.fromtimestamp(installed, timezone.utc)
    github.jobs[7] = [
        JobInfo(
            1, JobStatus.COMPLETED, "success", created, created + timedelta(seconds=3), inst.name
        )
    ]
    # the job ran: the instance powered off and is gone; GitHub removed the ephemeral runner
    inst.delete()
    github.records.clear()
    manager.reconcile(1, RES)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert names.count("runner_installed") == 2
    start = next(e for e in events if e["event"] == "runner_start")
    stop = next(e for e in events if e["event"] == "runner_stop")
    assert start["queue_duration"] == 3.0 and start["idle"] == 5.0
    assert stop["job_duration"] == 60.0 and stop["job_conclusion"] == "success"
    assert names[-1] == "reconciliation"
    assert not store.exists(), "a read store is deleted"


def test_runner_binary_check_and_version(lxd, github, settings, tmp_path) -> None:
    manager = make_manager(lxd, github, settings)
    assert not manager.check_runner_bin()
    assert manager.runner_bin_version() is None
    app = manager.get_latest_runner_bin_url()
    assert app.version == "2.330.0"


def test_schedule_build_image_is_staggered_and_stable(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.schedule_build_runner_image()
    line = manager.cron_path.read_text().splitlines()[1]
    minute = runner_image.schedule_minute("gh", 0)
    assert line.startswith(f"{minute} */6 * * * root timeout 3600 ")
    assert "--alias github-runner-test --test" in line
    assert (
        runner_image.schedule_minute("gh", 1) != minute
        or runner_image.schedule_minute("gh", 2) != minute
    )


def test_image_presence(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    assert manager.has_runner_image()
    lxd.images.clear()
    assert not manager.has_runner_image()
    manager.reconcile(1, RES)
    assert manager.last_report.failed and not lxd.instances


def test_get_github_info(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    manager.reconcile(2, RES)
    go_online(github, busy={sorted(lxd.instances)[0]})
    infos = sorted(manager.get_github_info(), key=lambda i: i.name)
    assert [(i.status.value, i.busy) for i in infos] == [("online", True), ("online", False)]
    assert GitHubRepo("octo", "repo") == manager.config.path


def test_half_built_instance_of_a_killed_creation_is_replaced(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    half = lxd.add_instance("gh-0-halfbuil", age=timedelta(seconds=3))
    half.config.clear()  # never marked created: its creation was killed part-way
    github.add_record("gh-0-halfbuil", online=False)
    assert manager.reconcile(1, RES) == 1
    assert "gh-0-halfbuil" not in lxd.instances
    assert github.by_name("gh-0-halfbuil") is None
    assert len(lxd.instances) == 1
    (inst,) = lxd.instances.values()
    assert inst.config["user.github-runner.created"] == "true"


def test_runners_go_on_the_unit_bridge_or_the_network_option(lxd, github, settings) -> None:
    from manager.complete_settings import complete_settings

    state = make_state(test_mode=True)
    config = LXDRunnerManagerConfig(
        charm_state=state,
        image="i",
        lxd_storage_path=Path("/x"),
        path=state.path,
        service_token="s",
        token="t",
        repo_policy_url="http://198.18.2.1:8567",
    )
    done = complete_settings(settings, config)
    assert (done.runner_network, done.storage_pool) == (OWN, OWN)
    assert done.repo_policy_url == "http://198.18.2.1:8567"
    chosen = replace(config, charm_state=make_state(runner_network="lxdbr1"))
    assert complete_settings(settings, chosen).runner_network == "lxdbr1"
    given = replace(settings, runner_network="tnab12", storage_pool="default")
    assert (complete_settings(given, chosen).runner_network, given.storage_pool) == (
        "tnab12",
        "default",
    )


def test_a_runner_without_a_lease_is_not_started_and_leaves_nothing(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.fail_address = True
    manager.reconcile(1, RES)
    assert lxd.instances == {}
    assert github.records == {}


def test_a_missing_runner_network_fails_the_creation_cleanly(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.missing_networks.add(OWN)
    manager.reconcile(1, RES)
    assert lxd.instances == {} and github.records == {}


def test_unhealthy_runner_logs_are_kept_before_it_goes(lxd, github, settings) -> None:
    manager = make_manager(lxd, github, settings)
    lxd.add_instance("gh-0-neverup0", age=timedelta(hours=1))  # never came online
    github.add_record("gh-0-neverup0", online=False)
    manager.reconcile(0, RES)
    assert "gh-0-neverup0" not in lxd.instances
    kept = settings.runner_log_dir / "gh-0-neverup0.log"
    assert kept.read_bytes() == b"logs of gh-0-neverup0"


@pytest.mark.parametrize("registered", [True, False])
def test_instance_in_error_state_is_replaced_at_once(lxd, github, settings, registered) -> None:
    # LXD says "Error" seconds after the creation: no bootstrap timeout to wait out.
    manager = make_manager(lxd, github, settings)
    lxd.add_instance("gh-0-errored0", age=timedelta(seconds=5), status=InstanceStatus.ERROR)
    if registered:
        github.add_record("gh-0-errored0", online=False)
    assert manager.reconcile(1, RES) == 1
    assert manager.last_report.deleted == {"gh-0-errored0": "unhealthy"}
    assert "gh-0-errored0" not in lxd.instances
    assert github.by_name("gh-0-errored0") is None
    assert len(lxd.instances) == 1
