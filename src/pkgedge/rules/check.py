"""The checker: declarations, statements, phases and types, before anything is compiled.

It annotates every expression with its type (``Expr.type``, via :mod:`pkgedge.rules.typer`),
canonicalises header names (lower case) and reports every problem it finds as a diagnostic.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from pkgedge.rules import nodes as n
from pkgedge.rules.errors import Span
from pkgedge.rules.parse import Parsed
from pkgedge.rules.tables import parse_network
from pkgedge.rules.typer import HEADER, HEADER_NAME, Typer
from pkgedge.rules.variables import (
    ACTION_PHASES,
    FUNCTIONS,
    MANAGED_HEADERS,
    PHASES,
    RETURNS,
    where,
)

__all__ = ["check"]

T = n.T
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Checker(Typer):
    """Declarations and statements; expressions are the :class:`Typer`'s."""

    def __init__(self, parsed: Parsed, backends: Collection[str] | None) -> None:
        super().__init__(parsed)
        self.backends = backends

    # -- declarations ----------------------------------------------------------------------
    def run(self) -> None:
        subs: set[str] = set()
        for d in self.p.decls:
            if isinstance(d, n.Sub):
                continue
            kind = "table" if isinstance(d, n.TableDecl) else "acl"
            if not _PLAIN.fullmatch(d.name):
                self.err(d.name_span, f"{kind} name {d.name!r} must be a plain name (no dots)")
            elif d.name in self.kinds:
                self.err(d.name_span, f"{d.name!r} is declared twice")
            else:
                self.kinds[d.name] = kind
            if isinstance(d, n.TableDecl):
                keys: set[str] = set()
                for k, _ in d.entries:
                    if k.value in keys:
                        self.err(k.span, f"table {d.name}: key {k.value!r} appears twice")
                    keys.add(k.value)
            else:
                for e in d.entries:
                    try:
                        parse_network(e.value)
                    except ValueError as exc:
                        self.err(e.span, f"acl {d.name}: not a network: {exc}")
        for d in self.p.decls:
            if not isinstance(d, n.Sub):
                continue
            if d.name not in PHASES:
                self.err(d.name_span, f"unknown sub {d.name!r}: subs are named after the "
                         f"phases: {', '.join(PHASES)}")  # fmt: skip
                continue
            if d.name in subs:
                self.err(d.name_span, f"sub {d.name} is defined twice")
                continue
            subs.add(d.name)
            self.phase = d.name
            self.block(d.body)

    # -- statements ------------------------------------------------------------------------
    def block(self, body: list[n.Stmt]) -> None:
        for s in body:
            self.stmt(s)

    def stmt(self, s: n.Stmt) -> None:
        if isinstance(s, n.If):
            for cond, body in s.branches:
                t = self.expr(cond)
                if t is not None and t is not T.BOOL:
                    hint = ' (use defined(...) or != "")' if t is T.STRING else ""
                    self.err(cond.span, f"a condition must be bool, not {t}{hint}")
                self.block(body)
            if s.orelse is not None:
                self.block(s.orelse)
        elif isinstance(s, n.Assign):
            self.assign(s)
        elif isinstance(s, n.Unset):
            if HEADER.fullmatch(s.target) is None:
                self.err(s.target_span, "unset works on headers only (req.http.NAME, ...)")
            else:
                s.target = self.writable(s.target, s.target_span, header=True) or s.target
        elif isinstance(s, n.Return):
            allowed = RETURNS[self.phase]
            if s.action not in {"pass", "lookup", "deliver", "fetch", "restart"}:
                self.err(s.action_span, f"unknown action {s.action!r}")
            elif s.action not in allowed:
                ok = ", ".join(sorted(allowed)) or "none"
                self.err(s.action_span, f"return({s.action}) is not allowed in sub "
                         f"{self.phase} (allowed: {ok})")  # fmt: skip
            elif s.action == "restart":
                self.allowed("restart", s.span)
        elif isinstance(s, n.Action):
            self.action(s)
        elif isinstance(s, n.RateLimit):
            self.allowed("ratelimit", s.span)
            assert s.name is not None and s.count is not None and s.per is not None
            if not s.name.value:
                self.err(s.name.span, "a rate limit needs a counter name")
            if s.count.value < 1:
                self.err(s.count.span, "a rate limit allows at least 1 request")
            if s.per.seconds <= 0:
                self.err(s.per.span, "a rate limit's period must be longer than 0s")
        elif isinstance(s, n.CallStmt):
            if s.name != "hash_data":
                what = "a function's result must be used" if s.name in FUNCTIONS else (
                    f"unknown statement {s.name}(...)")  # fmt: skip
                self.err(s.name_span, what)
                return
            self.allowed("hash_data", s.span)
            self.args(s.span, "hash_data", s.args, (T.STRING,))

    def allowed(self, kind: str, span: Span) -> bool:
        if self.phase in ACTION_PHASES[kind]:
            return True
        self.err(span, f"{kind} is not allowed in sub {self.phase} (only in: "
                 f"{where(ACTION_PHASES[kind])})")  # fmt: skip
        return False

    def action(self, s: n.Action) -> None:
        kind = s.kind
        if kind == "add" and s.what != "surrogate_key":
            self.err(s.what_span, f"add takes surrogate_key, not {s.what!r}")
            return
        self.allowed(kind, s.span)
        status = s.status
        if status is not None:
            lo, hi = {"error": (400, 599), "synthetic": (200, 599), "redirect": (300, 399)}[kind]
            if kind == "redirect" and status.value not in _REDIRECTS:
                self.err(status.span, "a redirect's status is 301, 302, 303, 307 or 308")
            elif not lo <= status.value <= hi:
                self.err(status.span, f"{kind}'s status must be {lo}-{hi}")
        for a in s.args:
            self.expect(a, T.STRING, f"{kind}'s argument")
        if kind == "restart" and s.args:
            self.backend(s.args[0])
        seen: set[str] = set()
        for name, span, value in s.headers:
            low = name.lower()
            if not HEADER_NAME.fullmatch(name) or low in MANAGED_HEADERS:
                self.err(span, f"{name!r} is not a header a rule may set")
            elif low in seen:
                self.err(span, f"header {name!r} given twice")
            seen.add(low)
            self.expect(value, T.STRING, f"header {name}")

    def assign(self, s: n.Assign) -> None:
        header = HEADER.fullmatch(s.target) is not None
        if s.op == "append" and not header:
            self.err(s.target_span, "append works on headers only (req.http.NAME, ...)")
            return
        canon = self.writable(s.target, s.target_span, header=header)
        if canon is None:
            return
        s.target = canon
        var = self.var_of(canon)
        assert var is not None and s.value is not None
        self.expect(s.value, var.type, canon)
        if canon == "req.backend":
            self.backend(s.value)

    def backend(self, e: n.Expr) -> None:
        if self.backends is not None and isinstance(e, n.Str) and e.value not in self.backends:
            known = ", ".join(sorted(self.backends)) or "none"
            self.err(e.span, f"unknown backend {e.value!r} (known: {known})")

    def writable(self, name: str, span: Span | None, *, header: bool) -> str | None:
        canon = self.resolve(name, span)
        if canon is None:
            return None
        var = self.var_of(canon)
        assert var is not None
        if not var.write:
            self.err(span, f"{canon} is read-only")
            return None
        if self.phase not in var.write:
            self.err(span, f"{canon} can be set only in: {where(var.write)}")
            return None
        if header and canon.split(".http.", 1)[1] in MANAGED_HEADERS:
            self.err(span, f"{canon.split('.http.', 1)[1]} is managed by the edge")
            return None
        return canon


def check(parsed: Parsed, backends: Collection[str] | None = None) -> dict[str, str]:
    """Check ``parsed`` in place (diagnostics appended); the declared tables' kinds."""
    c = _Checker(parsed, backends)
    c.run()
    return c.kinds
