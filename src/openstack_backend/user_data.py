"""The cloud-init user data of one OpenStack runner: the start script with its JIT config.

The script (``templates/openstack-user-data.sh.j2``) carries the runner's just-in-time
configuration, never a reusable registration token. Nova keeps user data readable from inside
the server (metadata service) for its whole life: a JIT config is good for this one runner and
one job only, so the job can read nothing it could reuse elsewhere.

It also writes the files an LXD runner gets (``artifacts.runner_files``): the job-started hook
(the same ``pre-job.sh.j2``, named by ``ACTIONS_RUNNER_HOOK_JOB_STARTED``), the one-time policy
token (``.repo-policy-token``, 0600, the runner user's; the hook deletes it when it asks) and,
with a push URL, the metrics push token (``.metrics-push-token``). The policy token is spent by
the check before the job's first step, and the push token only lets this runner write its own
two metrics files once each (``metrics.push``), so what the job could read from the metadata
service is worth nothing elsewhere.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from jinja2 import Environment

from errors import TemplateValueError
from runner_type import ProxySetting

TEMPLATE = "openstack-user-data.sh.j2"
PRE_JOB_TEMPLATE = "pre-job.sh.j2"
METRICS_DIR = "/var/lib/github-runner-metrics"
"""Where the runner writes its metrics files before pushing them (LXD: the mounted store)."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class MetricsPush:
    """Where and with what one runner pushes its metrics files.

    Attributes:
        url: The runner's push URL, ending in ``/`` (``<policy url>/metrics/<runner>/``).
        token: The runner's push token (``metrics.push.push_token``). Secret.
    """

    url: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class UserDataConfig:
    """What the user data of a runner holds besides its JIT config.

    Attributes:
        runner_dir: Where the runner application is (or is unpacked to) in the image.
        runner_user: The user the runner runs as.
        proxies: The proxy environment of the runner.
        dockerhub_mirror: A Docker Hub mirror URL, if any.
        binary_url: Where to fetch the runner application when the image has none.
        repo_policy_url: The policy service as runners reach it; None: the hook checks nothing.
        metrics_dir: Where the runner writes its metrics files (then pushes them).
        extra_env: More environment variables for the runner.
    """

    runner_dir: str = "/home/ubuntu/actions-runner"
    runner_user: str = "ubuntu"
    proxies: ProxySetting = field(default_factory=ProxySetting)
    dockerhub_mirror: str | None = None
    binary_url: str | None = None
    repo_policy_url: str | None = None
    metrics_dir: str = METRICS_DIR
    extra_env: tuple[tuple[str, str], ...] = ()


def render_user_data(
    jinja: Environment,
    runner_name: str,
    jit_config: str,
    config: UserDataConfig,
    *,
    policy_token: str | None = None,
    push: MetricsPush | None = None,
) -> str:
    """Render the user data of one runner.

    Args:
        jinja: The project's template environment (``manager.templates``).
        runner_name: The runner's name.
        jit_config: The runner's encoded JIT configuration. Secret: never logged.
        config: The rest of what the script holds.
        policy_token: The runner's one-time policy token (with ``config.repo_policy_url``).
            Secret.
        push: Where the runner pushes its metrics files; None: they stay in the server.

    Returns:
        The script, as text (the client base64-encodes it for Nova).

    Raises:
        TemplateValueError: If a value cannot be written into the script.
    """
    env: dict[str, str] = {}
    for key, value in (
        ("http_proxy", config.proxies.http),
        ("https_proxy", config.proxies.https),
        ("no_proxy", config.proxies.no_proxy),
    ):
        if value:
            env[key] = value
            env[key.upper()] = value
    env.update(config.extra_env)
    if any(not _ENV_NAME.fullmatch(key) for key in env):
        raise TemplateValueError("shell", "an environment variable name is not a shell name")
    pre_job = jinja.get_template(PRE_JOB_TEMPLATE).render(
        runner_dir=config.runner_dir,
        metrics_dir=config.metrics_dir,
        repo_policy_url=config.repo_policy_url,
        metrics_push_url=push.url if push else None,
    )
    return jinja.get_template(TEMPLATE).render(
        runner_name=runner_name,
        jit_config=jit_config,
        runner_dir=config.runner_dir,
        runner_user=config.runner_user,
        env=env,
        dockerhub_mirror=config.dockerhub_mirror,
        binary_url=config.binary_url,
        metrics_dir=config.metrics_dir,
        pre_job_base64=base64.b64encode(pre_job.encode()).decode(),
        policy_token=policy_token if config.repo_policy_url else None,
        push=push,
    )
