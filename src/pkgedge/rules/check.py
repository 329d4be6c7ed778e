"""The checker: declarations, names, phases and types, before anything is compiled.

It annotates every expression with its type (``Expr.type``), canonicalises header names
(lower case) and reports every problem it finds as a diagnostic; an expression whose type
could not be found has type None and raises no further errors, so one mistake is reported
once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection

from pkgedge.rules import nodes as n
from pkgedge.rules.errors import Span
from pkgedge.rules.parse import Parsed
from pkgedge.rules.regex import check_template, compile_regex
from pkgedge.rules.tables import parse_network
from pkgedge.rules.variables import (
    ACTION_PHASES,
    CACHE_STATES,
    FUNCTIONS,
    HEADERS,
    MANAGED_HEADERS,
    PHASES,
    RETURNS,
    UA_CLASSES,
    VARIABLES,
    Var,
)

__all__ = ["check"]

T = n.T
_HEADER = re.compile(r"(req|obj|beresp|resp)\.http\.(.+)")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ENUMS = {"client.ua_class": UA_CLASSES, "cache.state": CACHE_STATES}
_MAX_STRING_LITERAL = 65536


def _where(phases: Collection[str]) -> str:
    return ", ".join(p for p in PHASES if p in phases) or "no sub"


class _Checker:
    def __init__(self, parsed: Parsed, backends: Collection[str] | None) -> None:
        self.p = parsed
        self.backends = backends
        self.kinds: dict[str, str] = {}  # table/acl name → "table" | "acl"
        self.phase = ""

    def err(self, span: Span | None, message: str) -> None:
        self.p.error(span or Span(1, 1, 1, 2), message)

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
            if _HEADER.fullmatch(s.target) is None:
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
                 f"{_where(ACTION_PHASES[kind])})")  # fmt: skip
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
            if not _HEADER_NAME.fullmatch(name) or low in MANAGED_HEADERS:
                self.err(span, f"{name!r} is not a header a rule may set")
            elif low in seen:
                self.err(span, f"header {name!r} given twice")
            seen.add(low)
            self.expect(value, T.STRING, f"header {name}")

    def assign(self, s: n.Assign) -> None:
        header = _HEADER.fullmatch(s.target) is not None
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
            self.err(span, f"{canon} can be set only in: {_where(var.write)}")
            return None
        if header and canon.split(".http.", 1)[1] in MANAGED_HEADERS:
            self.err(span, f"{canon.split('.http.', 1)[1]} is managed by the edge")
            return None
        return canon

    # -- names -----------------------------------------------------------------------------
    @staticmethod
    def var_of(canon: str) -> Var | None:
        m = _HEADER.fullmatch(canon)
        return HEADERS[m.group(1)] if m else VARIABLES.get(canon)

    def resolve(self, name: str, span: Span | None) -> str | None:
        """The canonical name of a readable variable in this phase, or None (reported)."""
        m = _HEADER.fullmatch(name)
        if m is not None:
            if not _HEADER_NAME.fullmatch(m.group(2)):
                self.err(span, f"{m.group(2)!r} is not a header name")
                return None
            canon = f"{m.group(1)}.http.{m.group(2).lower()}"
        elif name in VARIABLES:
            canon = name
        else:
            if name in self.kinds:
                use = f"{name}[key] or key in {name}" if self.kinds[name] == "table" else (
                    f"ip in {name}")  # fmt: skip
                self.err(span, f"{name} is a {self.kinds[name]}: use {use}")
                return None
            names = [*VARIABLES, *(f"{h}.http." for h in HEADERS)]
            close = difflib.get_close_matches(name, names, n=1)
            if close and close[0].endswith(".http."):
                close[0] += name.rsplit(".", 1)[-1]
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.err(span, f"unknown variable {name!r}{hint}")
            return None
        var = self.var_of(canon)
        assert var is not None
        if self.phase not in var.read:
            self.err(span, f"{canon} does not exist in sub {self.phase} (only in: "
                     f"{_where(var.read)})")  # fmt: skip
            return None
        return canon

    # -- expressions -----------------------------------------------------------------------
    def expect(self, e: n.Expr, want: T, what: str) -> None:
        t = self.expr(e)
        if t is not None and t is not want:
            self.err(e.span, f"{what} must be {want}, not {t}")

    def expr(self, e: n.Expr) -> T | None:
        e.type = t = self._expr(e)
        return t

    def _expr(self, e: n.Expr) -> T | None:
        if isinstance(e, n.Str):
            if len(e.value) > _MAX_STRING_LITERAL:
                self.err(e.span, f"string longer than {_MAX_STRING_LITERAL} characters")
            return T.STRING
        if isinstance(e, n.Int):
            return T.INT
        if isinstance(e, n.Dur):
            return T.DURATION
        if isinstance(e, n.Bool):
            return T.BOOL
        if isinstance(e, n.Var):
            canon = self.resolve(e.name, e.span)
            if canon is None:
                return None
            e.name = canon
            var = self.var_of(canon)
            return var.type if var else None
        if isinstance(e, n.Index):
            assert e.key is not None
            self.expect(e.key, T.STRING, "a table key")
            kind = self.kinds.get(e.table)
            if kind != "table":
                self.err(e.table_span, f"{e.table} is an acl: use ip in {e.table}"
                         if kind == "acl" else f"unknown table {e.table!r}")  # fmt: skip
                return None
            return T.STRING
        if isinstance(e, n.In):
            assert e.left is not None
            self.expect(e.left, T.STRING, "the left side of in")
            if e.name not in self.kinds:
                self.err(e.name_span, f"unknown table or acl {e.name!r}")
                return None
            return T.BOOL
        if isinstance(e, n.Not):
            assert e.operand is not None
            self.expect(e.operand, T.BOOL, "the operand of !")
            return T.BOOL
        if isinstance(e, n.NAry):
            return self.nary(e)
        if isinstance(e, n.Binary):
            return self.binary(e)
        assert isinstance(e, n.Call)
        return self.call(e)

    def nary(self, e: n.NAry) -> T | None:
        types = [self.expr(x) for x in e.items]
        if e.op in ("&&", "||"):
            for x, t in zip(e.items, types, strict=True):
                if t is not None and t is not T.BOOL:
                    self.err(x.span, f"the operands of {e.op} must be bool, not {t}")
            return T.BOOL
        if None in types:
            return None
        for x, t in zip(e.items, types, strict=True):
            if t is T.BOOL:
                self.err(x.span, "a bool cannot be added or concatenated")
                return None
        if T.STRING in types:
            return T.STRING
        if len(set(types)) > 1:
            self.err(e.span, "cannot add an int and a duration")
            return None
        return types[0]

    def binary(self, e: n.Binary) -> T | None:
        assert e.left is not None and e.right is not None
        op = e.op
        if op in ("~", "!~"):
            self.expect(e.left, T.STRING, f"the left side of {op}")
            self.regex(e.right)
            return T.BOOL
        if op == "??":
            left = e.left
            if not isinstance(left, n.Index) and not (
                isinstance(left, n.Var) and _HEADER.fullmatch(left.name)
            ):
                self.err(left.span, "?? follows a table look-up or a header")
            self.expr(left)
            self.expect(e.right, T.STRING, "the default after ??")
            return T.STRING
        lt, rt = self.expr(e.left), self.expr(e.right)
        if lt is None or rt is None:
            return T.BOOL
        if lt is not rt:
            self.err(e.span, f"cannot compare {lt} with {rt}")
        elif op not in ("==", "!=") and lt not in (T.INT, T.DURATION):
            self.err(e.span, f"{op} compares ints or durations, not {lt}s")
        for var, lit in ((e.left, e.right), (e.right, e.left)):
            if (
                isinstance(var, n.Var)
                and isinstance(lit, n.Str)
                and lit.value not in _ENUMS.get(var.name, (lit.value,))
            ):
                self.err(lit.span, f"{var.name} is never {lit.value!r} (it is one of: "
                             f"{', '.join(_ENUMS[var.name])})")  # fmt: skip
        return T.BOOL

    def regex(self, e: n.Expr) -> None:
        if not isinstance(e, n.Str):
            self.err(e.span, "a regex must be a string literal (it is compiled once)")
            self.expr(e)
            return
        e.type = T.STRING
        try:
            compile_regex(e.value)
        except ValueError as exc:
            self.err(e.span, str(exc))

    def call(self, e: n.Call) -> T | None:
        sig = FUNCTIONS.get(e.name)
        if sig is None:
            close = difflib.get_close_matches(e.name, list(FUNCTIONS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.err(e.span, f"unknown function {e.name!r}{hint}")
            for a in e.args:
                self.expr(a)
            return None
        params, result = sig
        if e.name == "defined" and (
            len(e.args) != 1
            or not (isinstance(e.args[0], n.Var) and _HEADER.fullmatch(e.args[0].name))
        ):
            self.err(e.span, "defined(...) takes one header, e.g. defined(req.http.cookie)")
            return T.BOOL
        if e.name in ("regsub", "regsuball") and len(e.args) == 3:
            self.expect(e.args[0], T.STRING, f"{e.name}'s subject")
            self.regex(e.args[1])
            repl = e.args[2]
            if not isinstance(repl, n.Str):
                self.err(repl.span, "the replacement must be a string literal")
            else:
                repl.type = T.STRING
                if isinstance(e.args[1], n.Str):
                    try:
                        check_template(compile_regex(e.args[1].value), repl.value)
                    except ValueError as exc:
                        self.err(repl.span, str(exc))
            return result
        self.args(e.span, e.name, e.args, params)
        return result

    def args(self, span: Span, name: str, args: list[n.Expr], params: tuple[T, ...]) -> None:
        if len(args) != len(params):
            self.err(span, f"{name}() takes {len(params)} argument(s), not {len(args)}")
        for a, want in zip(args, params, strict=False):
            self.expect(a, want, f"{name}'s argument")
        for a in args[len(params) :]:
            self.expr(a)


def check(parsed: Parsed, backends: Collection[str] | None = None) -> dict[str, str]:
    """Check ``parsed`` in place (diagnostics appended); the declared tables' kinds."""
    c = _Checker(parsed, backends)
    c.run()
    return c.kinds
