"""Routing by labels: a subset, case-insensitive, self-hosted/linux/arch implied."""

from __future__ import annotations

import pytest

from intake.routing import Flavor, route
from runner_type import Arch

SMALL = Flavor("small", frozenset({"small"}))
SMALL_GPU = Flavor("small-gpu", frozenset({"small", "gpu", "x64"}))
ARM = Flavor("arm", frozenset({"ARM64", "large"}))
EVERYTHING = [SMALL, SMALL_GPU, ARM]


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["self-hosted", "small"], SMALL),
        (["SMALL"], SMALL),
        (["self-hosted", "linux", "X64", "small"], SMALL),
        (["amd64", "small"], SMALL),
        (["small", "gpu"], SMALL_GPU),
        (["self-hosted", "arm64", "large"], ARM),
        (["aarch64"], ARM),
        (["large", "x64"], None),  # the arm flavor is not x64
        (["small", "arm64"], None),
        (["ubuntu-latest"], None),
        ([], None),
        (["  "], None),
        (["self-hosted", "small", "windows"], None),
    ],
)
def test_route(labels: list[str], expected: Flavor | None) -> None:
    assert route(labels, EVERYTHING) == expected


def test_the_most_specific_flavor_wins_then_configuration_order() -> None:
    big = Flavor("big", frozenset({"small", "large", "huge"}))
    twin = Flavor("twin", frozenset({"Small"}))
    assert route(["small"], [big, SMALL, twin]) == SMALL
    assert route(["small"], [big, twin, SMALL]) == twin


def test_an_explicit_arch_overrides_the_labels() -> None:
    flavor = Flavor("arm", frozenset({"small"}), arch=Arch.ARM64)
    assert route(["arm64", "small"], [flavor]) == flavor
    assert route(["x64", "small"], [flavor]) is None
    assert "linux" in flavor.offered()


def test_no_flavor_at_all() -> None:
    assert route(["self-hosted"], []) is None
