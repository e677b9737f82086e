"""Every rendered file keeps its shape whatever legal value reaches it (issue 15, item 2).

Values come from the option parsers (the Juju proxy environment, ``dockerhub-mirror``,
``github-url``) and from the debug-ssh relation; the templates escape them for their format:
env files, systemd units, shell scripts, JSON. A value no format can hold (a newline) is refused
at render time even if a parser let it through.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import jinja2
import pytest

import errors
from artifacts.runner_files import render_runner_files
from juju.event_timer import EventTimer
from juju.options import parse_github_url, parse_mirror, proxy_from_env
from juju.policy_host import RepoPolicyService
from manager.templates import template_environment
from paths import TEMPLATES_DIR
from runner_type import ProxySetting, RunnerConfig, SSHDebugConnection
from tests.unit.fakes_core import make_state
from tests.unit.systemd_verify import verify

RUNNER_DIR = PurePosixPath("/home/ubuntu/actions-runner")

# Odd but legal: credentials with sub-delimiters, a percent-encoded path, IPv6, wildcards.
ODD_ENV = {
    "JUJU_CHARM_HTTP_PROXY": "http://us$er:p'a(s)s;w&d%21@proxy.example:3128",
    "JUJU_CHARM_HTTPS_PROXY": "http://[2001:db8::1]:3129/",
    "JUJU_CHARM_NO_PROXY": "127.0.0.1,.internal,*.example.com,[::1],10.0.0.0/8",
}
ODD_GITHUB_URL = "https://ghes.example.com:8443/a%20b/~c"
ODD_MIRROR = "https://mirror.example.com:5000/v2%25/"
ODD_SSH = SSHDebugConnection("tmate.example.com", 10022, "SHA256:ab+cd/ef=", "SHA256:gh+ij/kl=")


def _runner_config(proxies: ProxySetting, mirror: str | None, ssh: bool) -> RunnerConfig:
    state = make_state()
    return RunnerConfig(
        app_name="gh",
        name="gh-0-0123abcd",
        path=state.path,
        labels=(),
        github_url=state.github_url,
        dockerhub_mirror=mirror,
        proxies=proxies,
        ssh_debug_connections=(ODD_SSH,) if ssh else (),
    )


def _runner_files(config: RunnerConfig, policy_url: str | None) -> dict[str, str]:
    files = render_runner_files(
        template_environment(),
        config,
        runner_dir=RUNNER_DIR,
        runner_user="ubuntu",
        repo_policy_url=policy_url,
    )
    return {PurePosixPath(f.path).name: f.content.decode() for f in files}


def _keys(text: str) -> list[str]:
    """The keys of an env file or the directives of a unit, in order."""
    return [line.split("=", 1)[0] for line in text.splitlines() if "=" in line]


def test_env_file_keeps_its_keys_for_odd_legal_values() -> None:
    plain = _runner_files(
        _runner_config(
            ProxySetting("http://proxy:3128", "http://proxy:3129", "127.0.0.1"),
            "https://mirror.example.com",
            ssh=True,
        ),
        None,
    )
    proxies = proxy_from_env(ODD_ENV)
    odd = _runner_files(_runner_config(proxies, parse_mirror(ODD_MIRROR), ssh=True), None)
    assert _keys(odd[".env"]) == _keys(plain[".env"])
    assert len(odd[".env"].splitlines()) == len(plain[".env"].splitlines())
    env = dict(line.split("=", 1) for line in odd[".env"].splitlines())
    assert env["HTTP_PROXY"] == proxies.http
    assert env["NO_PROXY"] == ODD_ENV["JUJU_CHARM_NO_PROXY"]
    assert env["ACTIONS_RUNNER_HOOK_JOB_STARTED"] == str(RUNNER_DIR / "pre-job.sh")


@pytest.mark.parametrize(
    "config",
    [
        _runner_config(
            ProxySetting(), "https://m.example\nACTIONS_RUNNER_HOOK_JOB_STARTED=/x", False
        ),
        _runner_config(ProxySetting(http="http://p:1\rX=1"), None, False),
        _runner_config(ProxySetting(no_proxy="a\x00b"), None, False),
    ],
    ids=["mirror-newline", "proxy-cr", "no-proxy-nul"],
)
def test_env_file_refuses_a_value_that_would_break_a_line(config: RunnerConfig) -> None:
    # Defence in depth: the parsers refuse these; the env file never holds them either.
    with pytest.raises(errors.TemplateValueError) as info:
        _runner_files(config, None)
    assert info.value.format == "env"


def _bash_value(script: str, variable: str) -> str:
    """Run a script's assignment of ``variable`` in bash and return what bash holds."""
    line = next(x for x in script.splitlines() if x.startswith(f"{variable}="))
    result = subprocess.run(
        ["bash", "-c", f'{line}\nprintf %s "${variable}"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return result.stdout


def test_shell_scripts_hold_values_as_bash_reads_them() -> None:
    hostile_dir = PurePosixPath("/home/u/$(touch /tmp/x) `id` \"q\" 'a'")
    files = render_runner_files(
        template_environment(),
        _runner_config(ProxySetting(), None, False),
        runner_dir=hostile_dir,
        runner_user="ubuntu",
        repo_policy_url="http://127.0.0.1:8567",
    )
    scripts = {PurePosixPath(f.path).name: f.content.decode() for f in files}
    for name in ("pre-job.sh", "start.sh"):
        assert _bash_value(scripts[name], "runner_dir") == str(hostile_dir), name
        subprocess.run(["bash", "-n"], input=scripts[name], text=True, check=True, timeout=10)
    url_line = next(x for x in scripts["pre-job.sh"].splitlines() if "/check" in x)
    assert url_line.strip() == 'http://127.0.0.1:8567/check)" || code=000'


def _policy_unit(tmp_path: Path, github_api_url: str) -> str:
    service = RepoPolicyService(
        "gh/0", config_dir=tmp_path / "etc", unit_dir=tmp_path / "units", charm_dir=tmp_path
    )
    return service.render_unit(github_api_url, "127.0.0.1", 8567)


def _systemd_words(line: str) -> list[str]:
    """Split an ExecStart= line as systemd does (quotes, C escapes, %% and $$)."""
    value = line.split("=", 1)[1]
    words = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', value)
    out = []
    for quoted, bare in words:
        word = quoted if quoted or not bare else bare
        word = re.sub(r"\\(.)", r"\1", word).replace("%%", "%").replace("$$", "$")
        out.append(word)
    return out


def test_policy_unit_keeps_its_directives_and_the_url_as_given(tmp_path: Path) -> None:
    plain = _policy_unit(tmp_path, "https://api.github.com")
    url = parse_github_url(ODD_GITHUB_URL) + "/api/v3"
    odd = _policy_unit(tmp_path, url)
    assert _keys(odd) == _keys(plain)
    exec_line = next(x for x in odd.splitlines() if x.startswith("ExecStart="))
    words = _systemd_words(exec_line)
    assert words[words.index("--github-api-url") + 1] == url


def test_timer_units_keep_their_directives(tmp_path: Path) -> None:
    timer = EventTimer("gh/0", unit_dir=tmp_path, lock_dir=tmp_path / "lock")
    units = timer.render("reconcile-runners", 10, 30)
    for name, text in units.items():
        assert len(text.splitlines()) == len(
            (TEMPLATES_DIR / ("dispatch-event" + Path(name).suffix + ".j2"))
            .read_text()
            .splitlines()
        ), name


def test_systemd_filters_escape_specifiers_and_refuse_newlines() -> None:
    jinja = template_environment()
    template = jinja.from_string(
        "Description={{ v | systemd_value }}\nExecStart=/x {{ v | systemd_arg }}"
    )
    text = template.render(v='a%b $HOME "q"')
    assert text.splitlines()[0] == 'Description=a%%b $HOME "q"'
    assert _systemd_words(text.splitlines()[1])[1:] == ['a%b $HOME "q"']
    for bad in ("a\nExecStartPre=/bin/sh", "a\rb", "a\x00", "a\\"):
        with pytest.raises(errors.TemplateValueError):
            template.render(v=bad)


def test_json_and_shell_filters() -> None:
    jinja = template_environment()
    assert jinja.from_string("{{ v | json }}").render(v='a"\n') == '"a\\"\\n"'
    assert jinja.from_string("{{ v | shell }}").render(v="a'b") == "'a'\"'\"'b'"
    with pytest.raises(errors.TemplateValueError):
        jinja.from_string("{{ v | shell }}").render(v="a\nb")


def test_logrotate_has_no_variable() -> None:
    # The logrotate file is copied as is: no value of an option or relation reaches it.
    text = (TEMPLATES_DIR / "logrotate-github-runner-metrics").read_text()
    assert "{{" not in text and "{%" not in text


ESCAPING_FILTERS = ("env_value", "systemd_value", "systemd_arg", "shell", "json", "int")


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES_DIR.iterdir()))
def test_every_value_in_every_template_is_escaped(template: str) -> None:
    # Any template, including one added later: each {{ ... }} ends with its format's filter.
    text = (TEMPLATES_DIR / template).read_text()
    for expression in re.findall(r"{{(.*?)}}", text):
        last = expression.rsplit("|", 1)[-1].strip() if "|" in expression else ""
        assert last.split("(")[0] in ESCAPING_FILTERS, f"{template}: {{{{{expression}}}}}"


def test_undefined_filter_input_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        template_environment().from_string("{{ missing | env_value }}").render()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_policy_unit_with_odd_url_verifies_clean(tmp_path: Path) -> None:
    # A '%' in the URL is a specifier unless escaped: systemd would refuse the unit.
    url = parse_github_url(ODD_GITHUB_URL) + "/api/v3"
    path = tmp_path / "github-runner-repo-policy-gh-0.service"
    path.write_text(_policy_unit(tmp_path, url))
    assert verify(path) == (0, [])
