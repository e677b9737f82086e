"""LxdClient and LxdInstance over an in-memory stand-in for LXD's REST API (no daemon).

The stand-in replaces pylxd's API nodes (what :meth:`lxd.LxdTransport._connect` returns), answers
like LXD (sync/async responses, operations, 404s as pylxd exceptions) and records every call.
"""

from __future__ import annotations

import pylxd.exceptions
import pytest

import errors
import lxd
from lxd.types import InstanceStatus
from tests.unit.lxd_rest_standin import (  # noqa: F401
    IDMAP,
    FakeLxd,
    FakeNode,
    FakeResponse,
    client_fixture,
    fail,
    server_fixture,
    sync,
)

# --- instances ------------------------------------------------------------------------------


def test_create_start_list_get_delete(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create(
        "app-0-aa", "github-runner-test", config={"user.app": "app"}, devices={"p": {"a": "b"}}
    )
    assert inst.status == InstanceStatus.RUNNING
    assert inst.config["user.app"] == "app"
    assert inst.devices == {"p": {"a": "b"}}
    assert inst.instance_type == "container"
    assert server.instances["app-0-aa"]["ephemeral"] is True
    assert client.exists("app-0-aa")
    assert [i.name for i in client.list(prefix="app-0-")] == ["app-0-aa"]
    assert client.list(user_config={"app": "other"}) == []
    assert client.get("app-0-aa").created_at is not None
    inst.delete()
    assert not client.exists("app-0-aa")
    inst.delete()  # missing: no-op
    with pytest.raises(errors.LXDNotFoundError):
        client.get("app-0-aa")
    with pytest.raises(errors.LXDNotFoundError):
        inst.refresh()


def test_create_without_start_and_without_wait(client: lxd.LxdClient, server: FakeLxd):
    stopped = client.create("c1", "github-runner-test", start=False, ephemeral=False)
    assert stopped.status == InstanceStatus.STOPPED
    requested = client.create("c2", "github-runner-test", wait=False)
    assert requested.status == InstanceStatus.RUNNING  # the fake starts at once
    stopped.start()
    assert stopped.status == InstanceStatus.RUNNING


def test_copy_from_template(client: lxd.LxdClient, server: FakeLxd):
    client.create(
        "tmpl", "github-runner-test", start=False, ephemeral=False, config={"user.t": "1"}
    )
    inst = client.copy("tmpl", "c1", config={"user.app": "app"}, devices={"d": {"type": "x"}})
    assert inst.status == InstanceStatus.RUNNING
    assert inst.config["user.app"] == "app"
    assert inst.config["user.t"] == "1"
    assert server.instances["c1"]["profiles"] == ["default"]
    assert server.instances["c1"]["ephemeral"] is True
    other = client.copy("tmpl", "c2", profiles=["default", "cpu-1-mem-1GiB"], start=False)
    assert other.status == InstanceStatus.STOPPED
    assert server.instances["c2"]["profiles"] == ["default", "cpu-1-mem-1GiB"]
    with pytest.raises(errors.LXDNotFoundError):
        client.copy("missing", "c3")
    assert "c3" not in server.instances
    with pytest.raises(errors.LXDAlreadyExistsError):
        client.copy("tmpl", "c1")


def test_create_missing_image_leaves_nothing(client: lxd.LxdClient, server: FakeLxd):
    with pytest.raises(errors.LXDImageNotFoundError):
        client.create("c1", "nope")
    assert server.instances == {}


@pytest.mark.parametrize("failure", ["fail_start", "fail_create_op"])
def test_failed_create_or_start_is_cleaned_up(
    client: lxd.LxdClient, server: FakeLxd, failure: str
):
    setattr(server, failure, True)
    with pytest.raises(errors.LXDError):
        client.create("c1", "github-runner-test")
    assert server.instances == {}


def test_create_existing_name_keeps_the_original(client: lxd.LxdClient, server: FakeLxd):
    client.create("c1", "github-runner-test", start=False)
    with pytest.raises(errors.LXDAlreadyExistsError):
        client.create("c1", "github-runner-test")
    assert "c1" in server.instances


def test_create_rejects_bad_names_before_calling_lxd(client: lxd.LxdClient, server: FakeLxd):
    with pytest.raises(ValueError):
        client.create("bad_name", "github-runner-test")
    assert server.calls == []


def test_stop_ephemeral_and_stopped(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.stop(timeout=5)
    assert "c1" not in server.instances
    inst.stop()  # gone: no-op
    kept = client.create("c2", "github-runner-test", ephemeral=False)
    kept.stop(force=True)
    assert kept.status == InstanceStatus.STOPPED
    kept.stop()  # already stopped: no-op
    kept.delete(wait=False)
    assert "c2" not in server.instances


def test_delete_failure_that_is_not_a_disappearance_raises(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test", start=False)
    server.raise_on["instances/c1"] = pylxd.exceptions.LXDAPIException(
        FakeResponse(500, {"error": "storage busy"})
    )
    with pytest.raises(errors.LXDError, match="storage busy"):
        inst.delete()


# --- devices and config ---------------------------------------------------------------------


PROXY = {
    "type": "proxy",
    "bind": "instance",
    "listen": "tcp:127.0.0.1:8080",
    "connect": "tcp:127.0.0.1:8080",
}


def test_devices_and_config(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test")
    inst.add_device("p", PROXY)
    assert server.instances["c1"]["devices"]["p"]["connect"] == "tcp:127.0.0.1:8080"
    puts = len([c for c in server.calls if c == ("put", "instances/c1")])
    inst.add_device("p", dict(PROXY))  # same: no write
    assert len([c for c in server.calls if c == ("put", "instances/c1")]) == puts
    with pytest.raises(errors.LXDError, match="missing connect"):
        inst.add_device("bad", {"type": "proxy"})
    assert "bad" not in server.instances["c1"]["devices"]
    inst.remove_device("p")
    inst.remove_device("p")
    assert server.instances["c1"]["devices"] == {}
    inst.set_config({"user.flavor": "small", "user.app": None})
    assert server.instances["c1"]["config"]["user.flavor"] == "small"
    assert inst.config["user.flavor"] == "small"
    assert inst.host_ids_of_root() == (100000, 100000)
    server.instances["c1"]["config"]["volatile.idmap.current"] = "garbage"
    with pytest.raises(errors.LXDError, match="idmap"):
        inst.host_ids_of_root()


# --- exec and waiting -----------------------------------------------------------------------


def test_execute_and_output_cleanup(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: (0, b"out", b"err")
    inst = client.create("c1", "github-runner-test")
    assert inst.execute(["echo"]) == lxd.ExecResult(0, "out", "err")
    assert server.logs == {}  # exec logs are deleted after reading
    server.exec_handler = lambda cmd: "not-found"
    assert inst.execute(["nope"]).exit_code == 127
    with pytest.raises(errors.LXDExecError):
        inst.execute(["nope"], check=True)


def test_execute_timeout_hides_secrets(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: "running"
    inst = client.create("c1", "github-runner-test")
    with pytest.raises(errors.LXDTimeoutError) as info:
        inst.execute(["run.sh", "--jitconfig", "JIT"], timeout=0.2, secret_args=["JIT"])
    assert "JIT" not in str(info.value)
    assert any(op["status"] == "Cancelled" for op in server.ops.values())


def test_execute_on_stopped_instance_fails(client: lxd.LxdClient, server: FakeLxd):
    inst = client.create("c1", "github-runner-test", start=False)
    with pytest.raises(errors.LXDError, match="not running"):
        inst.execute(["true"])


def test_wait_ready_polls_until_booted(client: lxd.LxdClient, server: FakeLxd):
    states = iter([b"starting\n", b"starting\n", b"degraded\n"])
    server.exec_handler = lambda cmd: (1, next(states), b"")
    inst = client.create("c1", "github-runner-test")
    inst.wait_ready(timeout=5)
    server.exec_handler = lambda cmd: "not-found"  # no systemctl
    inst.wait_ready(timeout=5)
    server.exec_handler = lambda cmd: (0, b"", b"")
    inst.wait_ready(timeout=5, booted=False)


def test_wait_ready_times_out_with_last_state(client: lxd.LxdClient, server: FakeLxd):
    server.exec_handler = lambda cmd: (1, b"starting\n", b"")
    inst = client.create("c1", "github-runner-test")
    with pytest.raises(errors.LXDTimeoutError, match="last state: starting"):
        inst.wait_ready(timeout=0.3)
    inst.delete()
    with pytest.raises(errors.LXDNotFoundError):
        inst.wait_ready(timeout=5, booted=False)
