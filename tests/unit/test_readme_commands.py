"""Every command in README.md is a Makefile target CI runs, or sits in a block marked for Juju."""

from __future__ import annotations

import re

from tests.unit.fakes_charm import ROOT

NEEDS_JUJU = "# needs Juju"


def blocks() -> list[list[str]]:
    """The lines of each fenced shell block of the README."""
    text = (ROOT / "README.md").read_text()
    return [
        b.strip("\n").splitlines() for b in re.findall(r"```(?:bash|shell)\n(.*?)```", text, re.S)
    ]


def commands(block: list[str]) -> list[str]:
    """The commands of a block (comments, blank lines and continuation lines left out)."""
    found, continued = [], False
    for line in block:
        if not continued and line.strip() and not line.lstrip().startswith("#"):
            found.append(line.split("#", 1)[0].strip())
        continued = line.split("#", 1)[0].rstrip().endswith("\\")
    return found


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    first = commands(blocks()[0])
    assert first == ["sudo make demo", "sudo make test"]


def test_every_command_is_a_make_target_or_needs_juju() -> None:
    targets = make_targets()
    assert {"demo", "test", "pack", "pack-check", "lock"} <= targets
    for block in blocks():
        juju = block[0].strip() == NEEDS_JUJU
        for command in commands(block):
            if juju:
                assert command.startswith("juju "), command
            else:
                make = re.fullmatch(r"(?:sudo )?make ([a-z-]+)", command)
                assert make and make[1] in targets, command


def test_the_packed_file_the_readme_deploys_is_the_one_make_pack_writes() -> None:
    text = (ROOT / "README.md").read_text()
    deployed = set(re.findall(r"juju deploy \./(\S+\.charm)", text))
    assert deployed == {"github-runner_ubuntu@24.04-amd64.charm"}
    assert (
        "github-runner_ubuntu@24.04-amd64.charm"
        in (ROOT / "tests/pack/test_packed_charm.py").read_text()
    )
