"""Source text → syntax tree (:mod:`pkgedge.rules.nodes`), with lark's LALR(1) parser.

The grammar is ``grammar.lark`` beside this module. Parse errors and limits (source size,
nesting depth, number size) become :class:`~pkgedge.rules.errors.Diagnostic` s; nothing here
raises anything else for any input text.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from pkgedge.rules import nodes as n
from pkgedge.rules.errors import Diagnostic, Span

__all__ = ["MAX_DEPTH", "MAX_SOURCE", "Parsed", "parse"]

#: Largest configuration accepted, in characters.
MAX_SOURCE = 1 << 20
#: Deepest nesting of expressions and blocks (keeps every later pass's recursion shallow).
MAX_DEPTH = 48
_MAX_DIGITS = 15

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNITS["y"] = 365 * 86400.0
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]+)")
_ESCAPE = re.compile(r"\\(.)")
_WORDS = {
    "NAME": "a name",
    "STRING": "a string",
    "LONGSTRING": "a string",
    "INT": "a number",
    "DURATION": "a duration (e.g. 5m)",
    "CMP_OP": "a comparison",
    "$END": "end of input",
}


@functools.cache
def _parser() -> Lark:
    text = resources.files(__package__).joinpath("grammar.lark").read_text("utf-8")
    return Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)


class Parsed:
    """The declarations of a configuration, and the diagnostics found while building them."""

    __slots__ = ("decls", "diagnostics", "lines", "name")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.lines = source.split("\n")
        self.decls: list[n.Decl] = []
        self.diagnostics: list[Diagnostic] = []

    def error(self, span: Span, message: str) -> None:
        idx = min(max(span.line, 1), len(self.lines)) - 1
        self.diagnostics.append(Diagnostic(self.name, span, message, self.lines[idx]))


def parse(source: str, name: str = "<rules>") -> Parsed:
    """Parse ``source``; look at ``Parsed.diagnostics`` before using ``Parsed.decls``."""
    out = Parsed(name, source)
    if len(source) > MAX_SOURCE:
        out.error(Span(1, 1, 1, 2), f"configuration longer than {MAX_SOURCE} characters")
        return out
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as exc:
        out.error(_where(exc, out), _describe(exc))
        return out
    except LarkError as exc:  # pragma: no cover - lark's other errors are grammar bugs
        out.error(Span(1, 1, 1, 2), f"cannot parse: {exc}")
        return out
    deep = _too_deep(tree)
    if deep is not None:
        out.error(deep, f"nested more than {MAX_DEPTH} levels deep")
        return out
    _Builder(out).start(tree)
    return out


# -- errors ---------------------------------------------------------------------------------
def _where(exc: UnexpectedInput, out: Parsed) -> Span:
    line, col = getattr(exc, "line", -1), getattr(exc, "column", -1)
    if not isinstance(line, int) or line < 1:  # end of input
        line = len(out.lines)
        col = len(out.lines[-1]) + 1
    width = 1
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        width = max(len(str(exc.token).split("\n")[0]), 1)
    return Span(line, col, line, col + width)


def _describe(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"unexpected character {exc.char!r}"
    expected: set[str] = set(getattr(exc, "expected", None) or ())
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        what = "end of input" if tok.type == "$END" else repr(str(tok)[:40])
        head = f"unexpected {what}"
    else:
        head = "unexpected end of input"
    words = sorted({_word(t) for t in expected})
    if not words:
        return head
    more = f" (and {len(words) - 8} more)" if len(words) > 8 else ""
    return f"{head}; expected {', '.join(words[:8])}{more}"


def _word(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    try:
        pattern = _parser().get_terminal(terminal).pattern
    except KeyError:  # pragma: no cover
        return terminal.lower()
    if pattern.type == "str":
        return f"'{pattern.value}'"
    return terminal.lower()  # pragma: no cover - every regex terminal is in _WORDS


def _too_deep(tree: Tree[Token]) -> Span | None:
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return _span(node)
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return None


def _span(node: Tree[Token] | Token) -> Span:
    if isinstance(node, Token):
        return Span(node.line or 1, node.column or 1, node.end_line or 1, node.end_column or 2)
    m = node.meta
    if m.empty:
        return Span(1, 1, 1, 2)
    return Span(m.line, m.column, m.end_line, m.end_column)


# -- tree → nodes ---------------------------------------------------------------------------
class _Builder:
    def __init__(self, out: Parsed) -> None:
        self.out = out

    def start(self, tree: Tree[Token]) -> None:
        for d in tree.children:
            assert isinstance(d, Tree)
            self.out.decls.append(self.decl(d))

    def decl(self, t: Tree[Token]) -> n.Decl:
        name = t.children[0]
        assert isinstance(name, Token)
        rest = [c for c in t.children[1:] if c is not None]
        if t.data == "table_decl":
            pairs = []
            for p in rest:
                assert isinstance(p, Tree)
                k, v = (self.string(c) for c in p.children)
                pairs.append((k, v))
            return n.TableDecl(_span(t), str(name), _span(name), pairs)
        if t.data == "acl_decl":
            return n.AclDecl(_span(t), str(name), _span(name), [self.string(c) for c in rest])
        body = rest[0]
        assert isinstance(body, Tree)
        return n.Sub(_span(t), str(name), _span(name), self.block(body))

    def string(self, t: Tree[Token] | Token | None) -> n.Str:
        assert isinstance(t, Tree)
        tok = t.children[0]
        assert isinstance(tok, Token)
        raw = str(tok)
        if tok.type == "LONGSTRING":
            value = raw[2:-2]
        else:
            value = _ESCAPE.sub(lambda m: '"' if m.group(1) == '"' else m.group(0), raw[1:-1])
        return n.Str(_span(tok), value)

    def block(self, t: Tree[Token]) -> list[n.Stmt]:
        return [self.stmt(c) for c in t.children if isinstance(c, Tree)]

    def stmt(self, t: Tree[Token]) -> n.Stmt:
        sp, c = _span(t), t.children
        kind = t.data
        if kind in ("set_stmt", "append_stmt"):
            target = c[0]
            assert isinstance(target, Token)
            op = "set" if kind == "set_stmt" else "append"
            return n.Assign(sp, op, str(target), _span(target), self.expr(c[1]))
        if kind == "unset_stmt":
            assert isinstance(c[0], Token)
            return n.Unset(sp, str(c[0]), _span(c[0]))
        if kind == "return_stmt":
            assert isinstance(c[0], Token)
            return n.Return(sp, str(c[0]), _span(c[0]))
        if kind == "status_stmt":
            kw, status = c[0], c[1]
            assert isinstance(kw, Token) and isinstance(status, Token)
            args = [self.expr(c[2])] if c[2] is not None else []
            headers = []
            if len(c) > 3 and isinstance(c[3], Tree):
                for h in c[3].children:
                    assert isinstance(h, Tree) and isinstance(h.children[0], Token)
                    hname = h.children[0]
                    headers.append((str(hname), _span(hname), self.expr(h.children[1])))
            return n.Action(sp, str(kw), self.int_(status), args, headers)
        if kind == "plain_stmt":
            assert isinstance(c[0], Token)
            args = [self.expr(c[1])] if c[1] is not None else []
            return n.Action(sp, str(c[0]), None, args)
        if kind == "add_stmt":
            assert isinstance(c[0], Token)
            return n.Action(
                sp, "add", None, [self.expr(c[1])], what=str(c[0]), what_span=_span(c[0])
            )
        if kind == "ratelimit_stmt":
            count, per = c[1], c[2]
            assert isinstance(count, Token) and isinstance(per, Token)
            return n.RateLimit(sp, self.string(c[0]), self.int_(count), self.dur(per))
        if kind == "call_stmt":
            assert isinstance(c[0], Token)
            return n.CallStmt(sp, str(c[0]), _span(c[0]), self.args(c[1]))
        assert kind == "if_stmt", kind
        return self.if_(t)

    def if_(self, t: Tree[Token]) -> n.If:
        c = t.children
        assert isinstance(c[1], Tree)
        branches = [(self.expr(c[0]), self.block(c[1]))]
        orelse: list[n.Stmt] | None = None
        for part in c[2:]:
            if part is None:
                continue
            assert isinstance(part, Tree)
            if part.data == "elif_part":
                assert isinstance(part.children[1], Tree)
                branches.append((self.expr(part.children[0]), self.block(part.children[1])))
            else:
                inner = part.children[0]
                assert isinstance(inner, Tree)
                orelse = self.block(inner) if inner.data == "block" else [self.if_(inner)]
        return n.If(_span(t), branches, orelse)

    def args(self, t: Tree[Token] | Token | None) -> list[n.Expr]:
        if t is None:
            return []
        assert isinstance(t, Tree)
        return [self.expr(a) for a in t.children]

    def int_(self, tok: Token) -> n.Int:
        if len(tok) > _MAX_DIGITS:
            self.out.error(_span(tok), f"number longer than {_MAX_DIGITS} digits")
            return n.Int(_span(tok), 0)
        return n.Int(_span(tok), int(tok))

    def dur(self, tok: Token) -> n.Dur:
        m = _DURATION.fullmatch(str(tok))
        assert m is not None
        if len(m.group(1)) > _MAX_DIGITS:
            self.out.error(_span(tok), f"number longer than {_MAX_DIGITS} digits")
            return n.Dur(_span(tok), 0.0)
        return n.Dur(_span(tok), float(m.group(1)) * _UNITS[m.group(2)])

    def expr(self, t: Tree[Token] | Token | None) -> n.Expr:
        assert isinstance(t, Tree), t
        sp, c, kind = _span(t), t.children, t.data
        if kind in ("or_expr", "and_expr", "sum"):
            op = {"or_expr": "||", "and_expr": "&&", "sum": "+"}[str(kind)]
            return n.NAry(sp, op, [self.expr(x) for x in c])
        if kind == "not_":
            return n.Not(sp, self.expr(c[0]))
        if kind == "compare":
            return n.Binary(sp, str(c[1]), self.expr(c[0]), self.expr(c[2]))
        if kind == "coalesce":
            return n.Binary(sp, "??", self.expr(c[0]), self.expr(c[1]))
        if kind == "in_":
            assert isinstance(c[1], Token)
            return n.In(sp, self.expr(c[0]), str(c[1]), _span(c[1]))
        if kind == "str_":
            return self.string(c[0])
        tok = c[0]
        assert isinstance(tok, Token)
        if kind == "int_":
            return self.int_(tok)
        if kind == "dur":
            return self.dur(tok)
        if kind == "bool_":
            return n.Bool(sp, tok.type == "TRUE")
        if kind == "var":
            return n.Var(sp, str(tok))
        if kind == "index":
            return n.Index(sp, str(tok), _span(tok), self.expr(c[1]))
        assert kind == "call", kind
        return n.Call(sp, str(tok), self.args(c[1]))
