"""Named tables (string → string) and ACLs (IPv4 and IPv6 networks) that rules read and
operators replace live.

A compiled configuration declares each name and its initial contents; :class:`Tables` holds
the current contents (``current``, the mapping an :class:`~pkgedge.rules.env.Env` reads on
every use) and a ``version`` bumped by every :meth:`Tables.replace`. Replacing a table never
needs a recompile: the compiled closures look the table up by name on each request.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping

from pkgedge.rules.errors import TableError

__all__ = ["MAX_ENTRIES", "Acl", "Tables", "parse_network"]

#: Most entries in one table or ACL.
MAX_ENTRIES = 1_000_000
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> _Net:
    """``"192.0.2.0/24"``, ``"2001:db8::/32"`` or one address; ValueError when invalid."""
    net = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96)
            return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> tuple[bool, int] | None:
    """(is IPv4, the address as an int) of an address; IPv4-mapped IPv6 is IPv4."""
    try:
        addr: _Addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.version == 4, int(addr)


class Acl:
    """A set of networks. ``ip in acl`` costs one set look-up per distinct prefix length."""

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, networks: Iterable[_Net]) -> None:
        self.networks = tuple(networks)
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in self.networks:
            bits, table = (32, v4) if net.version == 4 else (128, v6)
            table.setdefault(net.prefixlen, set()).add(
                int(net.network_address) >> (bits - net.prefixlen)
            )
        # (how far to shift an address right, the network prefixes of that length)
        self._v4 = tuple((32 - plen, frozenset(p)) for plen, p in sorted(v4.items()))
        self._v6 = tuple((128 - plen, frozenset(p)) for plen, p in sorted(v6.items()))

    def __contains__(self, ip: object) -> bool:
        addr = _address(ip) if isinstance(ip, str) else None
        if addr is None:
            return False  # not an address: matches no network
        v4, value = addr
        for shift, prefixes in self._v4 if v4 else self._v6:  # noqa: SIM110 - cheaper than any()
            if value >> shift in prefixes:
                return True
        return False

    def __len__(self) -> int:
        return len(self.networks)

    def __repr__(self) -> str:
        return f"<Acl {len(self.networks)} networks>"


class Tables:
    """The current contents of every declared table and ACL.

    ``kinds`` maps each declared name to ``"table"`` or ``"acl"``; a replacement must keep the
    kind. ``current`` is the mapping compiled rules read (name → dict or :class:`Acl`).
    """

    __slots__ = ("current", "kinds", "version")

    def __init__(
        self, kinds: Mapping[str, str], initial: Mapping[str, Mapping[str, str] | Iterable[str]]
    ) -> None:
        self.kinds = dict(kinds)
        self.current: dict[str, dict[str, str] | Acl] = {}
        self.version = 0
        for name in self.kinds:
            self.current[name] = self._build(name, initial.get(name, ()))

    def replace(self, name: str, data: Mapping[str, str] | Iterable[str]) -> int:
        """Replace a table's (str → str mapping) or an ACL's (CIDR strings) contents; the
        new version. The old contents stay in use if the new ones are invalid."""
        self.current[name] = self._build(name, data)
        self.version += 1
        return self.version

    def _build(self, name: str, data: Mapping[str, str] | Iterable[str]) -> dict[str, str] | Acl:
        kind = self.kinds.get(name)
        if kind is None:
            known = ", ".join(sorted(self.kinds)) or "none"
            raise TableError(f"no table or acl named {name!r} (declared: {known})")
        if kind == "table":
            if not isinstance(data, Mapping):
                raise TableError(f"table {name}: expected a mapping of strings to strings")
            if len(data) > MAX_ENTRIES:
                raise TableError(f"table {name}: more than {MAX_ENTRIES} entries")
            out: dict[str, str] = {}
            for k, v in data.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise TableError(f"table {name}: {k!r}: keys and values must be strings")
                out[k] = v
            return out
        if isinstance(data, Mapping | str):
            raise TableError(f"acl {name}: expected a list of networks (CIDR strings)")
        nets = []
        for i, item in enumerate(data):
            if i >= MAX_ENTRIES:
                raise TableError(f"acl {name}: more than {MAX_ENTRIES} entries")
            if not isinstance(item, str):
                raise TableError(f"acl {name}: {item!r} is not a string")
            try:
                nets.append(parse_network(item))
            except ValueError as exc:
                raise TableError(f"acl {name}: {item!r} is not a network: {exc}") from None
        return Acl(nets)

    def __repr__(self) -> str:
        return f"<Tables {sorted(self.kinds)} version={self.version}>"
