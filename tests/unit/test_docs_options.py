"""Every option of charmcraft.yaml is documented in docs/charm-usage.md, and nothing else is."""

from __future__ import annotations

import re

from tests.unit.fakes_charm import ROOT, charm_config

USAGE = ROOT / "docs" / "charm-usage.md"


def documented_options() -> set[str]:
    """The options named in the first column of docs/charm-usage.md's option table."""
    names: set[str] = set()
    for line in USAGE.read_text().splitlines():
        cell = re.match(r"^\| (`[a-z][a-z0-9-]*`(?: / `[a-z][a-z0-9-]*`)*) \|", line)
        if cell:
            names.update(re.findall(r"`([a-z][a-z0-9-]*)`", cell[1]))
    return names


def test_every_option_is_in_the_usage_table() -> None:
    options = set(charm_config()["options"])
    missing = sorted(options - documented_options())
    assert not missing, f"options of charmcraft.yaml missing from {USAGE.name}'s table: {missing}"


def test_the_usage_table_names_no_option_the_charm_lacks() -> None:
    options = set(charm_config()["options"])
    assert documented_options() - options == set()


def test_the_table_is_read_from_the_document() -> None:
    # The parser finds the rows it must (a table it could not read would pass the test above).
    assert {"token", "vm-cpu", "vm-memory", "vm-disk", "repo-policy-default"} <= (
        documented_options()
    )
