"""The playground's engine: an isolated edge built from a draft, the built-in test origin,
assertions, and the document's checks (no sockets: the edge's real pipeline in process)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pkgedge.web.playground import asserts
from pkgedge.web.playground.doc import PlaygroundError, loads, parse_doc
from pkgedge.web.playground.engine import run_doc
from pkgedge.web.playground.origin import MAX_BYTES, MAX_WAIT_MS, parse_directives


def play(config: str, *requests: dict[str, Any], origin: str = "test") -> dict[str, Any]:
    doc = parse_doc({"config": config, "origin": origin, "requests": list(requests)})
    return asyncio.run(run_doc(doc))  # type: ignore[no-any-return]


# -- the test origin -------------------------------------------------------------------------
def test_origin_directives_combine() -> None:
    status, headers, body, wait = parse_directives("/status=203/cache=60/header=x-a:1/wait=20")
    assert status == 203 and wait == 0.02
    assert ("cache-control", "max-age=60") in headers and ("x-a", "1") in headers
    assert body == b"test origin: /status=203/cache=60/header=x-a:1/wait=20\n"


def test_origin_caps_waits_and_bodies() -> None:
    _, _, body, wait = parse_directives(f"/bytes={MAX_BYTES * 3}/wait=999999")
    assert len(body) == MAX_BYTES and wait == MAX_WAIT_MS / 1000
    assert len(parse_directives("/bytes=100")[2]) == 100


def test_origin_names_a_bad_directive() -> None:
    status, _, body, _ = parse_directives("/status=99x/header=nocolon")
    assert status == 400
    assert b"status=99x" in body and b"header=nocolon" in body


# -- assertions ------------------------------------------------------------------------------
FACTS: dict[str, Any] = {
    "client.status": 200,
    "client.header": {"cache-status": "pkgedge; hit; ttl=59", "x-a": "1"},
    "client.body": "hello",
    "origin.count": 0,
    "origin.status": 0,
    "origin.header": {},
    "origin.target": "",
    "cache.state": "hit",
    "trace": "hash:key(/a); hit:fresh(fresh)",
    "log": "",
}


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("client.status == 200", True),
        ("client.status != 200", False),
        ("client.status < 300", True),
        ("client.status >= 201", False),
        ('cache.state == "hit"', True),
        ("cache.state == miss", False),
        ("origin.count == 0", True),
        ('client.header["cache-status"] contains "hit"', True),
        ("client.header['X-A'] == 1", True),
        ("client.header[x-missing] == ''", True),
        ('client.body !contains "bye"', True),
        ('trace contains "hit:fresh"', True),
    ],
)
def test_assertions(text: str, ok: bool) -> None:
    result = asserts.check(text, FACTS)
    assert result["error"] == "" and result["ok"] is ok


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("client.stat == 200", "unknown subject"),
        ("client.header == 1", "needs a field name"),
        ("client.status = 200", "expected an operator"),
        ("client.status == 200 300", "one value"),
        ('cache.state < "hit"', "compares numbers"),
        ("__import__('os') == 1", "unknown subject"),
    ],
)
def test_assertions_that_do_not_parse_fail_with_the_reason(text: str, reason: str) -> None:
    result = asserts.check(text, FACTS)
    assert result["ok"] is False and reason in result["error"]


# -- the document ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "an object"),
        ({"config": 3}, "config must be a string"),
        ({"requests": [{"path": "nope"}]}, "requests[0].path must start with /"),
        ({"requests": [{"headers": {"bad name": "x"}}]}, "is not a field name"),
        ({"requests": [{"headers": {"x": "a\r\nb: c"}}]}, "CR, LF or NUL"),
        ({"requests": [{"client": "not-an-ip"}]}, "is not an IP address"),
        ({"origin": "elsewhere"}, "origin must be one of"),
        ({"requests": [{}] * 51}, "at most 50 requests"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_bad_documents_name_the_field(data: Any, reason: str) -> None:
    with pytest.raises(PlaygroundError, match=None) as info:
        parse_doc(data)
    assert reason in str(info.value)


def test_toml_documents() -> None:
    doc = loads(
        'config = "sub recv { }"\n[[requests]]\npath = "/cache=5"\n'
        'assert = ["client.status == 200"]\n',
        "case.toml",
    )
    assert doc.requests[0].path == "/cache=5" and doc.requests[0].asserts
    with pytest.raises(PlaygroundError, match="not valid JSON"):
        loads("{", "case.json")


# -- the isolated edge -----------------------------------------------------------------------
def test_the_same_request_twice_is_a_miss_then_a_hit() -> None:
    out = play(
        "",
        {"path": "/cache=60", "assert": ["cache.state == miss", "origin.count == 1"]},
        {"path": "/cache=60", "assert": ["cache.state == hit", "origin.count == 0"]},
    )
    assert out["ok"], out
    first, second = out["results"]
    assert [e["phase"] for e in first["events"]] == [
        "hash",
        "lookup",
        "miss",
        "fetch",
        "deliver",
        "log",
    ]
    assert {"phase": "hit", "decision": "fresh", "why": "fresh"} in second["events"]
    assert first["fetches"][0]["target"] == "/cache=60" and second["fetches"] == []
    assert out["counters"]["hits"] == 1 and out["counters"]["misses"] == 1


def test_a_compile_error_gives_positions_and_runs_nothing() -> None:
    out = play("sub recv {\n  set req.http.x-a = req.nope;\n}\n", {"path": "/cache=60"})
    assert not out["ok"] and out["results"] == []
    [d] = out["diagnostics"]
    assert (d["line"], d["column"], d["end_column"]) == (2, 22, 30)
    assert "unknown variable 'req.nope'" in d["message"] and "^~~~" in d["text"]


def test_rules_events_fields_and_log_lines() -> None:
    config = (
        'sub recv {\n  if (req.path ~ "^/old/") { redirect 301 "/new/"; }\n'
        '  set req.http.x-from-rules = "yes";\n}\n'
        'sub deliver { set resp.http.x-note = "hello"; }\n'
        'sub log { log "served " + req.path + " " + cache.state; }\n'
    )
    out = play(
        config,
        {
            "path": "/old/",
            "assert": [
                "client.status == 301",
                'client.header["location"] == "/new/"',
                "origin.count == 0",
                "trace contains rule@2",
            ],
        },
        {
            "path": "/cache=60/header=x-origin:1",
            "assert": [
                'origin.header["x-from-rules"] == "yes"',
                'client.header["x-note"] == hello',
                'client.header["x-origin"] == 1',
            ],
        },
    )
    assert out["ok"], [r["asserts"] for r in out["results"]]
    redirect, fetched = out["results"]
    assert redirect["events"][0] == {"phase": "recv", "decision": "rule@2", "why": "if"}
    assert {"phase": "recv", "decision": "redirect", "why": "rule line 2"} in redirect["events"]
    assert redirect["cache_state"] == "synthetic"
    assert fetched["log"] == ["served /cache=60/header=x-origin:1 miss"]


def test_failed_assertions_and_origin_errors_are_reported() -> None:
    out = play(
        "",
        {"path": "/status=503", "assert": ["client.status == 200", "origin.status == 503"]},
        {"method": "POST", "path": "/bytes=10", "body": "x=1", "assert": ["cache.state == pass"]},
    )
    assert not out["ok"]
    failed, posted = out["results"]
    assert [a["ok"] for a in failed["asserts"]] == [False, True]
    assert failed["asserts"][0]["actual"] == 503
    assert posted["ok"] and posted["response"]["body"] == "0123456789"
    assert posted["fetches"][0]["method"] == "POST"


def test_a_rule_failing_at_run_time_is_a_503_in_the_results() -> None:
    out = play(
        "sub recv { if (defined(req.http.x-target)) { set req.url = req.http.x-target; } }",
        {"path": "/cache=5", "headers": {"x-target": "http://elsewhere.test/"}},
    )
    [r] = out["results"]
    assert r["response"]["status"] == 503 and "rules error in sub recv" in r["response"]["body"]
    assert out["counters"]["rules_errors"] == 1


def test_nothing_is_shared_between_runs() -> None:
    a = play("", {"path": "/cache=60", "assert": ["cache.state == miss"]})
    b = play("", {"path": "/cache=60", "assert": ["cache.state == miss"]})
    assert a["ok"] and b["ok"]


def test_a_run_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from pkgedge.web.playground import engine

    monkeypatch.setattr(engine, "RUN_BUDGET", 0.3)
    out = play(
        "",
        {"path": "/wait=2000", "assert": ["client.status == 200"]},
        {"path": "/cache=60", "assert": ["client.status == 200"]},
    )
    slow, skipped = out["results"]
    assert "the request took more than 0.3 s" in slow["error"] and not slow["ok"]
    assert skipped["error"].startswith("not run") and skipped["asserts"][0]["ok"] is False
    assert not out["ok"]


def test_a_wait_beyond_the_edge_s_first_byte_timeout_is_a_timeout() -> None:
    from pkgedge.config import build_edge_settings

    settings = build_edge_settings(
        {"upstream": "http://playground.invalid/", "first_byte_timeout": "0.1"}, environ={}
    )
    doc = parse_doc(
        {
            "requests": [
                {"path": "/wait=50/cache=60", "assert": ["client.status == 200"]},
                {"path": "/wait=3000/cache=60", "assert": ["client.status == 504"]},
            ]
        }
    )
    out = asyncio.run(run_doc(doc, settings))
    assert out["ok"], [r["asserts"] for r in out["results"]]
    events = out["results"][1]["events"]
    assert any(e["decision"] == "origin-error" and "timeout" in e["why"] for e in events)
