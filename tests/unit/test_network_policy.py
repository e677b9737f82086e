"""The denylist as the unit's nftables table (juju.network_policy): rendering and the seam."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path

import pytest

import errors
from juju.network_policy import (
    NetworkPolicyHost,
    build_policy,
    exempt_hosts,
    render_removal,
    render_ruleset,
    resolve_ipv4,
    table_name,
)
from juju.options import parse_denylist
from tests.unit.fakes_network import FakeNft

UNIT = "github-runner/0"
TABLE = "github_runner_github_runner_0"


def _sysfs(tmp_path: Path, bridge: str = "br-run", flag: str | None = "0") -> Path:
    """A /sys/class/net with one bridge whose nf_call_iptables flag is ``flag``."""
    root = tmp_path / "net"
    (root / bridge / "bridge").mkdir(parents=True)
    if flag is not None:
        (root / bridge / "bridge" / "nf_call_iptables").write_text(f"{flag}\n")
    return root


def _host(
    tmp_path: Path, nft: FakeNft, resolve: Callable[[str], tuple[str, ...]] | None = None
) -> NetworkPolicyHost:
    return NetworkPolicyHost(
        UNIT, nft=nft, sysfs=_sysfs(tmp_path), resolve=resolve or (lambda h: (h,))
    )


def test_table_is_the_units_own() -> None:
    assert table_name(UNIT) == TABLE
    assert table_name("My-App/12") == "github_runner_my_app_12"
    assert table_name("a/1") != table_name("a/10")


def test_policy_collapses_overlapping_networks() -> None:
    # nft refuses overlapping intervals in one set: they are merged first.
    policy = build_policy(UNIT, "br-run", ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7/32"])
    assert policy.denied == (IPv4Network("10.0.0.0/8"), IPv4Network("192.0.2.7/32"))


def test_policy_refuses_a_bridge_name_that_is_no_interface() -> None:
    with pytest.raises(ValueError, match="interface name"):
        build_policy(UNIT, 'br" accept', ["10.0.0.0/8"])


def test_ruleset_replaces_the_table_in_one_transaction() -> None:
    script = render_ruleset(build_policy(UNIT, "br-run", ["10.0.0.0/8"], ["198.18.4.10"]))
    lines = script.splitlines()
    table = f"table inet {TABLE}"
    # Created (if missing), deleted and defined anew in one nft -f: all or nothing.
    assert lines[2:5] == [f"{table} {{}}", f"delete {table}", f"{table} {{"]
    assert "elements = { 10.0.0.0/8 }" in script
    assert "elements = { 198.18.4.10/32 }" in script


def test_ruleset_exempts_before_it_denies_in_both_hooks() -> None:
    script = render_ruleset(build_policy(UNIT, "br-run", ["10.0.0.0/8"], ["10.1.2.3"]))
    for hook in ("forward", "input"):
        chain = script.split(f"chain {hook} {{", 1)[1].split("}", 1)[0]
        rules = [line.strip() for line in chain.strip().splitlines()]
        assert rules[0] == f"type filter hook {hook} priority filter; policy accept;"
        assert rules[1] == 'iifname != "br-run" return'  # only what comes from runners
        order = [
            "ct direction reply ct state established accept",
            "ip daddr @exempt accept",
            "udp sport 68 udp dport 67 accept",
        ]
        assert [rules.index(rule) for rule in order] == sorted(rules.index(r) for r in order)
        denies = [i for i, rule in enumerate(rules) if "@denied" in rule]
        assert denies and min(denies) > rules.index("ip daddr @exempt accept")
        assert rules[-1] == "ip daddr @denied counter reject with icmpx type admin-prohibited"
    # What stays on the bridge is dropped (no route back for a reject).
    assert 'oifname "br-run" ip daddr @denied counter drop' in script


def test_ruleset_without_exempt_addresses_has_an_empty_set() -> None:
    script = render_ruleset(build_policy(UNIT, "br-run", ["10.0.0.0/8"]))
    exempt = script.split("set exempt {", 1)[1].split("}", 1)[0]
    assert "elements" not in exempt


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="nft -c needs root and nftables"
)
def test_nft_accepts_the_ruleset_and_the_removal() -> None:
    denylist = parse_denylist("10.0.0.0/8, 10.1.0.0/16 ,172.16.0.0/12,192.0.2.1")
    policy = build_policy(UNIT, "br-run", denylist, ["10.1.2.3", "192.0.2.1"])
    for script in (render_ruleset(policy), render_removal(TABLE)):
        result = subprocess.run(
            ["nft", "-c", "-f", "-"], input=script, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


def test_apply_sets_the_bridge_flag_and_runs_the_ruleset(tmp_path: Path) -> None:
    nft = FakeNft()
    host = _host(tmp_path, nft)
    policy = host.apply("br-run", ("10.0.0.0/8",), exempt=("198.18.4.10",))
    assert policy is not None
    assert nft.scripts == [render_ruleset(policy)]
    flag = tmp_path / "net" / "br-run" / "bridge" / "nf_call_iptables"
    assert flag.read_text() == "1"  # bridged traffic goes through the inet hooks


def test_apply_resolves_exempt_names(tmp_path: Path) -> None:
    nft = FakeNft()
    names = {"ghes.example": ("192.0.2.5", "192.0.2.6"), "gone.example": ()}
    host = _host(tmp_path, nft, resolve=lambda host: names[host])
    policy = host.apply("br-run", ("192.0.2.0/24",), exempt=("ghes.example", "gone.example"))
    assert policy is not None
    assert policy.exempt == (IPv4Network("192.0.2.5/32"), IPv4Network("192.0.2.6/32"))


def test_empty_denylist_removes_the_table(tmp_path: Path) -> None:
    nft = FakeNft()
    assert _host(tmp_path, nft).apply("br-run", ()) is None
    assert nft.scripts == [render_removal(TABLE)]


def test_nft_refusal_blocks_naming_the_option(tmp_path: Path) -> None:
    nft = FakeNft(refuse="Error: Could not process rule: No such file or directory")
    with pytest.raises(errors.ConfigError) as caught:
        _host(tmp_path, nft).apply("br-run", ("10.0.0.0/8",))
    assert caught.value.option == "denylist"
    assert "No such file or directory" in str(caught.value)


def test_bridge_without_netfilter_flag_blocks(tmp_path: Path) -> None:
    nft = FakeNft()
    host = NetworkPolicyHost(
        UNIT, nft=nft, sysfs=_sysfs(tmp_path, flag=None), resolve=lambda h: (h,)
    )
    with pytest.raises(errors.ConfigError, match="br_netfilter") as caught:
        host.apply("br-run", ("10.0.0.0/8",))
    assert caught.value.option == "denylist"
    assert nft.scripts == []  # nothing half-applied


def test_missing_bridge_still_applies_the_table(tmp_path: Path) -> None:
    nft = FakeNft()
    host = NetworkPolicyHost(UNIT, nft=nft, sysfs=tmp_path, resolve=lambda h: (h,))
    assert host.apply("br-later", ("10.0.0.0/8",)) is not None
    assert len(nft.scripts) == 1


def test_exempt_hosts_are_the_url_hosts() -> None:
    assert exempt_hosts(
        "https://ghes.example:8443/api/v3",
        None,
        "http://198.18.4.10:8567",
        "http://user:pw@proxy.example:3128",
        "",
        "https://ghes.example/other",
    ) == ("ghes.example", "198.18.4.10", "proxy.example")


def test_resolve_keeps_literals_and_reads_names() -> None:
    assert resolve_ipv4("198.18.4.10") == ("198.18.4.10",)
    assert resolve_ipv4("localhost") == ("127.0.0.1",)  # /etc/hosts: no query is sent
