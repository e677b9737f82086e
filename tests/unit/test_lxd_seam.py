"""Unit tests of the LXD seam's pure logic: no daemon needed."""

from __future__ import annotations

import json
import logging
import socket
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import errors
import lxd
from lxd.instance import LxdInstance
from lxd.network import (
    NetworkInfo,
    RunnerProfile,
    bridge_config,
    unit_resource_name,
    validate_network_name,
)
from lxd.transport import LxdTransport
from lxd.types import (
    ExecResult,
    InstanceStatus,
    ResourceProfile,
    disk_device,
    display_command,
    hide_secrets,
    host_ids,
    matches_filter,
    parse_lxd_time,
    parse_size,
    validate_instance_name,
)
from lxd.waiting import wait_until

# --- secrets --------------------------------------------------------------------------------


def test_hide_secrets_replaces_whole_and_embedded_values():
    text = "run.sh --jitconfig abc123 --url=http://x?token=abc123"
    assert hide_secrets(text, ["abc123"]) == "run.sh --jitconfig *** --url=http://x?token=***"


def test_hide_secrets_ignores_empty_and_prefers_longest():
    assert hide_secrets("tok tokenvalue", ["", "tok", "tokenvalue"]) == "*** ***"
    assert hide_secrets("nothing here", []) == "nothing here"


def test_display_command_quotes_and_hides():
    shown = display_command(["config.sh", "--token", "s3cr et", "--name", "r1"], ["s3cr et"])
    assert "s3cr" not in shown
    assert shown == "config.sh --token *** --name r1"
    assert display_command(["sh", "-c", "echo a b"]) == "sh -c 'echo a b'"
    assert display_command(["a'b"], ["a'b"]) == "***"


class _FakeResponse:
    """Just enough of requests.Response for the exec path."""

    def __init__(self, body: dict[str, Any] | None = None, content: bytes = b"") -> None:
        self._body = body or {}
        self.content = content
        self.headers: dict[str, str] = {}

    def json(self) -> dict[str, Any]:
        return self._body


class _RecordingTransport(LxdTransport):
    """A transport whose HTTP layer is replaced by canned answers."""

    def __init__(self, exit_code: int = 0, fail: errors.LXDError | None = None) -> None:
        super().__init__(endpoint="/nonexistent.socket", timeout=5)
        self.exit_code = exit_code
        self.fail = fail
        self.bodies: list[dict[str, Any]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if path.endswith("/exec"):
            self.bodies.append(kwargs["json"])
            if self.fail is not None:
                raise self.fail
            meta = {
                "status": "Success",
                "metadata": {
                    "return": self.exit_code,
                    "output": {"1": "/1.0/x/logs/out.stdout", "2": "/1.0/x/logs/out.stderr"},
                },
            }
            return _FakeResponse({"type": "sync", "metadata": meta})
        if path.endswith(".stdout"):
            return _FakeResponse(content=b"hello\n")
        if path.endswith(".stderr"):
            return _FakeResponse(content=b"oops \xff\n")
        return _FakeResponse({"type": "sync", "metadata": {}})


def test_execute_builds_record_output_request_and_decodes():
    transport = _RecordingTransport()
    inst = LxdInstance(transport, {"name": "r1"})
    result = inst.execute(["id"], cwd="/tmp", env={"HOME": "/home/ubuntu"}, user=1000)
    assert result == ExecResult(0, "hello\n", "oops \ufffd\n")
    assert result.ok
    body = transport.bodies[0]
    assert body["record-output"] is True
    assert body["wait-for-websocket"] is False
    assert body["interactive"] is False
    assert body["user"] == 1000
    assert body["group"] == 1000
    assert body["cwd"] == "/tmp"
    assert body["environment"] == {"HOME": "/home/ubuntu"}


def test_execute_check_hides_secrets_in_error_and_logs(caplog: pytest.LogCaptureFixture):
    transport = _RecordingTransport(exit_code=3)
    inst = LxdInstance(transport, {"name": "r1"})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.LXDExecError) as info:
        inst.execute(["run.sh", "--jitconfig", "SECRETJIT"], secret_args=["SECRETJIT"], check=True)
    assert info.value.exit_code == 3
    assert "SECRETJIT" not in str(info.value)
    assert "***" in str(info.value)
    assert "SECRETJIT" not in caplog.text
    assert "run.sh --jitconfig ***" in caplog.text


def test_execute_hides_secrets_when_lxd_fails():
    failure = errors.LXDTimeoutError("exec: too slow", "exec", "r1")
    transport = _RecordingTransport(fail=failure)
    inst = LxdInstance(transport, {"name": "r1"})
    with pytest.raises(errors.LXDTimeoutError) as info:
        inst.execute(["config.sh", "--token=TOKEN42"], secret_args=["TOKEN42"])
    assert "TOKEN42" not in str(info.value)
    assert "--token=***" in str(info.value)


# --- filtering and naming -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "config", "prefix", "user_config", "expected"),
    [
        ("app-0-abc", {}, None, None, True),
        ("app-0-abc", {}, "app-0-", None, True),
        ("app-1-abc", {}, "app-0-", None, False),
        ("app-0-abc", {"user.app": "app"}, "app-0-", {"user.app": "app"}, True),
        ("app-0-abc", {"user.app": "app"}, None, {"app": "app"}, True),
        ("app-0-abc", {"user.app": "other"}, None, {"app": "app"}, False),
        ("app-0-abc", {"user.app": "app"}, None, {"app": "app", "unit": "0"}, False),
        ("app-0-abc", {"app": "app"}, None, {"app": "app"}, False),
    ],
)
def test_matches_filter(name, config, prefix, user_config, expected):
    assert matches_filter(name, config, prefix, user_config) is expected


@pytest.mark.parametrize("name", ["a", "runner-0-abc123", "A1-b2"])
def test_valid_instance_names(name: str):
    validate_instance_name(name)


@pytest.mark.parametrize("name", ["", "1abc", "-abc", "abc-", "a_b", "a.b", "a" * 64])
def test_invalid_instance_names(name: str):
    with pytest.raises(ValueError, match="invalid LXD instance name"):
        validate_instance_name(name)


def test_resource_profile_naming_and_content():
    profile = ResourceProfile.build(cpu=2, memory=7, disk="10GiB")
    assert profile.name == "cpu-2-mem-7GiB-disk-10GiB"
    assert profile.config == {"limits.cpu": "2", "limits.memory": "7GiB"}
    assert profile.devices == {
        "root": {"type": "disk", "path": "/", "pool": "default", "size": "10GiB"}
    }
    small = ResourceProfile.build(cpu=1, memory="512MiB")
    assert small.name == "cpu-1-mem-512MiB"
    assert small.devices == {}


@pytest.mark.parametrize("size", [0, -1, "10", "10GB", "1.5GiB", "0GiB", True])
def test_parse_size_rejects(size: Any):
    with pytest.raises(ValueError):
        parse_size(size)


@pytest.mark.parametrize("cpu", [0, -2, True, "2"])
def test_resource_profile_rejects_bad_cpu(cpu: Any):
    with pytest.raises(ValueError, match="cpu"):
        ResourceProfile.build(cpu=cpu, memory=1)


def test_devices():
    assert disk_device("/srv/m", "/metrics-exchange") == {
        "type": "disk",
        "source": "/srv/m",
        "path": "/metrics-exchange",
    }
    assert disk_device("/srv/m", "/m", readonly=True)["readonly"] == "true"


# --- the runner network ---------------------------------------------------------------------


def test_runner_profile_isolates_runners_and_filters_ipv4_only_with_lxds_dhcp():
    plain = RunnerProfile("tnab12", "default")
    nic = plain.devices["eth0"]
    assert nic == {
        "type": "nic",
        "network": "tnab12",
        "name": "eth0",
        "security.port_isolation": "true",
        "security.mac_filtering": "true",
    }
    assert plain.devices["root"] == {"type": "disk", "path": "/", "pool": "default"}
    filtered = RunnerProfile("ghr-1", "ghr-1", ipv4_filtering=True)
    assert filtered.devices["eth0"]["security.ipv4_filtering"] == "true"
    assert filtered.devices["root"]["pool"] == "ghr-1"
    assert len({plain.name, filtered.name, RunnerProfile("tnab12", "other").name}) == 3


def test_network_info_knows_lxds_dhcp_and_the_host_address():
    own = NetworkInfo("ghr-1", "bridge", True, {"ipv4.address": "198.18.30.1/24"})
    assert own.lxd_dhcp and own.host_address == "198.18.30.1"
    test_bridge = NetworkInfo("tn1", "bridge", True, {"ipv4.address": "none"})
    assert not test_bridge.lxd_dhcp and test_bridge.host_address is None
    no_dhcp = NetworkInfo(
        "b", "bridge", True, {"ipv4.address": "198.18.1.1/24", "ipv4.dhcp": "false"}
    )
    assert not no_dhcp.lxd_dhcp and no_dhcp.host_address == "198.18.1.1"
    unmanaged = NetworkInfo("br0", "bridge", False, {})
    assert not unmanaged.lxd_dhcp and unmanaged.host_address is None


def test_unit_resource_name_fits_an_interface_and_differs_per_unit():
    names = {unit_resource_name(app, unit) for app in ("a", "b") for unit in (0, 1)}
    assert len(names) == 4
    for name in names:
        assert name.startswith("ghr-") and len(name) <= 15
        validate_network_name(name)
    assert unit_resource_name("a", 0) == unit_resource_name("a", 0)
    for bad in ("", "-x", "a" * 16, "a b", "a/b"):
        with pytest.raises(ValueError, match="network"):
            validate_network_name(bad)


def test_bridge_config():
    assert bridge_config() == {
        "ipv4.address": "auto",
        "ipv4.nat": "true",
        "ipv6.address": "none",
    }
    assert bridge_config("198.18.9.1/24", nat=False)["ipv4.nat"] == "false"


# --- parsing --------------------------------------------------------------------------------


def test_instance_status_from_lxd():
    assert InstanceStatus.from_lxd("Running") is InstanceStatus.RUNNING
    assert InstanceStatus.from_lxd("stopped") is InstanceStatus.STOPPED
    assert InstanceStatus.from_lxd("Weird") is InstanceStatus.UNKNOWN


def test_parse_lxd_time():
    parsed = parse_lxd_time("2026-11-23T07:45:12.123456789Z")
    assert parsed == datetime(2026, 11, 23, 7, 45, 12, 123456, tzinfo=timezone.utc)
    assert parse_lxd_time("2026-11-23T09:45:12+02:00") == datetime(
        2026, 11, 23, 7, 45, 12, tzinfo=timezone.utc
    )
    assert parse_lxd_time("0001-01-01T00:00:00Z") is None
    assert parse_lxd_time("1970-01-01T00:00:00Z") is None
    assert parse_lxd_time("") is None
    assert parse_lxd_time(None) is None
    assert parse_lxd_time("yesterday") is None


def test_instance_snapshot_properties():
    inst = LxdInstance(
        LxdTransport(endpoint="/nonexistent.socket"),
        {
            "name": "r1",
            "type": "container",
            "created_at": "2026-11-23T07:45:12Z",
            "config": {"user.app": "app", "limits.cpu": 2},
            "devices": {"m": disk_device("/srv/m", "/m")},
        },
    )
    assert inst.name == "r1"
    assert inst.config == {"user.app": "app", "limits.cpu": "2"}
    assert inst.devices["m"]["source"] == "/srv/m"
    assert inst.created_at == datetime(2026, 11, 23, 7, 45, 12, tzinfo=timezone.utc)
    assert inst.instance_type == "container"
    assert "r1" in repr(inst)


# --- the daemon being down ------------------------------------------------------------------


def test_missing_socket_raises_unavailable():
    client = lxd.LxdClient(endpoint="/nonexistent/lxd/unix.socket", timeout=2)
    assert client.is_available() is False
    with pytest.raises(errors.LXDUnavailableError, match="LXD daemon is not running"):
        client.list()


def test_dead_socket_raises_unavailable():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unix.socket"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()  # a socket file nobody listens on: connection refused
        client = lxd.LxdClient(endpoint=str(path), timeout=2)
        with pytest.raises(errors.LXDUnavailableError, match="LXD daemon is not running"):
            client.get("r1")


def test_wait_until_times_out_with_last_error():
    calls = []

    def predicate() -> bool:
        calls.append(1)
        raise errors.LXDError("not yet", "exec", "r1")

    with pytest.raises(errors.LXDTimeoutError, match="not yet"):
        wait_until(predicate, timeout=0.2, what="boot", instance="r1", initial_delay=0.01)
    assert len(calls) >= 2


def test_wait_until_returns_when_predicate_holds():
    answers = iter([False, False, True])
    wait_until(lambda: next(answers), timeout=5, what="boot", instance="r1", initial_delay=0.001)


def test_host_ids():
    current = (
        '[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536},'
        '{"Isuid":false,"Isgid":true,"Hostid":200000,"Nsid":0,"Maprange":65536}]'
    )
    assert host_ids(current) == (100000, 200000)
    both = '[{"Isuid":true,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":1000000000}]'
    assert host_ids(both) == (1000000, 1000000)
    shifted = '[{"Isuid":true,"Isgid":true,"Hostid":100010,"Nsid":10,"Maprange":100}]'
    with pytest.raises(ValueError, match="does not map"):
        host_ids(shifted)
    assert host_ids("[]") == (0, 0)
    with pytest.raises(ValueError):
        host_ids("")
    with pytest.raises(ValueError):
        host_ids('{"a": 1}')


def test_host_ids_of_another_id_and_hostile_maps():
    split = json.dumps(
        [
            {"Isuid": True, "Isgid": False, "Hostid": 1000000, "Nsid": 0, "Maprange": 65536},
            {"Isuid": False, "Isgid": True, "Hostid": 2000000, "Nsid": 0, "Maprange": 65536},
        ]
    )
    assert host_ids(split, 1000) == (1001000, 2001000)
    offset = '[{"Isuid":true,"Isgid":true,"Hostid":100000,"Nsid":-5,"Maprange":65536}]'
    assert host_ids(offset) == (100005, 100005)
    assert host_ids("[]", 1000) == (1000, 1000)
    for hostile in (
        '[{"Isuid":true,"Isgid":true,"Hostid":"1","Nsid":0,"Maprange":5}]',
        '[{"Isuid":true,"Isgid":true,"Hostid":true,"Nsid":0,"Maprange":5}]',
        '["x",{"Isuid":true,"Isgid":false,"Hostid":9,"Nsid":0,"Maprange":5}]',
        '[{"Isuid":true,"Isgid":true,"Hostid":1,"Nsid":0,"Maprange":1000}]',
    ):
        with pytest.raises(ValueError):
            host_ids(hostile, 1000)


def test_wait_until_fatal_errors_end_the_wait_at_once():
    def gone() -> bool:
        raise errors.LXDNotFoundError("instance gone", "exec", "r1")

    with pytest.raises(errors.LXDNotFoundError):
        wait_until(gone, timeout=30, what="boot", instance="r1", fatal=(errors.LXDNotFoundError,))
