"""The runner storage holds the most runners the unit may run: the reactive ceiling included."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

import errors
from config.state import ReactiveConfig
from juju.runner_storage import most_runners, prepare_storage
from runner_type import VirtualMachineResources
from tests.unit.fakes_charm import GIB, FakeSystem
from tests.unit.fakes_core import make_state

REACTIVE = ReactiveConfig(mq_uri=SecretStr("amqp://u:p@127.0.0.1//"), queue_name="gh")
DISK = VirtualMachineResources(cpu=1, memory="1GiB", disk="4GiB")


@pytest.mark.parametrize(
    ("reactive", "max_total", "expected"),
    [(False, 0, 2), (False, 6, 2), (True, 0, 2), (True, 6, 6)],
)
def test_most_runners(reactive: bool, max_total: int, expected: int) -> None:
    state = make_state(
        virtual_machines=2,
        max_total_virtual_machines=max_total,
        reactive_config=REACTIVE if reactive else None,
    )
    assert most_runners(state) == expected


def test_a_reactive_ceiling_the_storage_cannot_hold_is_blocked(tmp_path: Path) -> None:
    system = FakeSystem(disk=20 * GIB)  # 18 GiB for runner disks: 4 of 4 GiB, not 6
    state = make_state(
        virtual_machines=2,
        max_total_virtual_machines=6,
        reactive_config=REACTIVE,
        vm_resources=DISK,
    )
    with pytest.raises(errors.ConfigError) as caught:
        prepare_storage(state, tmp_path, system, "github-runner/0")
    assert caught.value.option == "runner-storage"
    assert "vm-disk x max-total-virtual-machines = 24576MiB" in str(caught.value)
    assert "lower vm-disk or max-total-virtual-machines" in str(caught.value)
    fitting = make_state(
        virtual_machines=2,
        max_total_virtual_machines=4,
        reactive_config=REACTIVE,
        vm_resources=DISK,
    )
    assert prepare_storage(fitting, tmp_path, system, "github-runner/0") == tmp_path
