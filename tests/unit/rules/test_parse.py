"""The grammar: what parses into which tree, and syntax errors with their position."""

from __future__ import annotations

import pytest

from pkgedge.rules import RulesError, compile_rules
from pkgedge.rules import nodes as n
from pkgedge.rules.parse import MAX_DEPTH, MAX_SOURCE, parse

EXAMPLE = """\
table renamed { "old-name": "new-name" }
acl blocked { "192.0.2.0/24"; "2001:db8::/32"; }
sub recv {
  if (client.ip in blocked) { block "address blocked by this index"; }
  if (req.path ~ "^/simple/old-name/") { redirect 301 "/simple/" + renamed["old-name"] + "/"; }
  if (req.http.user-agent ~ "(?i)badbot") { ratelimit "bots" 10 per 1s; }
}
sub fetch { if (req.path ~ "^/simple/") { set beresp.ttl = 5m; add surrogate_key "index"; } }
sub deliver { if (req.path ~ "^/simple/six/") { set resp.http.x-note = "hello"; } }
"""


def only_stmt(src: str) -> n.Stmt:
    parsed = parse(f"sub recv {{ {src} }}")
    assert parsed.diagnostics == []
    sub = parsed.decls[0]
    assert isinstance(sub, n.Sub) and len(sub.body) == 1
    return sub.body[0]


def cond(expr: str) -> n.Expr:
    stmt = only_stmt(f"if ({expr}) {{}}")
    assert isinstance(stmt, n.If)
    return stmt.branches[0][0]


def test_the_issue_example_parses_and_compiles() -> None:
    parsed = parse(EXAMPLE)
    assert parsed.diagnostics == []
    kinds = [type(d).__name__ for d in parsed.decls]
    assert kinds == ["TableDecl", "AclDecl", "Sub", "Sub", "Sub"]
    rules = compile_rules(EXAMPLE)
    assert [p for p, r in rules.runners.items() if r] == ["recv", "fetch", "deliver"]
    assert rules.declared == {"renamed": "table", "blocked": "acl"}


def test_positions_are_one_based_with_exclusive_ends() -> None:
    parsed = parse(EXAMPLE)
    recv = parsed.decls[2]
    assert isinstance(recv, n.Sub)
    assert (recv.name_span.line, recv.name_span.column, recv.name_span.end_column) == (3, 5, 9)
    first = recv.body[0]
    assert isinstance(first, n.If)
    ip = first.branches[0][0]
    assert isinstance(ip, n.In) and ip.left is not None
    assert (ip.left.span.line, ip.left.span.column, ip.left.span.end_column) == (4, 7, 16)


def test_precedence_or_and_not_compare() -> None:
    e = cond('!a || b && c == "x"')
    assert isinstance(e, n.NAry) and e.op == "||"
    left, right = e.items
    assert isinstance(left, n.Not)
    assert isinstance(right, n.NAry) and right.op == "&&"
    assert isinstance(right.items[1], n.Binary) and right.items[1].op == "=="


def test_concatenation_is_one_flat_node() -> None:
    stmt = only_stmt('log "a" + "b" + "c" + "d";')
    assert isinstance(stmt, n.Action)
    cat = stmt.args[0]
    assert isinstance(cat, n.NAry) and cat.op == "+" and len(cat.items) == 4


def test_coalesce_index_and_call() -> None:
    e = cond('t[lower(req.url)] ?? "x" == "y"')
    assert isinstance(e, n.Binary) and e.op == "=="
    co = e.left
    assert isinstance(co, n.Binary) and co.op == "??"
    assert isinstance(co.left, n.Index) and co.left.table == "t"
    assert isinstance(co.left.key, n.Call) and co.left.key.name == "lower"


@pytest.mark.parametrize("word", ["elif", "elsif", "elseif", "else if"])
def test_elif_spellings(word: str) -> None:
    stmt = only_stmt(f'if (a) {{ }} {word} (b) {{ }} else {{ log "c"; }}')
    assert isinstance(stmt, n.If)
    if word == "else if":  # an if nested in the else
        assert stmt.orelse is not None and isinstance(stmt.orelse[0], n.If)
    else:
        assert len(stmt.branches) == 2 and stmt.orelse is not None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1w", 604800),
     ("1y", 31536000), ("1.5m", 90)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    stmt = only_stmt(f'ratelimit "r" 1 per {text};')
    assert isinstance(stmt, n.RateLimit) and stmt.per is not None
    assert stmt.per.seconds == pytest.approx(seconds)


def test_strings_escape_only_quotes_and_long_strings_are_raw() -> None:
    stmt = only_stmt(r'log "a\"b\d\\";')
    assert isinstance(stmt, n.Action) and isinstance(stmt.args[0], n.Str)
    assert stmt.args[0].value == 'a"b\\d\\\\'
    stmt = only_stmt('log {"say "hi"\nthere"};')
    assert isinstance(stmt, n.Action) and isinstance(stmt.args[0], n.Str)
    assert stmt.args[0].value == 'say "hi"\nthere'


def test_comments_of_three_kinds() -> None:
    src = '# one\nsub recv { // two\n /* three\n lines */ log "x"; }\n'
    parsed = parse(src)
    assert parsed.diagnostics == []


def test_header_names_with_dashes_are_one_name() -> None:
    e = cond('req.http.x-forwarded-for == "1"')
    assert isinstance(e, n.Binary) and isinstance(e.left, n.Var)
    assert e.left.name == "req.http.x-forwarded-for"


@pytest.mark.parametrize(
    ("src", "line", "column", "needle"),
    [
        ("sub recv { set x = ; }", 1, 20, "unexpected ';'"),
        ('sub recv {\n  log "a"\n}', 3, 1, "unexpected '}'; expected"),
        ("sub recv {", 1, 10, "unexpected end of input"),
        ("sub recv { log $; }", 1, 16, "unexpected character '$'"),
        # no loops: "while" is no keyword, and a call can't take a block
        ("sub recv { while (true) { } }", 1, 25, "unexpected '{'"),
    ],
)
def test_syntax_errors_have_positions(src: str, line: int, column: int, needle: str) -> None:
    with pytest.raises(RulesError) as info:
        compile_rules(src)
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert needle in err.message
    assert needle in str(err)


def test_source_size_is_capped() -> None:
    with pytest.raises(RulesError, match="longer than"):
        compile_rules(" " * (MAX_SOURCE + 1))


@pytest.mark.parametrize(
    "src",
    [
        "sub recv { if (" + "!" * 5000 + "true) { } }",
        "sub recv { " + "if (true) { " * 500 + "}" * 500 + " }",
    ],
)
def test_nesting_depth_is_capped_not_a_recursion_error(src: str) -> None:
    with pytest.raises(RulesError, match=f"nested more than {MAX_DEPTH} levels"):
        compile_rules(src)


def test_parentheses_do_not_nest_the_tree() -> None:
    compile_rules("sub recv { if (" + "(" * 500 + "true" + ")" * 500 + ") { } }")


def test_huge_numbers_are_rejected() -> None:
    with pytest.raises(RulesError, match="longer than 15 digits") as info:
        compile_rules("sub recv { error " + "9" * 5000 + "; }")
    assert info.value.column == 18
