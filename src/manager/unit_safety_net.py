"""The unit's own safety net: built from its state when it runs the webhook intake.

A unit in reactive mode with ``webhook-secret`` set runs the intake (``juju.intake_host``); its
reconcile then sweeps the repository for queued jobs no webhook brought
(:class:`manager.job_safety_net.JobSafetyNet`), sharing the intake's ledger file, its routing
rule (the one flavor of this application, with the labels its runners register with) and the
queue. Without a webhook secret the net stays off: jobs reach the queue by other means (a
publisher the operator runs), and enqueueing them again would only duplicate messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.settings import RunnerManagerSettings
from intake.ledger import JobLedger
from intake.publisher import publish_job
from intake.routing import Flavor, route
from manager.job_safety_net import JobSafetyNet, QueuedJobs, SafetyNetSettings
from reactive.message import unit_supported_labels
from runner_manager_type import LXDRunnerManagerConfig, OpenstackRunnerManagerConfig


def unit_safety_net(
    config: LXDRunnerManagerConfig | OpenstackRunnerManagerConfig,
    settings: RunnerManagerSettings,
    github: QueuedJobs,
    net_settings: SafetyNetSettings | None = None,
) -> JobSafetyNet | None:
    """Return the unit's safety net, or None when the unit runs no webhook intake.

    Args:
        config: The manager's configuration (charm state, path).
        settings: The unit's paths (the intake's ledger).
        github: Lists queued jobs (the manager's GitHub client).
        net_settings: Grace and bounds (the defaults when not given).

    Returns:
        The net in reactive mode with a webhook secret, else None.
    """
    state = config.charm_state
    reactive = state.reactive_config
    if reactive is None or state.webhook_secret is None:
        return None
    labels = unit_supported_labels(state)
    flavor = Flavor(queue_name=reactive.queue_name, labels=frozenset(labels))

    def routes(job_labels: Sequence[str]) -> bool:
        return route(job_labels, [flavor]) == flavor

    return JobSafetyNet(
        github=github,
        path=config.path,
        api_url=state.api_url,
        ledger=JobLedger(settings.intake_ledger_path),
        publish=publish_job,
        mq_uri=reactive.mq_uri.get_secret_value(),
        queue_name=reactive.queue_name,
        routes=routes,
        settings=net_settings or SafetyNetSettings(),
    )
