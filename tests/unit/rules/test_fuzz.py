"""Any text given to the compiler yields a configuration or a RulesError, never another
exception (a traceback)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.rules import Env, Outcome, RulesError, RulesRuntimeError, compile_rules

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
def test_random_token_soup_compiles_and_runs_or_is_a_rules_error(words: list[str]) -> None:
    text = " ".join(words)
    for src in (
        text,
        f"table t {{ }}\nsub recv {{ {text} }}",
        f"sub fetch {{ if ({text}) {{ }} }}",
    ):
        try:
            rules = compile_rules(src)
        except RulesError as exc:
            assert exc.line >= 1 and exc.column >= 1
            continue
        # what compiles also runs: an Outcome, None, or RulesRuntimeError
        for runner in rules.runners.values():
            if runner is None:
                continue
            env = Env(req_headers={"x": "1"}, tables=rules.tables().current, trace=True)
            try:
                out = runner(env)
            except RulesRuntimeError:
                continue
            assert out is None or isinstance(out, Outcome)


_CONDS = st.sampled_from(
    ['req.url ~ "^/a"', "client.ip in a", 'req.http.x == "1"', "defined(req.http.y)",
     "len(req.url) > 3", "true", 'regsuball(req.url, "a", "bb") != ""', 't[req.url] ?? "" == ""']
)  # fmt: skip
_ACTIONS = st.sampled_from(
    ['set req.http.z = req.url + "x";', 'log req.http.x ?? "d";', "return(pass);",
     'error 503 "x";', "unset req.http.x;", 'ratelimit "r" 1 per 1s;',
     'set req.url = "/" + lower(req.http.x);', 'append req.http.v = req.http.z;',
     'synthetic 200 "b" with x-a = req.url;', 'block "b";']
)  # fmt: skip
_BODIES = st.recursive(
    _ACTIONS,
    lambda inner: st.builds(
        lambda c, a, b, e: f"if ({c}) {{ {a} }} elif (!({c})) {{ {b} }} else {{ {e} }}",
        _CONDS,
        inner,
        inner,
        inner,
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(_BODIES, min_size=1, max_size=6), st.sampled_from(["/a", "/ab/c", "/x?q"]))
def test_well_typed_rules_compile_and_run(bodies: list[str], url: str) -> None:
    src = 'table t { "/a": "1" }\nacl a { "10.0.0.0/8"; }\nsub recv { ' + " ".join(bodies) + " }"
    rules = compile_rules(src)
    env = Env(url=url, client_ip="10.1.1.1", req_headers={"x": "A"}, tables=rules.tables().current)
    try:
        out = rules.run("recv", env)
    except RulesRuntimeError:
        return
    assert out is None or isinstance(out, Outcome)
