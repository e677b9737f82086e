"""The user data of an OpenStack runner: valid bash, JIT config in, no GitHub token, the hook."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest

from errors import TemplateValueError
from manager.templates import template_environment
from openstack_backend.user_data import MetricsPush, UserDataConfig, render_user_data
from runner_type import ProxySetting

POLICY = "http://10.0.0.1:8567"
PUSH = MetricsPush(f"{POLICY}/metrics/gh-0-abcd1234/", "f00d" * 16)


def render(
    config: UserDataConfig,
    jit: str = "eyJqaXQiOiAiY29uZmlnIn0=",
    policy_token: str | None = None,
    push: MetricsPush | None = None,
) -> str:
    return render_user_data(
        template_environment(),
        "gh-0-abcd1234",
        jit,
        config,
        policy_token=policy_token,
        push=push,
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    "config",
    [
        UserDataConfig(),
        UserDataConfig(
            proxies=ProxySetting(
                http="http://proxy:3128", https="http://proxy:3128", no_proxy="x"
            ),
            dockerhub_mirror="https://mirror.example:5000",
            binary_url="https://example.invalid/actions-runner.tar.gz",
            repo_policy_url=POLICY,
        ),
    ],
)
def test_user_data_is_valid_bash(config: UserDataConfig) -> None:
    script = render(config, policy_token="one-time-token-abcdef", push=PUSH)
    assert script.startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)


def test_jit_config_goes_to_the_runner_environment_only() -> None:
    script = render(UserDataConfig(), jit="secret'jit")
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG='secret'\"'\"'jit' runuser" in script
    assert "--token" not in script
    assert "config.sh" not in script
    assert "shutdown -h now" in script


def test_optional_parts_appear_only_when_set() -> None:
    bare = render(UserDataConfig())
    assert "curl" not in bare
    assert "http_proxy" not in bare
    assert ".repo-policy-token" not in bare
    assert "/check" not in bare
    full = render(
        UserDataConfig(
            proxies=ProxySetting(http="http://proxy:3128"),
            extra_env=(("RUNNER_FLAVOR", "small"),),
        )
    )
    assert "export http_proxy=http://proxy:3128" in full
    assert "export HTTP_PROXY=http://proxy:3128" in full
    assert "export RUNNER_FLAVOR=small" in full


def test_a_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(TemplateValueError):
        render(UserDataConfig(proxies=ProxySetting(http="http://p\nrm -rf /")))


def test_an_environment_name_that_is_not_a_shell_name_is_refused() -> None:
    with pytest.raises(TemplateValueError):
        render(UserDataConfig(extra_env=(("A;reboot", "x"),)))


def pre_job_of(script: str) -> str:
    """The hook the user data writes (decoded as the script's ``base64 -d`` does)."""
    match = re.search(
        r"printf '%s' (\S+) \| base64 -d \\\n  \| install [^\n]*/pre-job\.sh\"", script
    )
    assert match, "no hook in the user data"
    return base64.b64decode(match.group(1)).decode()


def test_the_hook_is_lxds_pre_job_script_with_its_token_file() -> None:
    config = UserDataConfig(runner_dir="/home/ubuntu/actions-runner", repo_policy_url=POLICY)
    script = render(config, policy_token="one-time-token-abcdef")
    hook = pre_job_of(script)
    assert hook == template_environment().get_template("pre-job.sh.j2").render(
        runner_dir="/home/ubuntu/actions-runner",
        metrics_dir=config.metrics_dir,
        repo_policy_url=POLICY,
        metrics_push_url=None,
    )
    assert f"{POLICY}/check" in hook
    assert 'export ACTIONS_RUNNER_HOOK_JOB_STARTED="$runner_dir/pre-job.sh"' in script
    assert (
        "printf '%s' one-time-token-abcdef \\\n"
        '  | install -m 0600 -o "$runner_user" /dev/stdin "$runner_dir/.repo-policy-token"'
    ) in script
    # the hook is written before the runner starts
    assert script.index('/pre-job.sh"\n') < script.index("./run.sh")


def test_no_github_token_and_no_secret_on_a_command_line() -> None:
    token = "ghp_" + "x" * 36
    script = render(
        UserDataConfig(repo_policy_url=POLICY), policy_token="one-time-token-abcdef", push=PUSH
    )
    assert token[:4] not in script
    assert "--token" not in script
    for line in script.splitlines():
        if "curl" in line:
            assert "one-time-token" not in line
            assert PUSH.token not in line


def test_without_a_policy_url_the_token_is_not_written() -> None:
    script = render(UserDataConfig(), policy_token="one-time-token-abcdef")
    assert "one-time-token-abcdef" not in script
    assert f"{POLICY}/check" not in script


def test_metrics_are_pushed_with_the_runners_token() -> None:
    script = render(UserDataConfig(repo_policy_url=POLICY), push=PUSH)
    hook = pre_job_of(script)
    assert f'{PUSH.url}"$1"' in hook.replace("'", "")
    assert "-X PUT" in hook and "curl -fsS -K -" in hook
    assert '"$runner_dir/.metrics-push-token"' in script
    assert f"printf '%s' {PUSH.token}" in script
    assert f"{PUSH.url}post-job-metrics.json" in script
    assert 'runuser -u "$runner_user" -- curl -fsS -K -' in script
    bare = render(UserDataConfig(repo_policy_url=POLICY))
    assert "/metrics/" not in bare
    assert ".metrics-push-token" not in bare
