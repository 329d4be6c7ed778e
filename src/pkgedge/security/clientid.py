"""Who is the client? The key every limit and signal is counted under.

The connection's peer address is the client, unless the peer is one of our own trusted proxies
(a load balancer, another edge). Then X-Forwarded-For is read from the right: each trusted hop
appended the address it saw, so the right-most entry that is not itself a trusted proxy is the
first address no trusted party can vouch for -- the client. Entries left of it were written by
the client and are never believed. Unparseable entries ("unknown", "", obfuscated ids) are
skipped; a port (``1.2.3.4:80``, ``[2001:db8::1]:443``), quotes and IPv6 zone ids are removed.
When every entry is a trusted proxy, the left-most one is the client (internal traffic).

The key is an IPv4 address as-is, or the /64 (configurable) an IPv6 address belongs to, as one
customer usually owns a whole /64 and rotates within it. IPv4-mapped IPv6 (``::ffff:1.2.3.4``,
what a dual-stack socket reports) is IPv4. Nothing here raises on request input.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pkgedge.errors import ConfigError

__all__ = ["ClientId", "ClientIdentity", "parse_address"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Why a key was chosen: the peer itself, an XFF entry, the left-most XFF entry because all
#: were trusted, the last entry examined because of ``max_hops``, or an unparseable peer.
Source = Literal["peer", "xff", "xff-all-trusted", "xff-hop-limit", "peer-unparseable"]

_MAX_ENTRY = 64  # longer than any address with port, brackets and zone id
_MAX_CACHED_XFF = 256  # longer headers are resolved every time (they bloat the cache)


def parse_address(text: str) -> Address | None:
    """``"1.2.3.4"``, ``"1.2.3.4:80"``, ``"[2001:db8::1]:443"``, ``"fe80::1%eth0"``, ``"::ffff:
    1.2.3.4"`` (→ IPv4) → an address; anything else → None. Never raises."""
    s = text.strip().strip('"').strip()
    if not s or len(s) > _MAX_ENTRY:
        return None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None
        s = s[1:end]
    elif s.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        s = s.partition(":")[0]
    s = s.partition("%")[0]
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@dataclass(frozen=True, slots=True)
class ClientId:
    """A resolved client: ``key`` to count under, the full ``address`` (None when the peer was
    unparseable) and where it came from (``source``, for logs)."""

    key: str
    address: str | None
    source: Source


class ClientIdentity:
    """Resolves (peer, X-Forwarded-For) to a client key; see the module doc for the algorithm.

    ``trusted_proxies`` are addresses or CIDR ranges (an invalid one raises :class:`ConfigError`
    at construction); ``max_hops`` bounds how many XFF entries are examined; results of the last
    ``cache_size`` distinct inputs are remembered (cleared wholesale when full).
    """

    def __init__(
        self,
        trusted_proxies: Sequence[str] = (),
        *,
        ipv6_prefix: int = 64,
        max_hops: int = 16,
        cache_size: int = 4096,
    ) -> None:
        if not 0 <= ipv6_prefix <= 128:
            raise ConfigError(f"ipv6_prefix must be within 0..128, got {ipv6_prefix}")
        if max_hops < 1:
            raise ConfigError(f"max_hops must be >= 1, got {max_hops}")
        nets: list[Network] = []
        for entry in trusted_proxies:
            try:
                nets.append(ipaddress.ip_network(entry.strip()))
            except ValueError as exc:
                raise ConfigError(f"trusted proxy is not an address or CIDR: {exc}") from None
        self.trusted: tuple[Network, ...] = tuple(nets)
        self._v4 = tuple(n for n in nets if isinstance(n, ipaddress.IPv4Network))
        self._v6 = tuple(n for n in nets if isinstance(n, ipaddress.IPv6Network))
        self.ipv6_prefix = ipv6_prefix
        self._mask = ((1 << ipv6_prefix) - 1) << (128 - ipv6_prefix)
        self.max_hops = max_hops
        self._cache: dict[tuple[str, str | None], ClientId] = {}
        self._cache_size = cache_size

    def _is_trusted(self, addr: Address) -> bool:
        if isinstance(addr, ipaddress.IPv4Address):
            return any(addr in net for net in self._v4)
        return any(addr in net for net in self._v6)

    def is_trusted(self, address: str) -> bool:
        """Whether ``address`` (any form :func:`parse_address` takes) is a trusted proxy."""
        addr = parse_address(address)
        return addr is not None and self._is_trusted(addr)

    def key_for(self, addr: Address) -> str:
        """IPv4 as-is; IPv6 as its ``/ipv6_prefix`` network (``2001:db8:1:2::/64``)."""
        if isinstance(addr, ipaddress.IPv4Address):
            return str(addr)
        if self.ipv6_prefix == 128:
            return str(ipaddress.IPv6Address(int(addr)))
        net = ipaddress.IPv6Address(int(addr) & self._mask)
        return f"{net}/{self.ipv6_prefix}"

    def identify(self, peer: str, xff: str | None) -> str:
        """The client key for a connection from ``peer`` carrying X-Forwarded-For ``xff``
        (repeated fields comma-joined). Never raises."""
        return self.resolve(peer, xff).key

    def resolve(self, peer: str, xff: str | None) -> ClientId:
        """Like :meth:`identify`, with the full address and the reason for the choice."""
        ck = (peer, xff)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        result = self._resolve(peer, xff)
        if xff is not None and len(xff) > _MAX_CACHED_XFF:
            return result
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[ck] = result
        return result

    def _resolve(self, peer: str, xff: str | None) -> ClientId:
        addr = parse_address(peer) if isinstance(peer, str) else None
        if addr is None:
            text = peer[:_MAX_ENTRY] if isinstance(peer, str) and peer.strip() else "-"
            return ClientId(text, None, "peer-unparseable")
        if not xff or not isinstance(xff, str) or not self._is_trusted(addr):
            return self._id(addr, "peer")
        entries = xff.rsplit(",", self.max_hops)
        if len(entries) > self.max_hops:
            entries = entries[1:]  # the unexamined remainder, left of the hop limit
            limited = True
        else:
            limited = False
        leftmost: Address | None = None
        for entry in reversed(entries):
            hop = parse_address(entry)
            if hop is None:
                continue
            if not self._is_trusted(hop):
                return self._id(hop, "xff")
            leftmost = hop
        if leftmost is None:  # nothing usable: the trusted peer is all we know
            return self._id(addr, "peer")
        return self._id(leftmost, "xff-hop-limit" if limited else "xff-all-trusted")

    def _id(self, addr: Address, source: Source) -> ClientId:
        return ClientId(self.key_for(addr), str(addr), source)

    def __repr__(self) -> str:
        return f"<ClientIdentity trusted={len(self.trusted)} ipv6_prefix={self.ipv6_prefix}>"
