"""Expressions → closures ``Callable[[Env], value]``, built once at compile time.

The checker has typed every expression, so nothing here inspects types at run time. Each
closure does a bounded amount of work: strings it produces are capped at
:data:`MAX_STRING` characters (beyond: :class:`~pkgedge.rules.errors.RulesRuntimeError`),
regexes were compiled (and vetted) once.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from pkgedge.rules import nodes as n
from pkgedge.rules.env import Env
from pkgedge.rules.errors import RulesRuntimeError
from pkgedge.rules.regex import compile_regex, matcher
from pkgedge.rules.variables import HEADERS, VARIABLES

__all__ = ["MAX_STRING", "Getter", "compile_expr", "header_parts", "to_text"]

#: Longest string a rule may build (concatenation, substitution, case change).
MAX_STRING = 64 * 1024

Getter = Callable[[Env], Any]
T = n.T
_HEADER = re.compile(r"(req|obj|beresp|resp)\.http\.(.+)")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def header_parts(canon: str) -> tuple[str, str] | None:
    """(Env attribute of the header dict, lower-case name) of ``req.http.NAME`` etc."""
    m = _HEADER.fullmatch(canon)
    return (HEADERS[m.group(1)].attr, m.group(2)) if m else None


def to_text(value: object) -> str:
    """A value as concatenation shows it: ints in decimal, durations as ``300s``."""
    if isinstance(value, float):
        return f"{int(value)}s" if value.is_integer() else f"{value:g}s"
    return str(value)


def capped(s: str, line: int) -> str:
    if len(s) > MAX_STRING:
        raise RulesRuntimeError(f"string longer than {MAX_STRING} characters", line)
    return s


def compile_expr(e: n.Expr) -> Getter:
    line = e.span.line
    if isinstance(e, n.Str | n.Int | n.Bool):
        value: object = e.value
        return lambda env: value
    if isinstance(e, n.Dur):
        seconds = e.seconds
        return lambda env: seconds
    if isinstance(e, n.Var):
        return _var(e.name)
    if isinstance(e, n.Index):
        assert e.key is not None
        return _index(e.table, compile_expr(e.key), None)
    if isinstance(e, n.In):
        assert e.left is not None
        left, name = compile_expr(e.left), e.name
        return lambda env: left(env) in env.tables[name]
    if isinstance(e, n.Not):
        assert e.operand is not None
        inner = compile_expr(e.operand)
        return lambda env: not inner(env)
    if isinstance(e, n.NAry):
        return _nary(e, line)
    if isinstance(e, n.Binary):
        return _binary(e)
    assert isinstance(e, n.Call)
    return _call(e, line)


def _var(canon: str) -> Getter:
    parts = header_parts(canon)
    if parts is None:
        return operator.attrgetter(VARIABLES[canon].attr)
    attr, name = parts
    if attr == "req_headers":
        return lambda env: env.req_headers.get(name, "")
    if attr == "resp_headers":
        return lambda env: env.resp_headers.get(name, "")
    if attr == "beresp_headers":
        return lambda env: env.beresp_headers.get(name, "")
    return lambda env: env.obj_headers.get(name, "")


def _index(table: str, key: Getter, default: Getter | None) -> Getter:
    if default is None:
        return lambda env: env.tables[table].get(key(env), "")  # type: ignore[union-attr]

    def lookup_or(env: Env) -> str:
        v: str | None = env.tables[table].get(key(env))  # type: ignore[union-attr]
        return default(env) if v is None else v

    return lookup_or


def _nary(e: n.NAry, line: int) -> Getter:
    items = [compile_expr(x) for x in e.items]
    if e.op == "&&":
        if len(items) == 2:
            a, b = items
            return lambda env: a(env) and b(env)
        return lambda env: all(g(env) for g in items)
    if e.op == "||":
        if len(items) == 2:
            a, b = items
            return lambda env: a(env) or b(env)
        return lambda env: any(g(env) for g in items)
    if e.type is not T.STRING:  # ints or durations
        return lambda env: sum(g(env) for g in items)
    parts = [
        g if x.type is T.STRING else (lambda env, g=g: to_text(g(env)))
        for g, x in zip(items, e.items, strict=True)
    ]
    if len(parts) == 2:
        a, b = parts

        def cat2(env: Env) -> str:
            s: str = a(env) + b(env)
            if len(s) > MAX_STRING:
                raise RulesRuntimeError(f"string longer than {MAX_STRING} characters", line)
            return s

        return cat2

    def cat(env: Env) -> str:
        s = "".join([g(env) for g in parts])
        if len(s) > MAX_STRING:
            raise RulesRuntimeError(f"string longer than {MAX_STRING} characters", line)
        return s

    return cat


def _binary(e: n.Binary) -> Getter:
    assert e.left is not None and e.right is not None
    op = e.op
    if op in ("~", "!~"):
        assert isinstance(e.right, n.Str)
        match = matcher(e.right.value, compile_expr(e.left))
        if op == "~":
            return match
        return lambda env: not match(env)
    if op == "??":
        default = compile_expr(e.right)
        if isinstance(e.left, n.Index):
            assert e.left.key is not None
            return _index(e.left.table, compile_expr(e.left.key), default)
        assert isinstance(e.left, n.Var)
        parts = header_parts(e.left.name)
        assert parts is not None
        attr, name = parts
        headers = operator.attrgetter(attr)

        def header_or(env: Env) -> str:
            v: str | None = headers(env).get(name)
            return default(env) if v is None else v

        return header_or
    cmp = _COMPARE[op]
    left, right = compile_expr(e.left), compile_expr(e.right)
    if isinstance(e.right, n.Str | n.Int | n.Dur | n.Bool):
        const = e.right.seconds if isinstance(e.right, n.Dur) else e.right.value
        if op == "==":
            return lambda env: left(env) == const
        if op == "!=":
            return lambda env: left(env) != const
        return lambda env: cmp(left(env), const)
    return lambda env: cmp(left(env), right(env))


def _call(e: n.Call, line: int) -> Getter:
    name = e.name
    if name == "defined":
        assert isinstance(e.args[0], n.Var)
        parts = header_parts(e.args[0].name)
        assert parts is not None
        headers, hname = operator.attrgetter(parts[0]), parts[1]
        return lambda env: hname in headers(env)
    if name in ("regsub", "regsuball"):
        subject = compile_expr(e.args[0])
        pat, repl = e.args[1], e.args[2]
        assert isinstance(pat, n.Str) and isinstance(repl, n.Str)
        return _regsub(compile_regex(pat.value), repl.value, subject, name == "regsub", line)
    args = [compile_expr(a) for a in e.args]
    if name == "lower":
        (a,) = args
        return lambda env: capped(a(env).lower(), line)
    if name == "upper":
        (a,) = args
        return lambda env: capped(a(env).upper(), line)
    if name == "len":
        (a,) = args
        return lambda env: len(a(env))
    a, b = args
    if name == "starts_with":
        return lambda env: a(env).startswith(b(env))
    if name == "ends_with":
        return lambda env: a(env).endswith(b(env))
    assert name == "contains", name
    return lambda env: b(env) in a(env)


def _regsub(
    pattern: re.Pattern[str], template: str, subject: Getter, once: bool, line: int
) -> Getter:
    if once:
        return lambda env: capped(pattern.sub(template, subject(env), count=1), line)

    def regsuball(env: Env) -> str:
        s: str = subject(env)
        total = [len(s)]

        def piece(m: re.Match[str]) -> str:
            out = m.expand(template)
            total[0] += len(out)
            if total[0] > 2 * MAX_STRING:  # stop early: the result is bounded by this
                raise RulesRuntimeError(f"string longer than {MAX_STRING} characters", line)
            return out

        return capped(pattern.sub(piece, s), line)

    return regsuball
