"""Runner types: sizes, and no secret in a repr."""

from __future__ import annotations

import pytest

from runner_type import ProxySetting, VirtualMachineResources, size_in_bytes
from tests.unit.fakes_core import make_state


def test_proxy_credentials_never_show_in_repr() -> None:
    proxy = ProxySetting(http="http://bob:s3cret@proxy:3128", https="proxy:3128", no_proxy="a")
    text = repr(make_state(proxy=proxy))
    assert "s3cret" not in text and "bob" not in text
    assert "http://***@proxy:3128" in repr(proxy) and "'proxy:3128'" in repr(proxy)
    assert "***@host:1" in repr(ProxySetting(http="u:p@host:1"))


@pytest.mark.parametrize(
    ("size", "expected"), [("1KiB", 1024), ("7GiB", 7 << 30), (" 2MiB", 2 << 20)]
)
def test_sizes(size: str, expected: int) -> None:
    assert size_in_bytes(size) == expected


@pytest.mark.parametrize("size", ["7GB", "GiB", "-1GiB", "1.5GiB", ""])
def test_bad_sizes(size: str) -> None:
    with pytest.raises(ValueError, match="is not a size like 7GiB"):
        size_in_bytes(size)


def test_profile_name() -> None:
    assert (
        VirtualMachineResources(2, "7GiB", "10GiB").profile_name() == "cpu-2-mem-7GiB-disk-10GiB"
    )
