"""pkgedge's rules language: VCL-like rules per phase of the edge's pipeline.

Pure: no I/O, no asyncio, no sockets, nothing from :mod:`pkgedge.edge`. Source text is parsed
by lark (LALR(1), ``grammar.lark``), checked (names, phases, types, regexes) and compiled once
into closures; nothing is ever ``eval``-ed and the language has no loops and no imports.

Grammar (``#``, ``//`` and ``/* */`` comments)::

    config   := (table | acl | sub)*
    table    := "table" NAME "{" [STRING ":" STRING ("," STRING ":" STRING)* [","]] "}"
    acl      := "acl" NAME "{" (STRING ";")* "}"          # CIDRs or addresses, IPv4 and IPv6
    sub      := "sub" PHASE "{" stmt* "}"    # PHASE: recv hash hit miss pass fetch deliver
                                             #        error log
    stmt     := "if" "(" expr ")" block ("elif" "(" expr ")" block)* ["else" (block | if)]
              | "set" VAR "=" expr ";"       | "append" HEADER "=" expr ";"
              | "unset" HEADER ";"           | "return" "(" ACTION ")" ";"
              | "error" STATUS [expr] ";"    | "synthetic" STATUS expr ["with" H "=" expr, ...] ";"
              | "redirect" STATUS expr ";"   | "block" [expr] ";"
              | "ratelimit" STRING N "per" DURATION ";"
              | "restart" [expr] ";"         | "add" "surrogate_key" expr ";"
              | "log" expr ";"               | "hash_data" "(" expr ")" ";"
    expr     := expr "||" expr | expr "&&" expr | "!" expr
              | sum ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
              | sum ("~" | "!~") STRING      # the regex is a literal, compiled once
              | sum "in" NAME                # a table's key, or an address in an ACL
              | sum
    sum      := atom ("+" atom)*             # string concatenation (ints/durations shown as
                                             # text), or int + int, duration + duration
    atom     := STRING | {"raw string"} | INT | DURATION | true | false | VAR
              | NAME "[" expr "]" ["??" atom] | HEADER "??" atom | FUNC "(" args ")" | "(" expr ")"

``elsif``/``elseif``/``else if`` are accepted for ``elif``. In ``"..."`` strings only ``\\"``
is an escape (other backslashes are kept, so regexes read as written); ``{"..."}`` is raw.
Durations: ``500ms``, ``30s``, ``5m``, ``1h``, ``1d``, ``1w``, ``1y``. Functions: ``lower``,
``upper``, ``len``, ``starts_with``, ``ends_with``, ``contains``, ``regsub``/``regsuball``
(literal regex and replacement), ``defined(HEADER)``. Variables, where they exist and where
they may be set: :mod:`pkgedge.rules.variables`. A header absent reads as ``""``; ``??``
gives another default, ``defined(...)`` tells absent from empty.

Use::

    rules = compile_rules(text)            # RulesError: every problem, each underlined
    tables = rules.tables()                # live contents; tables.replace("name", data)
    env = Env(method="GET", url="/simple/x/", req_headers={...}, tables=tables.current)
    outcome = rules.run("recv", env)       # Outcome | None; env.edits, env.log_lines, ...
"""

from __future__ import annotations

from pkgedge.rules.compiler import (
    DEFAULT_MAX_RESTARTS,
    Rules,
    Runner,
    compile_rules,
    default_source,
)
from pkgedge.rules.env import Env, Kind, Limiter, Outcome
from pkgedge.rules.errors import Diagnostic, RulesError, RulesRuntimeError, Span, TableError
from pkgedge.rules.exprs import MAX_STRING
from pkgedge.rules.tables import Acl, Tables
from pkgedge.rules.variables import PHASES

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "MAX_STRING",
    "PHASES",
    "Acl",
    "Diagnostic",
    "Env",
    "Kind",
    "Limiter",
    "Outcome",
    "Rules",
    "RulesError",
    "RulesRuntimeError",
    "Runner",
    "Span",
    "TableError",
    "Tables",
    "compile_default",
    "compile_rules",
    "default_source",
]


def compile_default() -> Rules:
    """The built-in default configuration, compiled."""
    return compile_rules(default_source(), name="default.vcl")
