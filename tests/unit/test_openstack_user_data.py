"""The user data of an OpenStack runner: valid bash, JIT config in, no token, hooks rendered."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from errors import TemplateValueError
from manager.templates import template_environment
from openstack_backend.user_data import UserDataConfig, render_user_data
from runner_type import ProxySetting


def render(config: UserDataConfig, jit: str = "eyJqaXQiOiAiY29uZmlnIn0=") -> str:
    return render_user_data(template_environment(), "gh-0-abcd1234", jit, config)


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
            metrics_url="http://10.0.0.1:9464/runner-events",
        ),
    ],
)
def test_user_data_is_valid_bash(config: UserDataConfig) -> None:
    script = render(config)
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
    full = render(
        UserDataConfig(
            proxies=ProxySetting(http="http://proxy:3128"),
            metrics_url="http://10.0.0.1:9464/runner-events",
            extra_env=(("RUNNER_FLAVOR", "small"),),
        )
    )
    assert "export http_proxy=http://proxy:3128" in full
    assert "export HTTP_PROXY=http://proxy:3128" in full
    assert "export RUNNER_FLAVOR=small" in full
    assert "http://10.0.0.1:9464/runner-events" in full
    assert '"gh-0-abcd1234"' in full


def test_a_value_with_a_line_break_is_refused() -> None:
    with pytest.raises(TemplateValueError):
        render(UserDataConfig(proxies=ProxySetting(http="http://p\nrm -rf /")))


def test_an_environment_name_that_is_not_a_shell_name_is_refused() -> None:
    with pytest.raises(TemplateValueError):
        render(UserDataConfig(extra_env=(("A;reboot", "x"),)))
