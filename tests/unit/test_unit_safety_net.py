"""The unit's own safety net: on with the webhook intake, sharing its ledger, routing and queue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from pydantic import SecretStr

from config.settings import RunnerManagerSettings
from config.state import ReactiveConfig
from github_api.types import GitHubOrg, GitHubRepo, JobInfo, JobStatus
from intake.ledger import JobLedger
from manager.job_safety_net import SafetyNetSettings
from manager.unit_safety_net import unit_safety_net
from runner_manager import RunnerManager, template_environment
from runner_manager_type import LXDRunnerManagerConfig, RunnerManagerClients
from tests.unit.fakes_core import FakeRepoPolicy, make_state
from tests.unit.fakes_github import FakeGithub
from tests.unit.fakes_lxd import FakeLxd
from tests.unit.fakes_reactive import FakeConsumerPool

MQ = "amqp://u:secret@127.0.0.1//"


def config(webhook: bool = True, reactive: bool = True, **state: object) -> LXDRunnerManagerConfig:
    charm_state = make_state(
        reactive_config=ReactiveConfig(mq_uri=SecretStr(MQ), queue_name="gh")
        if reactive
        else None,
        webhook_secret=SecretStr("whsec-0123456789abcdef") if webhook else None,
        **state,
    )
    return LXDRunnerManagerConfig(
        charm_state=charm_state,
        image="github-runner-test",
        lxd_storage_path=Path("/var/lib/lxd"),
        path=charm_state.path,
        service_token="svc",
        token=charm_state.token.get_secret_value(),
        reactive_config=charm_state.reactive_config,
    )


def settings(tmp_path: Path) -> RunnerManagerSettings:
    return RunnerManagerSettings(
        state_dir=tmp_path / "state",
        cron_path=tmp_path / "cron",
        metrics_storage_dir=tmp_path / "stores",
        quarantine_dir=tmp_path / "quarantine",
        runner_log_dir=tmp_path / "logs",
    )


def test_the_net_is_on_only_with_the_webhook_intake(tmp_path: Path) -> None:
    github = FakeGithub()
    assert unit_safety_net(config(webhook=False), settings(tmp_path), github) is None
    assert unit_safety_net(config(reactive=False), settings(tmp_path), github) is None
    net = unit_safety_net(config(), settings(tmp_path), github)
    assert net is not None
    assert net.queue_name == "gh" and net.mq_uri == MQ
    assert isinstance(net.ledger, JobLedger)
    assert net.ledger.path == settings(tmp_path).intake_ledger_path  # the intake's own file
    assert MQ not in repr(net) and "secret" not in repr(net)


def test_the_net_routes_as_the_intake_does(tmp_path: Path) -> None:
    net = unit_safety_net(config(labels=("fast",)), settings(tmp_path), FakeGithub())
    assert net is not None
    assert net.routes(["self-hosted", "linux", "FAST"])
    assert net.routes(["self-hosted", "x64"])
    assert not net.routes(["self-hosted", "gpu"])


def test_the_managers_reconcile_sweeps_and_claims_in_the_intakes_ledger(tmp_path: Path) -> None:
    github = FakeGithub()
    old = datetime.now(timezone.utc) - timedelta(minutes=5)
    job = JobInfo(
        id=41,
        status=JobStatus.QUEUED,
        conclusion=None,
        created_at=old,
        started_at=None,
        runner_name=None,
        labels=("self-hosted", "fast"),
    )
    github.jobs[1] = [job]
    unit_settings = settings(tmp_path)
    ledger = JobLedger(unit_settings.intake_ledger_path)
    assert ledger.claim(41, "d-41")  # the intake enqueued it already
    ledger.confirm(41)
    clients = RunnerManagerClients(
        github=github, jinja=template_environment(), lxd=FakeLxd(), repo=FakeRepoPolicy()
    )
    manager = RunnerManager(
        "gh",
        0,
        config(),
        clients=clients,
        settings=unit_settings,
        consumer_pool=FakeConsumerPool(),
    )
    reactive = manager._reactive
    assert reactive is not None and reactive.net is not None
    report = reactive.net.sweep()
    assert report.listed == 1 and report.seen == 1 and report.enqueued == []


def test_an_organisation_gets_a_net_that_sweeps_nothing(tmp_path: Path) -> None:
    net = unit_safety_net(
        config(path=GitHubOrg("octo", "default")),
        settings(tmp_path),
        FakeGithub(),
        SafetyNetSettings(grace=timedelta(0)),
    )
    assert net is not None and not isinstance(net.path, GitHubRepo)
    assert net.sweep().listed == 0
