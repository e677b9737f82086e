"""The files a runner gets at creation, rendered from the templates (no I/O but the templates).

The runner's environment (``env.j2``, which names the pre-job hook), the pre-job policy gate
(``pre-job.sh.j2``) and the start script (``start.sh.j2``) are rendered for one runner, with
where the runner's tools read the model's proxy and the Docker Hub mirror:

- the model's proxy: the env file, apt (``/etc/apt/apt.conf.d/95github-runner-proxy``), the
  docker daemon (``/etc/systemd/system/docker.service.d/http-proxy.conf``) and the containers
  jobs start (``~/.docker/config.json``); with ``experimental-use-aproxy`` none of these: the
  traffic is redirected instead (redsocks config, nftables rules and the script start.sh runs
  first, see :mod:`artifacts.runner_proxy`);
- ``dockerhub-mirror``: the env file and ``/etc/docker/daemon.json`` (``registry-mirrors``).

Pushing them into the instance is the runner's job (the image has their directories).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from artifacts.runner_proxy import (
    APROXY_HTTP_PORT,
    APROXY_HTTPS_PORT,
    aproxy_endpoint,
    direct_networks,
    render_aproxy_rules,
)
from runner_type import ProxySetting

if TYPE_CHECKING:
    from jinja2 import Environment

    from runner_type import RunnerConfig

METRICS_EXCHANGE_PATH = "/metrics-exchange"
RUNNER_UID = 1000
APT_PROXY_PATH = "/etc/apt/apt.conf.d/95github-runner-proxy"
DOCKER_PROXY_PATH = "/etc/systemd/system/docker.service.d/http-proxy.conf"
DOCKER_DAEMON_PATH = "/etc/docker/daemon.json"
REDSOCKS_CONFIG_PATH = "/etc/redsocks.conf"
APROXY_RULES_PATH = "/etc/github-runner-aproxy.nft"
APROXY_SCRIPT_PATH = "/usr/local/sbin/github-runner-aproxy"


@dataclass(frozen=True)
class RunnerFile:
    """One file to push into a runner instance.

    Attributes:
        path: Where it goes inside the instance.
        content: Its bytes.
        mode: Its permission bits.
        owner: uid (and gid) inside the instance.
    """

    path: str
    content: bytes
    mode: int
    owner: int


def render_runner_files(
    jinja: Environment,
    config: RunnerConfig,
    *,
    runner_dir: PurePosixPath,
    runner_user: str,
    repo_policy_url: str | None,
) -> tuple[RunnerFile, ...]:
    """Render the environment, pre-job and start scripts of one runner, and its proxy files.

    Args:
        jinja: The template environment (``runner_manager.template_environment``).
        config: The runner's configuration (proxies, aproxy, mirror, debug servers).
        runner_dir: The runner application directory inside the instance.
        runner_user: The account the runner runs as.
        repo_policy_url: The pre-job policy service as runners reach it; None: no gate.

    Returns:
        The files: ``.env`` and ``pre-job.sh`` owned by the runner user, ``start.sh`` by root,
        then the proxy and mirror files (see the module docstring).

    Raises:
        ConfigError: aproxy is on with a proxy redsocks cannot use.
    """
    pre_job = runner_dir / "pre-job.sh"
    # With aproxy the traffic is redirected: jobs and tools get no proxy settings.
    proxies = ProxySetting() if config.aproxy else config.proxies
    context: dict[str, Any] = {
        "runner_dir": str(runner_dir),
        "metrics_dir": METRICS_EXCHANGE_PATH,
        "pre_job_script": str(pre_job),
        "proxies": proxies,
        "dockerhub_mirror": config.dockerhub_mirror,
        "ssh_debug_connections": config.ssh_debug_connections,
        "repo_policy_url": repo_policy_url,
        "runner_user": runner_user,
        "power_off": True,
        "aproxy_script": APROXY_SCRIPT_PATH if config.aproxy else None,
    }

    def render(template: str, **extra: Any) -> bytes:
        return jinja.get_template(template).render(**context, **extra).encode()

    files = [
        RunnerFile(str(runner_dir / ".env"), render("env.j2"), 0o644, RUNNER_UID),
        RunnerFile(str(pre_job), render("pre-job.sh.j2"), 0o755, RUNNER_UID),
        RunnerFile(str(runner_dir / "start.sh"), render("start.sh.j2"), 0o755, 0),
    ]
    if proxies.http or proxies.https:
        docker = {
            key: value
            for key, value in (
                ("httpProxy", proxies.http),
                ("httpsProxy", proxies.https),
                ("noProxy", proxies.no_proxy),
            )
            if value
        }
        client = render("docker-client.json.j2", docker_proxies=docker)
        files += [
            RunnerFile(APT_PROXY_PATH, render("apt-proxy.conf.j2"), 0o644, 0),
            RunnerFile(DOCKER_PROXY_PATH, render("docker-proxy.conf.j2"), 0o644, 0),
            # It may hold the proxy's credentials: the runner user's alone.
            RunnerFile(f"/home/{runner_user}/.docker/config.json", client, 0o600, RUNNER_UID),
        ]
    if config.dockerhub_mirror:
        files.append(RunnerFile(DOCKER_DAEMON_PATH, render("docker-daemon.json.j2"), 0o644, 0))
    if config.aproxy:
        files += _aproxy_files(render, config.proxies)
    return tuple(files)


def _aproxy_files(render: Callable[..., bytes], proxies: ProxySetting) -> list[RunnerFile]:
    """The redsocks config (root only: it may hold credentials), the rules and their script."""
    endpoint = aproxy_endpoint(proxies)
    redsocks = render(
        "redsocks.conf.j2",
        proxy=endpoint,
        http_port=APROXY_HTTP_PORT,
        https_port=APROXY_HTTPS_PORT,
    )
    rules = render_aproxy_rules(direct_networks(endpoint, proxies.no_proxy)).encode()
    script = render("aproxy.sh.j2", rules_file=APROXY_RULES_PATH)
    return [
        RunnerFile(REDSOCKS_CONFIG_PATH, redsocks, 0o600, 0),
        RunnerFile(APROXY_RULES_PATH, rules, 0o644, 0),
        RunnerFile(APROXY_SCRIPT_PATH, script, 0o755, 0),
    ]
