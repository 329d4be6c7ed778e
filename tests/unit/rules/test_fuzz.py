"""Any text given to the compiler yields a configuration or a RulesError, never another
exception (a traceback)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.rules import RulesError, compile_rules

_WORDS = [
    "sub", "recv", "fetch", "deliver", "hit", "if", "elif", "else", "set", "append", "unset",
    "return", "(", ")", "{", "}", ";", "pass", "lookup", "error", "synthetic", "redirect",
    "block", "ratelimit", "per", "restart", "add", "surrogate_key", "log", "hash_data",
    "table", "acl", "with", "=", "==", "!=", "~", "!~", "<", ">=", "in", "&&", "||", "!", "+",
    "??", "[", "]", ",", ":", "req.url", "req.http.x", "resp.http.y", "beresp.ttl",
    "client.ip", "obj.ttl", '"a"', '"(a+)+"', '"["', '"10.0.0.0/8"', "5m", "0s", "200", "301",
    "99999999999999999999", "t", "a", "lower", "regsub", "defined", "true", "false", "{\"x\"}",
    "# c\n", "\n", " ",
]  # fmt: skip


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=200))
def test_random_text_compiles_or_is_a_rules_error(text: str) -> None:
    try:
        compile_rules(text)
    except RulesError as exc:
        assert str(exc)


@settings(max_examples=600, deadline=None, database=None)
@given(st.lists(st.sampled_from(_WORDS), max_size=60))
def test_random_token_soup_compiles_or_is_a_rules_error(words: list[str]) -> None:
    text = " ".join(words)
    for src in (
        text,
        f"table t {{ }}\nsub recv {{ {text} }}",
        f"sub fetch {{ if ({text}) {{ }} }}",
    ):
        try:
            compile_rules(src)
        except RulesError as exc:
            assert exc.line >= 1 and exc.column >= 1
