"""Allow and deny lists: addresses, CIDR ranges and User-Agent patterns, from a text file.

One rule per line; ``#`` starts a comment line (and an inline comment after an address)::

    # partners and the office bypass rate limits
    allow 10.0.0.0/8
    allow 2001:db8:42::/48
    deny 192.0.2.1
    deny-ua (?i)badbot|evil-scraper
    allow-ua ^bandersnatch/

``allow`` means "skip rate limits and signals", ``deny`` means "answer 403". The first rule
that matches, in file order, decides (as nginx's allow/deny): put the exceptions first. A
pattern is a Python regular expression searched in the User-Agent (cut to
:data:`~pkgedge.security.useragent.MAX_UA_LENGTH` characters). The client may be an address
or a network key as :class:`~pkgedge.security.clientid.ClientIdentity` produces
(``2001:db8:1:2::/64``): a network matches the rules covering all of it.

Address rules are indexed by prefix length, so a check costs one dict lookup per distinct
prefix length in the file (not one per rule). :class:`AclFile` reloads the file when its
mtime (or size or inode) changes, looking at most every ``interval`` seconds; a file that
does not parse keeps the previous rules and reports the first bad line. Write it atomically
(write a temporary file, rename it over) so a half-written file is never read.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pkgedge.errors import ConfigError
from pkgedge.security.clientid import parse_address
from pkgedge.security.useragent import MAX_UA_LENGTH

__all__ = ["Acl", "AclFile", "AclReload", "AclResult", "AclRule", "AclSyntaxError"]

Verdict = Literal["allow", "deny"]
_VERBS: dict[str, tuple[Verdict, bool]] = {  # verb → (verdict, is a User-Agent pattern)
    "allow": ("allow", False),
    "deny": ("deny", False),
    "allow-ua": ("allow", True),
    "deny-ua": ("deny", True),
}
_MAX_FILE = 8 * 1024 * 1024


class AclSyntaxError(ConfigError):
    """A line of an ACL that does not parse; ``line`` is 1-based."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source, self.line = source, line


@dataclass(frozen=True, slots=True)
class AclRule:
    """One parsed line: an address/network rule or a User-Agent pattern rule."""

    line: int
    verdict: Verdict
    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class AclResult:
    """``verdict`` None means no rule matched; ``reason`` names the rule for logs."""

    verdict: Verdict | None
    reason: str
    line: int | None = None


_NO_MATCH = AclResult(None, "no-match")


def _parse_line(number: int, line: str, source: str) -> AclRule | None:
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    verb, *rest = line.split(None, 1)
    arg = rest[0].strip() if rest else ""
    if verb not in _VERBS:
        raise AclSyntaxError(source, number, f"unknown rule {verb!r} (allow|deny[-ua])")
    verdict, is_ua = _VERBS[verb]
    if is_ua:
        if not arg:
            raise AclSyntaxError(source, number, f"{verb} needs a pattern")
        try:
            return AclRule(number, verdict, line, pattern=re.compile(arg))
        except re.error as exc:
            raise AclSyntaxError(source, number, f"bad pattern {arg!r}: {exc}") from None
    arg = arg.partition("#")[0].strip()
    try:
        network = ipaddress.ip_network(arg)
    except ValueError as exc:
        raise AclSyntaxError(source, number, f"not an address or CIDR: {exc}") from None
    return AclRule(number, verdict, line, network=network)


class Acl:
    """An ordered list of :class:`AclRule` (see the module doc for the semantics)."""

    def __init__(self, rules: Sequence[AclRule] = ()) -> None:
        self.rules: tuple[AclRule, ...] = tuple(rules)
        # version → [(prefix length, {network bits → first rule index})], longest first
        tables: dict[int, dict[int, dict[int, int]]] = {4: {}, 6: {}}
        self._ua: list[tuple[int, AclRule]] = []
        for index, rule in enumerate(self.rules):
            if rule.pattern is not None:
                self._ua.append((index, rule))
            elif rule.network is not None:
                net = rule.network
                bits = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
                table = tables[net.version].setdefault(net.prefixlen, {})
                table.setdefault(bits, index)
        self._tables = {v: sorted(t.items(), reverse=True) for v, t in tables.items()}

    @classmethod
    def parse(cls, text: str, source: str = "<acl>") -> Acl:
        """Rules from ACL text; the first bad line raises :class:`AclSyntaxError`."""
        rules = [_parse_line(n, line, source) for n, line in enumerate(text.splitlines(), 1)]
        return cls([r for r in rules if r is not None])

    def __len__(self) -> int:
        return len(self.rules)

    def _address_match(self, client_ip: str) -> int | None:
        if "/" in client_ip:
            try:
                net = ipaddress.ip_network(client_ip.strip(), strict=False)
            except ValueError:
                return None
            addr, width, top = net.network_address, net.prefixlen, net.max_prefixlen
        else:
            parsed = parse_address(client_ip)
            if parsed is None:
                return None
            addr, width, top = parsed, parsed.max_prefixlen, parsed.max_prefixlen
        value, best = int(addr), None
        for prefixlen, table in self._tables[addr.version]:
            if prefixlen > width:
                continue
            index = table.get(value >> (top - prefixlen))
            if index is not None and (best is None or index < best):
                best = index
        return best

    def check(self, client_ip: str, user_agent: str) -> AclResult:
        """The first rule matching the client address/network or User-Agent. Never raises."""
        if not self.rules:
            return _NO_MATCH
        best = self._address_match(client_ip) if isinstance(client_ip, str) else None
        if self._ua and isinstance(user_agent, str):
            ua = user_agent[:MAX_UA_LENGTH]
            for index, rule in self._ua:
                if best is not None and index > best:
                    break
                if rule.pattern is not None and rule.pattern.search(ua):
                    best = index
                    break
        if best is None:
            return _NO_MATCH
        rule = self.rules[best]
        return AclResult(rule.verdict, f"line {rule.line}: {rule.text}", rule.line)

    def __repr__(self) -> str:
        return f"<Acl rules={len(self.rules)} ua_patterns={len(self._ua)}>"


@dataclass(frozen=True, slots=True)
class AclReload:
    """What :meth:`AclFile.refresh` did: ``not-due`` (checked less than ``interval`` ago),
    ``unchanged``, ``reloaded`` or ``failed`` (``error`` says why; old rules kept)."""

    reason: Literal["not-due", "unchanged", "reloaded", "failed"]
    error: str | None = None
    line: int | None = None


_Signature = tuple[int, int, int] | None


class AclFile:
    """An :class:`Acl` kept in step with a file. The constructor loads it and raises
    :class:`ConfigError` if it is missing or bad (fail at startup); later reloads never raise."""

    def __init__(self, path: str | os.PathLike[str], *, interval: float = 1.0) -> None:
        if not (math.isfinite(interval) and interval >= 0):
            raise ConfigError(f"ACL reload interval must be >= 0, got {interval!r}")
        self.path = Path(path)
        self.interval = interval
        #: the time from which :meth:`refresh` looks at the file again; before it a call
        #: does nothing, so a caller on a hot path may skip it (read only)
        self.next_check = -math.inf
        self._sig = self._signature()
        self.error: str | None = None
        self.error_line: int | None = None
        if self._sig is None:
            raise ConfigError(f"ACL file not found: {self.path}")
        self.acl = self._load()

    def _signature(self) -> _Signature:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> Acl:
        try:
            with open(self.path, "rb") as f:
                data = f.read(_MAX_FILE + 1)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if len(data) > _MAX_FILE:
            raise ConfigError(f"{self.path}: larger than {_MAX_FILE} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.path}: not UTF-8 at byte {exc.start}") from None
        return Acl.parse(text, str(self.path))

    def refresh(self, now: float) -> AclReload:
        """Reload the file if it changed since the last look (at most every ``interval``)."""
        if now < self.next_check:
            return AclReload("not-due", self.error, self.error_line)
        self.next_check = now + self.interval
        sig = self._signature()
        if sig == self._sig:
            return AclReload("unchanged", self.error, self.error_line)
        self._sig = sig  # a failed version is reported once, not re-read every interval
        try:
            if sig is None:
                raise ConfigError(f"{self.path}: file not found")
            self.acl = self._load()
        except ConfigError as exc:
            self.error = f"{exc}; keeping the previous {len(self.acl)} rules"
            self.error_line = exc.line if isinstance(exc, AclSyntaxError) else None
            return AclReload("failed", self.error, self.error_line)
        self.error, self.error_line = None, None
        return AclReload("reloaded")

    def check(self, client_ip: str, user_agent: str, now: float) -> AclResult:
        """:meth:`refresh`, then :meth:`Acl.check`."""
        self.refresh(now)
        return self.acl.check(client_ip, user_agent)

    def __repr__(self) -> str:
        return f"<AclFile {self.path} rules={len(self.acl)} error={self.error!r}>"
