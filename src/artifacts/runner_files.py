"""The files a runner gets at creation, rendered from the templates (no I/O but the templates).

The runner's environment (``env.j2``, which names the pre-job hook), the pre-job policy gate
(``pre-job.sh.j2``) and the start script (``start.sh.j2``) are rendered for one runner; pushing
them into the instance is the runner's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment

    from runner_type import RunnerConfig

METRICS_EXCHANGE_PATH = "/metrics-exchange"
RUNNER_UID = 1000


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
    """Render the environment, pre-job and start scripts of one runner.

    Args:
        jinja: The template environment (``runner_manager.template_environment``).
        config: The runner's configuration (proxies, mirror, debug servers).
        runner_dir: The runner application directory inside the instance.
        runner_user: The account the runner runs as.
        repo_policy_url: The pre-job policy service as runners reach it; None: no gate.

    Returns:
        The files: ``.env`` and ``pre-job.sh`` owned by the runner user, ``start.sh`` by root.
    """
    pre_job = runner_dir / "pre-job.sh"
    context = {
        "runner_dir": str(runner_dir),
        "metrics_dir": METRICS_EXCHANGE_PATH,
        "pre_job_script": str(pre_job),
        "proxies": config.proxies,
        "dockerhub_mirror": config.dockerhub_mirror,
        "ssh_debug_connections": config.ssh_debug_connections,
        "repo_policy_url": repo_policy_url,
        "runner_user": runner_user,
        "power_off": True,
    }

    def render(template: str) -> bytes:
        return jinja.get_template(template).render(**context).encode()

    return (
        RunnerFile(str(runner_dir / ".env"), render("env.j2"), 0o644, RUNNER_UID),
        RunnerFile(str(pre_job), render("pre-job.sh.j2"), 0o755, RUNNER_UID),
        RunnerFile(str(runner_dir / "start.sh"), render("start.sh.j2"), 0o755, 0),
    )
