"""Which network addresses downloads may connect to (no SSRF through request sources).

Requests may name arbitrary HTTP sources, so by default every address a host
name resolves to must be a global unicast address: loopback, private,
link-local, multicast and reserved ranges are refused, unless
`connect_to_reserved_ips` allows them or they are in `reserved_ip_allowlist`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

__all__ = ["AddressPolicy", "BlockedAddress"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddress(Exception):
    """The destination resolves to an address downloads may not connect to."""


class AddressPolicy:
    def __init__(self, allow_reserved: bool, allowlist: Sequence[str] = ()) -> None:
        self.allow_reserved = allow_reserved
        self._allowlist: list[IPNetwork] = [
            ipaddress.ip_network(entry, strict=False) for entry in allowlist
        ]

    def is_allowed(self, address: IPAddress) -> bool:
        if self.allow_reserved:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._allowlist):
            return True
        return address.is_global and not address.is_multicast

    def resolve(self, host: str, port: int) -> str:
        """Resolves `host` and returns an allowed address to connect to.

        Raises `BlockedAddress` if any resolved address is not allowed (a host
        with one bad address is refused entirely), or OSError if it does not resolve.
        """
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        else:
            addresses = [literal]
        if not addresses:
            raise OSError(f"{host} did not resolve")
        for address in addresses:
            if not self.is_allowed(address):
                raise BlockedAddress(
                    f"refusing to connect to {host} ({address}): a private or reserved address"
                )
        return str(addresses[0])
