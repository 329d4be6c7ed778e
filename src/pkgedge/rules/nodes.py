"""The typed syntax tree: what the parser builds, the checker annotates (``Expr.type``) and
the compiler turns into closures. Every node knows its :class:`~pkgedge.rules.errors.Span`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pkgedge.rules.errors import Span


class T(enum.Enum):
    """The language's types."""

    STRING = "string"
    INT = "int"
    BOOL = "bool"
    DURATION = "duration"

    def __str__(self) -> str:
        return self.value


# -- expressions ----------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Expr:
    span: Span
    type: T | None = field(default=None, init=False)  # set by the checker


@dataclass(slots=True, eq=False)
class Str(Expr):
    value: str = ""


@dataclass(slots=True, eq=False)
class Int(Expr):
    value: int = 0


@dataclass(slots=True, eq=False)
class Dur(Expr):
    seconds: float = 0.0


@dataclass(slots=True, eq=False)
class Bool(Expr):
    value: bool = False


@dataclass(slots=True, eq=False)
class Var(Expr):
    name: str = ""  # dotted, as written (header names lower-cased by the checker)


@dataclass(slots=True, eq=False)
class Index(Expr):
    """``table[key]``: the table's value, or ``""`` (or the ``??`` default) when absent."""

    table: str = ""
    table_span: Span | None = None
    key: Expr | None = None


@dataclass(slots=True, eq=False)
class Call(Expr):
    name: str = ""
    args: list[Expr] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Not(Expr):
    operand: Expr | None = None


@dataclass(slots=True, eq=False)
class Binary(Expr):
    """``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~``, ``!~`` and ``??``."""

    op: str = ""
    left: Expr | None = None
    right: Expr | None = None


@dataclass(slots=True, eq=False)
class In(Expr):
    """``expr in NAME``: a key of a table, or an address in an ACL."""

    left: Expr | None = None
    name: str = ""
    name_span: Span | None = None


@dataclass(slots=True, eq=False)
class NAry(Expr):
    """``+``, ``&&``, ``||`` over two or more operands."""

    op: str = ""
    items: list[Expr] = field(default_factory=list)


# -- statements -----------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class Stmt:
    span: Span


@dataclass(slots=True, eq=False)
class Assign(Stmt):
    """``set`` and ``append``."""

    op: str = "set"
    target: str = ""
    target_span: Span | None = None
    value: Expr | None = None


@dataclass(slots=True, eq=False)
class Unset(Stmt):
    target: str = ""
    target_span: Span | None = None


@dataclass(slots=True, eq=False)
class If(Stmt):
    branches: list[tuple[Expr, list[Stmt]]] = field(default_factory=list)
    orelse: list[Stmt] | None = None


@dataclass(slots=True, eq=False)
class Return(Stmt):
    action: str = ""
    action_span: Span | None = None


@dataclass(slots=True, eq=False)
class Action(Stmt):
    """``error``, ``synthetic``, ``redirect``, ``block``, ``restart``, ``log``, ``add``: a
    keyword, an optional status, optional arguments and (synthetic) header expressions."""

    kind: str = ""
    status: Int | None = None
    args: list[Expr] = field(default_factory=list)
    headers: list[tuple[str, Span, Expr]] = field(default_factory=list)
    what: str = ""  # add: surrogate_key
    what_span: Span | None = None


@dataclass(slots=True, eq=False)
class RateLimit(Stmt):
    name: Str | None = None
    count: Int | None = None
    per: Dur | None = None


@dataclass(slots=True, eq=False)
class CallStmt(Stmt):
    name: str = ""
    name_span: Span | None = None
    args: list[Expr] = field(default_factory=list)


# -- declarations ---------------------------------------------------------------------------
@dataclass(slots=True, eq=False)
class TableDecl:
    span: Span
    name: str
    name_span: Span
    entries: list[tuple[Str, Str]]


@dataclass(slots=True, eq=False)
class AclDecl:
    span: Span
    name: str
    name_span: Span
    entries: list[Str]


@dataclass(slots=True, eq=False)
class Sub:
    span: Span
    name: str
    name_span: Span
    body: list[Stmt]


Decl = TableDecl | AclDecl | Sub
