"""The checker: every kind of mistake is a RulesError with line, column, message and the
source line underlined, before anything is compiled."""

from __future__ import annotations

import pytest

from pkgedge.rules import RulesError, compile_rules


def errors(src: str, **kw: object) -> RulesError:
    with pytest.raises(RulesError) as info:
        compile_rules(src, **kw)  # type: ignore[arg-type]
    return info.value


def one(src: str, **kw: object) -> tuple[int, int, str]:
    err = errors(src, **kw)
    assert len(err.diagnostics) == 1, str(err)
    return err.line, err.column, err.message


def test_str_shows_position_message_line_and_underline() -> None:
    src = 'sub recv {\n    if (req.hdr.x == "a") { }\n}\n'
    err = errors(src, name="mine.vcl")
    assert str(err) == (
        "mine.vcl:2:9: error: unknown variable 'req.hdr.x' (did you mean req.http.x?)\n"
        '        if (req.hdr.x == "a") { }\n'
        "            ^~~~~~~~~"
    )


def test_several_errors_are_reported_at_once_in_order() -> None:
    src = 'sub recv {\n  if (req.http.x) { set req.method = "x"; }\n  set beresp.ttl = 5m;\n}\n'
    err = errors(src)
    where = [(d.span.line, d.span.column) for d in err.diagnostics]
    assert where == [(2, 7), (2, 25), (3, 7)]
    text = str(err)
    assert "a condition must be bool, not string" in text
    assert "req.method is read-only" in text
    assert "beresp.ttl does not exist in sub recv (only in: fetch)" in text
    assert text.count("\n") == 3 * 3 - 1  # three blocks of three lines


@pytest.mark.parametrize(
    ("src", "line", "column", "message"),
    [
        ("sub recv { log beresp.http.x; }", 1, 16,
         "beresp.http.x does not exist in sub recv (only in: fetch)"),
        ("sub deliver { if (beresp.status == 200) { } }", 1, 19,
         "beresp.status does not exist in sub deliver (only in: fetch)"),
        ("sub fetch { if (resp.status == 200) { } }", 1, 17,
         "resp.status does not exist in sub fetch (only in: deliver, error, log)"),
        ("sub recv { if (cache.state == \"hit\") { } }", 1, 16,
         "cache.state does not exist in sub recv (only in: deliver, log)"),
        ("sub recv { if (obj.ttl > 0s) { } }", 1, 16,
         "obj.ttl does not exist in sub recv (only in: hit, deliver)"),
        ("sub fetch { set beresp.ttl = 300; }", 1, 30, "beresp.ttl must be duration, not int"),
        ("sub fetch { set beresp.status = 200; }", 1, 17, "beresp.status is read-only"),
        ("sub deliver { set req.http.x = \"1\"; }", 1, 19,
         "req.http.x can be set only in: recv, hash, miss, pass"),
        ("sub deliver { set resp.http.Content-Length = \"1\"; }", 1, 19,
         "content-length is managed by the edge"),
        ("sub recv { if (req.url == 3) { } }", 1, 16, "cannot compare string with int"),
        ("sub recv { if (req.url < \"b\") { } }", 1, 16,
         "< compares ints or durations, not strings"),
        ("sub recv { if (req.restarts + 1s > 0s) { } }", 1, 16,
         "cannot add an int and a duration"),
        ("sub recv { if (req.url ~ \"(\") { } }", 1, 26,
         "invalid regex: missing ), unterminated subpattern at position 0"),
        ("sub recv { if (req.url ~ req.path) { } }", 1, 26,
         "a regex must be a string literal (it is compiled once)"),
        ("sub recv { if (req.url in nope) { } }", 1, 27, "unknown table or acl 'nope'"),
        ("sub recv { log nope[req.url]; }", 1, 16, "unknown table 'nope'"),
        ("acl a { \"10.0.0.0/8\"; }\nsub recv { log a[req.url]; }", 2, 16,
         "a is an acl: use ip in a"),
        ("table t { }\nsub recv { log t; }", 2, 16, "t is a table: use t[key] or key in t"),
        ("sub recv { log lowr(req.url); }", 1, 16,
         "unknown function 'lowr' (did you mean lower?)"),
        ("sub recv { log lower(req.url, 1); }", 1, 16, "lower() takes 1 argument(s), not 2"),
        ("sub recv { if (defined(req.url)) { } }", 1, 16,
         "defined(...) takes one header, e.g. defined(req.http.cookie)"),
        ("sub recv { log regsub(req.url, \"(a)\", \"\\2\"); }", 1, 39,
         "invalid replacement: invalid group reference 2 at position 1"),
        ("sub recv { log req.url ?? \"x\"; }", 1, 16, "?? follows a table look-up or a header"),
        ("sub recv { if (client.ua_class == \"robot\") { } }", 1, 35,
         "client.ua_class is never 'robot'"),
        ("sub recv { return(deliver); }", 1, 19,
         "return(deliver) is not allowed in sub recv (allowed: lookup, pass)"),
        ("sub recv { return(jump); }", 1, 19, "unknown action 'jump'"),
        ("sub recv { restart; }", 1, 12,
         "restart is not allowed in sub recv (only in: fetch, deliver, error)"),
        ("sub deliver { error 503; }", 1, 15,
         "error is not allowed in sub deliver (only in: recv, hash, hit, miss, pass, fetch)"),
        ("sub recv { error 200; }", 1, 18, "error's status must be 400-599"),
        ("sub recv { redirect 305 \"/x\"; }", 1, 21,
         "a redirect's status is 301, 302, 303, 307 or 308"),
        ("sub recv { ratelimit \"r\" 0 per 1s; }", 1, 26, "a rate limit allows at least 1 request"),
        ("sub recv { ratelimit \"r\" 1 per 0s; }", 1, 32,
         "a rate limit's period must be longer than 0s"),
        ("sub deliver { ratelimit \"r\" 1 per 1s; }", 1, 15,
         "ratelimit is not allowed in sub deliver (only in: recv, miss, pass)"),
        ("sub recv { add tag \"x\"; }", 1, 16, "add takes surrogate_key, not 'tag'"),
        ("sub recv { add surrogate_key \"x\"; }", 1, 12,
         "add is not allowed in sub recv (only in: fetch)"),
        ("sub recv { hash_data(req.url); }", 1, 12,
         "hash_data is not allowed in sub recv (only in: hash)"),
        ("sub recv { lower(req.url); }", 1, 12, "a function's result must be used"),
        ("sub recv { append req.url = \"x\"; }", 1, 19,
         "append works on headers only (req.http.NAME, ...)"),
        ("sub recv { synthetic 200 \"x\" with host = \"h\"; }", 1, 35,
         "'host' is not a header a rule may set"),
        ("sub recv { if (!req.url) { } }", 1, 17, "the operand of ! must be bool, not string"),
        ("sub recv { log \"a\" + true; }", 1, 22, "a bool cannot be added or concatenated"),
        ("sub recv { if (true && req.url) { } }", 1, 24,
         "the operands of && must be bool, not string"),
        ("sub nope { }", 1, 5, "unknown sub 'nope'"),
        ("sub recv { }\nsub recv { }", 2, 5, "sub recv is defined twice"),
        ("table t { }\nacl t { }", 2, 5, "'t' is declared twice"),
        ("table t { \"a\": \"1\", \"a\": \"2\" }", 1, 21, "table t: key 'a' appears twice"),
        ("acl a { \"10.0.0.300/8\"; }", 1, 9, "acl a: not a network"),
        ("sub recv { set req.backend = \"b2\"; }", 1, 30, "unknown backend 'b2' (known: b1)"),
    ],
)  # fmt: skip
def test_mistakes(src: str, line: int, column: int, message: str) -> None:
    got_line, got_column, got = one(src, backends=["b1"])
    assert message in got
    assert (got_line, got_column) == (line, column)


def test_risky_regex_is_rejected_at_its_literal() -> None:
    err = errors('sub recv {\n  if (req.path ~ "^(/[a-z]+)+$") { }\n}')
    assert (err.line, err.column) == (2, 18)
    assert "nests unbounded repetition" in err.message
    assert str(err).endswith("\n" + " " * 21 + "^" + "~" * 13)


def test_errors_are_listed_in_source_order() -> None:
    err = errors('sub recv { log t["a"]; }\ntable t { "a": "1", "a": "2" }')
    assert [d.span.line for d in err.diagnostics] == [2]  # the table is fine apart from that
    err = errors('sub recv { log nope; }\nacl a { "x"; }')
    assert [(d.span.line, d.span.column) for d in err.diagnostics] == [(1, 16), (2, 9)]


def test_one_mistake_is_reported_once() -> None:
    """An unknown variable makes its comparison untyped, not a second error."""
    err = errors('sub recv { if (nope == "x" && nope2 == 3) { } }')
    assert [d.message.split(" (")[0] for d in err.diagnostics] == [
        "unknown variable 'nope'",
        "unknown variable 'nope2'",
    ]


def test_header_names_are_case_insensitive() -> None:
    rules = compile_rules("sub deliver { set resp.http.X-Note = req.http.User-Agent; }")
    assert rules.runners["deliver"] is not None
