"""Bounded work: no loops in the language, capped strings and restarts, and a rule that
fails at run time raises RulesRuntimeError and nothing else."""

from __future__ import annotations

import pytest

from pkgedge.rules import MAX_STRING, Env, RulesError, RulesRuntimeError, compile_rules
from pkgedge.rules.parse import _parser


def test_the_grammar_has_no_loop_or_import_keywords() -> None:
    words = {t.pattern.value for t in _parser().terminals if t.pattern.type == "str"}
    assert not words & {"while", "for", "loop", "goto", "import", "include", "call", "eval"}


@pytest.mark.parametrize(
    "src",
    [
        'sub recv { while (true) { log "x"; } }',
        "sub recv { for (;;) { } }",
        "import std;\nsub recv { }",
        'include "other.vcl";',
        "sub recv { call recv; }",
    ],
)
def test_loops_imports_and_calls_do_not_compile(src: str) -> None:
    with pytest.raises(RulesError):
        compile_rules(src)


def test_concatenation_is_capped() -> None:
    rules = compile_rules("sub recv {\n  set req.http.x = req.http.a + req.http.a;\n}")
    half = "a" * (MAX_STRING // 2)
    rules.run("recv", Env(req_headers={"a": half}))  # exactly the cap: fine
    with pytest.raises(RulesRuntimeError, match="string longer than") as info:
        rules.run("recv", Env(req_headers={"a": half + "a"}))
    assert info.value.line == 2


def test_many_part_concatenation_and_append_are_capped() -> None:
    rules = compile_rules('sub recv { log req.http.a + "-" + req.http.a + "-" + req.http.a; }')
    with pytest.raises(RulesRuntimeError):
        rules.run("recv", Env(req_headers={"a": "b" * (MAX_STRING // 2)}))
    rules = compile_rules("sub deliver { append resp.http.x = resp.http.x; }")
    with pytest.raises(RulesRuntimeError):
        rules.run("deliver", Env(resp_headers={"x": "y" * (MAX_STRING - 1)}))


def test_regsuball_stops_early_on_explosive_output() -> None:
    rules = compile_rules('sub recv { log regsuball(req.http.a, "", "xxxxxxxxxxxxxxxx"); }')
    with pytest.raises(RulesRuntimeError, match="string longer than"):
        rules.run("recv", Env(req_headers={"a": "a" * 60000}))


def test_case_change_that_grows_is_capped() -> None:
    rules = compile_rules("sub recv { log upper(req.http.a); }")
    with pytest.raises(RulesRuntimeError):
        rules.run("recv", Env(req_headers={"a": "ß" * (MAX_STRING // 2 + 1)}))


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\0b"])
def test_header_injection_is_a_runtime_error(value: str) -> None:
    rules = compile_rules("sub deliver { set resp.http.x = req.http.a; }")
    with pytest.raises(RulesRuntimeError, match="line break or NUL"):
        rules.run("deliver", Env(req_headers={"a": value}))
    rules = compile_rules('sub recv { redirect 302 "/" + req.http.a; }')
    with pytest.raises(RulesRuntimeError):
        rules.run("recv", Env(req_headers={"a": value}))


@pytest.mark.parametrize("url", ["http://elsewhere/", "/a b", "relative"])
def test_url_rewrite_must_stay_a_path(url: str) -> None:
    rules = compile_rules("sub recv { set req.url = req.http.to; }")
    with pytest.raises(RulesRuntimeError, match="is not a path"):
        rules.run("recv", Env(req_headers={"to": url}))


def test_a_broken_env_is_still_only_a_runtime_error() -> None:
    rules = compile_rules('table t { }\nsub recv {\n  log "x";\n  if (req.url in t) { }\n}')
    env = Env(tables={})  # the caller forgot the tables
    with pytest.raises(RulesRuntimeError, match="sub recv: KeyError"):
        rules.run("recv", env)
    env = Env()
    env.req_headers = None  # type: ignore[assignment]
    rules = compile_rules("sub recv { log req.http.a; }")
    with pytest.raises(RulesRuntimeError, match="AttributeError"):
        rules.run("recv", env)


def test_resp_status_must_be_a_status() -> None:
    rules = compile_rules("sub deliver { set resp.status = resp.status + 1000; }")
    with pytest.raises(RulesRuntimeError, match="is not a status"):
        rules.run("deliver", Env(resp_status=200))
    rules = compile_rules("sub deliver { set resp.status = 404; }")
    env = Env(resp_status=200)
    rules.run("deliver", env)
    assert env.resp_status == 404
