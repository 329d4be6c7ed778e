"""The built-in default configuration: it compiles, is package data, and does what the edge
does by default for the requests it can decide."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib import resources
from pathlib import Path

import pytest

from pkgedge.edge.ruleset import Ruleset
from pkgedge.rules import PHASES, Env, Kind, compile_default, compile_rules, default_source
from pkgedge.rules.variables import UA_CLASSES, table
from pkgedge.security.useragent import KINDS


def test_default_is_package_data_and_compiles() -> None:
    text = resources.files("pkgedge.rules").joinpath("default.vcl").read_text()
    assert text == default_source()
    rules = compile_default()
    assert rules.name == "default.vcl"
    assert rules.declared == {}
    # only recv decides something; hash only returns its default (no sub) and the other subs
    # are comments: no work per request
    assert [p for p, r in rules.runners.items() if r is not None] == ["recv"]


def test_every_sub_of_the_default_explains_itself() -> None:
    src = default_source()
    for phase in PHASES:
        start = src.index(f"sub {phase} {{")
        assert "#" in src[start : src.index("\n}", start)], phase


@pytest.mark.parametrize(
    ("method", "kind"),
    [("GET", Kind.LOOKUP), ("HEAD", Kind.LOOKUP), ("POST", Kind.PASS), ("PUT", Kind.PASS),
     ("DELETE", Kind.PASS), ("OPTIONS", Kind.PASS)],
)  # fmt: skip
def test_recv_looks_up_get_and_head_and_passes_the_rest(method: str, kind: Kind) -> None:
    out = compile_default().run("recv", Env(method=method, url="/simple/six/"))
    assert out is not None and out.kind is kind


def test_hash_looks_up_and_adds_nothing_to_the_key() -> None:
    env = Env(url="/simple/six/", req_headers={"accept": "application/vnd.pypi.simple.v1+json"})
    # a sub that only returns its phase's default is compiled to no sub: nothing runs
    assert compile_default().run("hash", env) is None
    assert env.hash_parts == []


def test_a_sub_with_more_than_its_default_return_runs() -> None:
    rules = compile_rules("sub hash { hash_data(req.http.x); return(lookup); }")
    env = Env(url="/simple/six/", req_headers={"x": "1"})
    out = rules.run("hash", env)
    assert out is not None and out.kind is Kind.LOOKUP and env.hash_parts == ["1"]


@pytest.mark.parametrize("phase", ["hit", "miss", "pass", "fetch", "deliver", "error", "log"])
def test_the_other_phases_keep_their_defaults(phase: str) -> None:
    env = Env(url="/simple/six/", beresp_status=200, beresp_ttl=600.0, resp_status=200)
    assert compile_default().run(phase, env) is None
    assert (env.edits, env.overrides, env.surrogate_keys, env.log_lines) == ([], {}, [], [])


def test_ua_classes_are_the_user_agent_classifiers_kinds() -> None:
    assert UA_CLASSES == KINDS


def test_the_variables_table_in_the_docs_is_current() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"
    assert table() in docs.read_text()


def test_the_benchmarks_typical_rules_compile_and_do_what_they_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = Path(__file__).resolve().parents[3] / "bench" / "rules_cost.py"
    monkeypatch.syspath_prepend(str(path.parent))  # it imports bench/_common.py
    spec = importlib.util.spec_from_file_location("rules_cost", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rules_cost", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    typical = compile_rules(bench.TYPICAL)
    n_rules = sum(1 for line in bench.TYPICAL.splitlines() if re.search(r"# \d+$", line))
    assert n_rules == 20
    bench.check(typical)  # asserts on the headers and backend it sets
    # the end-to-end cases: B (as written) and D (rule 19 alone) run their deliver sub live on
    # every fast-path replay (rule 19 reads obj.age); C (rule 19 replaced) and the default
    # fold it into the memo
    assert bench.RULE_19 in bench.TYPICAL and bench.RULE_19_C in bench.TYPICAL_C
    assert bench.TYPICAL_C.replace(bench.RULE_19_C, bench.RULE_19) == bench.TYPICAL
    for rs in (Ruleset(typical), Ruleset(compile_rules(bench.ONLY_19))):
        assert rs.fast and rs.live_deliver
    for rs in (Ruleset(compile_rules(bench.TYPICAL_C)), Ruleset.default()):
        assert rs.fast and not rs.live_deliver
