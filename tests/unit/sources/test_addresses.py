"""Which addresses downloads may connect to: no requests into private networks by default."""

from __future__ import annotations

import ipaddress

import pytest

from symvault.sources.addresses import AddressPolicy, BlockedAddress

REFUSED = [
    "127.0.0.1",  # loopback
    "127.1.2.3",
    "::1",
    "10.0.0.1",  # private
    "172.16.5.4",
    "192.168.1.1",
    "fc00::1",
    "fd12:3456::1",
    "169.254.169.254",  # link-local (cloud metadata)
    "fe80::1",
    "224.0.0.1",  # multicast
    "224.0.1.1",  # multicast, although globally scoped
    "ff02::1",
    "ff0e::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "0.0.0.0",  # unspecified
    "::",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "192.0.2.1",  # documentation
    "2001:db8::1",
    "198.18.0.1",  # benchmarking
    "::ffff:127.0.0.1",  # IPv4-mapped forms of the above
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "151.101.1.69", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_reserved_addresses_are_refused(address: str) -> None:
    policy = AddressPolicy(allow_reserved=False)
    assert not policy.is_allowed(ipaddress.ip_address(address))
    with pytest.raises(BlockedAddress, match="private or reserved"):
        policy.resolve(address, 80)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address: str) -> None:
    policy = AddressPolicy(allow_reserved=False)
    assert policy.is_allowed(ipaddress.ip_address(address))
    resolved = policy.resolve(address, 443)
    assert ipaddress.ip_address(resolved) == ipaddress.ip_address(address)


@pytest.mark.parametrize("address", REFUSED)
def test_connect_to_reserved_ips_allows_everything(address: str) -> None:
    assert AddressPolicy(allow_reserved=True).is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("allowlist", "address", "allowed"),
    [
        (["10.1.0.0/16"], "10.1.2.3", True),
        (["10.1.0.0/16"], "10.2.0.1", False),
        (["127.0.0.1/32"], "127.0.0.1", True),
        (["127.0.0.1/32"], "127.0.0.2", False),
        (["127.0.0.1"], "::ffff:127.0.0.1", True),
        (["192.168.0.0/24"], "192.168.0.255", True),
        (["fd00::/8"], "fd12::1", True),
        (["fd00::/8"], "fe80::1", False),
        # `strict=False`: host bits in the network are forgiven.
        (["10.1.2.3/16"], "10.1.200.1", True),
    ],
)
def test_allowlist(allowlist: list[str], address: str, allowed: bool) -> None:
    policy = AddressPolicy(allow_reserved=False, allowlist=allowlist)
    assert policy.is_allowed(ipaddress.ip_address(address)) is allowed


def test_bracketed_ipv6_literals() -> None:
    with pytest.raises(BlockedAddress):
        AddressPolicy(allow_reserved=False).resolve("[::1]", 80)
    assert AddressPolicy(allow_reserved=True).resolve("[::1]", 80) == "::1"


def test_host_names_are_resolved_and_checked() -> None:
    policy = AddressPolicy(allow_reserved=False)
    with pytest.raises(BlockedAddress, match="localhost"):
        policy.resolve("localhost", 80)
    assert AddressPolicy(allow_reserved=True).resolve("localhost", 80) in ("127.0.0.1", "::1")


def test_unresolvable_names_raise_oserror() -> None:
    with pytest.raises(OSError):  # noqa: PT011 (the resolver's own error)
        AddressPolicy(allow_reserved=True).resolve("no-such-host.invalid", 80)


def test_invalid_allowlist_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="does not appear"):
        AddressPolicy(allow_reserved=False, allowlist=["not-a-network"])
