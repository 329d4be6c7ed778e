"""Names and types of expressions, for the checker (:mod:`pkgedge.rules.check`): variables
resolved per phase, every expression's type found (``Expr.type``), regexes vetted.

An expression whose type could not be found has type None and causes no further errors, so
one mistake is reported once.
"""

from __future__ import annotations

import difflib
import re

from pkgedge.rules import nodes as n
from pkgedge.rules.errors import Span
from pkgedge.rules.parse import Parsed
from pkgedge.rules.regex import check_template, compile_regex
from pkgedge.rules.variables import (
    CACHE_STATES,
    FUNCTIONS,
    HEADERS,
    UA_CLASSES,
    VARIABLES,
    Var,
    where,
)

__all__ = ["HEADER", "Typer"]

T = n.T
HEADER = re.compile(r"(req|obj|beresp|resp)\.http\.(.+)")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENUMS = {"client.ua_class": UA_CLASSES, "cache.state": CACHE_STATES}
_MAX_STRING_LITERAL = 65536


class Typer:
    """Types expressions in the sub being checked (``phase``), with the declared tables."""

    def __init__(self, parsed: Parsed) -> None:
        self.p = parsed
        self.kinds: dict[str, str] = {}  # table/acl name → "table" | "acl"
        self.phase = ""

    def err(self, span: Span | None, message: str) -> None:
        self.p.error(span or Span(1, 1, 1, 2), message)

    # -- names -----------------------------------------------------------------------------
    @staticmethod
    def var_of(canon: str) -> Var | None:
        m = HEADER.fullmatch(canon)
        return HEADERS[m.group(1)] if m else VARIABLES.get(canon)

    def resolve(self, name: str, span: Span | None) -> str | None:
        """The canonical name of a readable variable in this phase, or None (reported)."""
        m = HEADER.fullmatch(name)
        if m is not None:
            if not HEADER_NAME.fullmatch(m.group(2)):
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
                     f"{where(var.read)})")  # fmt: skip
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
                isinstance(left, n.Var) and HEADER.fullmatch(left.name)
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
            or not (isinstance(e.args[0], n.Var) and HEADER.fullmatch(e.args[0].name))
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
