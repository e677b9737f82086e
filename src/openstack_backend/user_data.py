"""The cloud-init user data of one OpenStack runner: the start script with its JIT config.

The script (``templates/openstack-user-data.sh.j2``) carries the runner's just-in-time
configuration, never a reusable registration token. Nova keeps user data readable from inside
the server (metadata service) for its whole life: a JIT config is good for this one runner and
one job only, so the job can read nothing it could reuse elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jinja2 import Environment

from errors import TemplateValueError
from runner_type import ProxySetting

TEMPLATE = "openstack-user-data.sh.j2"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class UserDataConfig:
    """What the user data of a runner holds besides its JIT config.

    Attributes:
        runner_dir: Where the runner application is (or is unpacked to) in the image.
        runner_user: The user the runner runs as.
        proxies: The proxy environment of the runner.
        dockerhub_mirror: A Docker Hub mirror URL, if any.
        binary_url: Where to fetch the runner application when the image has none.
        metrics_url: Hook for the metrics piece: where the runner POSTs how its job ended
            (``{"runner", "timestamp", "exit_code"}``); None: no POST.
        extra_env: More environment variables for the runner.
    """

    runner_dir: str = "/home/ubuntu/actions-runner"
    runner_user: str = "ubuntu"
    proxies: ProxySetting = field(default_factory=ProxySetting)
    dockerhub_mirror: str | None = None
    binary_url: str | None = None
    metrics_url: str | None = None
    extra_env: tuple[tuple[str, str], ...] = ()


def render_user_data(
    jinja: Environment, runner_name: str, jit_config: str, config: UserDataConfig
) -> str:
    """Render the user data of one runner.

    Args:
        jinja: The project's template environment (``manager.templates``).
        runner_name: The runner's name.
        jit_config: The runner's encoded JIT configuration. Secret: never logged.
        config: The rest of what the script holds.

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
    return jinja.get_template(TEMPLATE).render(
        runner_name=runner_name,
        jit_config=jit_config,
        runner_dir=config.runner_dir,
        runner_user=config.runner_user,
        env=env,
        dockerhub_mirror=config.dockerhub_mirror,
        binary_url=config.binary_url,
        metrics_url=config.metrics_url,
    )
