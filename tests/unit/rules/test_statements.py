"""Each statement, action and expression, run on an Env."""

from __future__ import annotations

from typing import Any

import pytest

from pkgedge.rules import Env, Kind, Outcome, compile_rules


def run(src: str, phase: str = "recv", **kw: Any) -> tuple[Outcome | None, Env]:
    rules = compile_rules(f"{src}" if src.lstrip().startswith(("sub", "table", "acl"))
                          else f"sub {phase} {{ {src} }}")  # fmt: skip
    tables = rules.tables()
    env = Env(tables=tables.current, **kw)
    return rules.run(phase, env), env


def test_no_action_is_none_and_no_sub_is_none() -> None:
    out, _ = run('log "x";')
    assert out is None
    rules = compile_rules("sub recv { }")
    assert rules.runners["deliver"] is None
    assert rules.run("deliver", Env()) is None
    assert rules.run("lookup", Env()) is None  # a pipeline phase without rules


def test_return_actions() -> None:
    out, _ = run("return(pass);")
    assert out is not None and out.kind is Kind.PASS and out.line == 1
    out, _ = run("return(fetch);", "hit")
    assert out is not None and out.kind is Kind.FETCH


def test_statements_after_an_action_do_not_run() -> None:
    out, env = run('log "a"; return(pass); log "b";')
    assert out is not None and out.kind is Kind.PASS
    assert env.log_lines == ["a"]


def test_if_elif_else_pick_one_branch() -> None:
    src = """
        if (req.path ~ "^/a") { log "a"; }
        elif (req.path ~ "^/b") { log "b"; }
        else { log "other"; }
    """
    for url, want in [("/a/x", "a"), ("/b", "b"), ("/c", "other")]:
        _, env = run(src, url=url)
        assert env.log_lines == [want]


def test_set_append_unset_request_headers_and_edits() -> None:
    headers = {"accept": "text/html", "cookie": "c=1"}
    src = """
        set req.http.X-Edge = "pkgedge";
        append req.http.accept = "application/json";
        append req.http.x-new = "1";
        unset req.http.cookie;
    """
    _, env = run(src, req_headers=headers)
    assert headers == {"accept": "text/html, application/json", "x-edge": "pkgedge", "x-new": "1"}
    assert env.edits == [
        ("req", "set", "x-edge", "pkgedge"),
        ("req", "append", "accept", "application/json"),
        ("req", "append", "x-new", "1"),
        ("req", "unset", "cookie", ""),
    ]


def test_response_headers_in_deliver_and_a_later_rule_reads_the_change() -> None:
    src = 'set resp.http.x-a = "1"; set resp.http.x-b = resp.http.x-a + "2";'
    _, env = run(src, "deliver")
    assert env.resp_headers == {"x-a": "1", "x-b": "12"}


def test_absent_headers_read_as_empty_defined_and_coalesce() -> None:
    src = """
        log "[" + req.http.x + "]";
        log req.http.x ?? "dflt";
        log req.http.e ?? "dflt";
        if (defined(req.http.e)) { log "e defined"; }
        if (!defined(req.http.x)) { log "x absent"; }
    """
    _, env = run(src, req_headers={"e": ""})
    assert env.log_lines == ["[]", "dflt", "", "e defined", "x absent"]


def test_rewrite_url() -> None:
    _, env = run('set req.url = "/simple/" + lower(req.query) + "/";', url="/p?NumPy")
    assert (env.url, env.path, env.query, env.url_changed) == (
        "/simple/numpy/",
        "/simple/numpy/",
        "",
        True,
    )


def test_backend_ttl_swr_sie_and_surrogate_keys() -> None:
    _, env = run('set req.backend = "mirror";')
    assert env.backend == "mirror"
    src = """
        if (beresp.status == 200 && beresp.ttl < 1m) {
            set beresp.ttl = 5m; set beresp.swr = 30s; set beresp.sie = 1d;
            add surrogate_key "index project/" + regsub(req.path, "^/simple/([^/]+)/$", "\\1");
        }
    """
    _, env = run(src, "fetch", url="/simple/six/", beresp_status=200, beresp_ttl=10.0)
    assert env.overrides == {"ttl": 300.0, "swr": 30.0, "sie": 86400.0}
    assert env.beresp_ttl == 300.0
    assert env.surrogate_keys == ["index", "project/six"]


def test_error_block_synthetic_redirect() -> None:
    out, _ = run('error 503 "down for maintenance";')
    assert out == Outcome(Kind.ERROR, 503, "down for maintenance", line=1)
    out, _ = run("block;")
    assert out is not None and (out.kind, out.status, out.reason) == (Kind.BLOCK, 403, "blocked")
    out, _ = run('block "no " + client.ip;', client_ip="192.0.2.9")
    assert out is not None and out.reason == "no 192.0.2.9"
    out, _ = run('synthetic 200 "ok " + req.method with Content-Type = "text/plain", x-a = "b";')
    assert out is not None and out.kind is Kind.SYNTHETIC
    assert (out.status, out.body) == (200, "ok GET")
    assert out.headers == (("content-type", "text/plain"), ("x-a", "b"))
    out, _ = run('redirect 308 "https://mirror.example" + req.url;', url="/simple/")
    assert out is not None and (out.kind, out.status) == (Kind.REDIRECT, 308)
    assert out.location == "https://mirror.example/simple/"


def test_restart_and_the_restart_cap() -> None:
    src = 'restart "other";'
    out, _ = run(src, "fetch")
    assert out is not None and (out.kind, out.backend) == (Kind.RESTART, "other")
    out, _ = run("return(restart);", "deliver", restarts=2)
    assert out is not None and out.kind is Kind.RESTART
    out, _ = run(src, "fetch", restarts=3)
    assert out is not None and (out.kind, out.status) == (Kind.ERROR, 503)
    assert "too many restarts" in out.reason
    rules = compile_rules("sub error { restart; }", max_restarts=1)
    out = rules.run("error", Env(restarts=1))
    assert out is not None and out.kind is Kind.ERROR


def test_ratelimit_asks_the_limiter_with_the_client_identity() -> None:
    calls: list[tuple[str, str, float, float]] = []

    def limiter(name: str, key: str, rate: float, per: float) -> bool:
        calls.append((name, key, rate, per))
        return len(calls) <= 2

    rules = compile_rules('sub recv { ratelimit "bots" 10 per 1m; log "allowed"; }')
    outs = []
    for _ in range(3):
        env = Env(client_ip="192.0.2.1", client_identity="192.0.2.1", limiter=limiter)
        outs.append((rules.run("recv", env), env.log_lines))
    assert calls[0] == ("bots", "192.0.2.1", 10, 60.0)
    assert [o for o, _ in outs[:2]] == [None, None]
    denied, lines = outs[2]
    assert denied is not None and (denied.kind, denied.status, denied.name) == (
        Kind.RATELIMIT,
        429,
        "bots",
    )
    assert (denied.rate, denied.per) == (10, 60.0)
    assert lines == []  # the sub stopped at the refusal
    out, env = run('ratelimit "x" 1 per 1s; log "no limiter: allowed";')
    assert out is None and env.log_lines == ["no limiter: allowed"]


def test_hash_data() -> None:
    _, env = run('hash_data(req.http.accept ?? "html");', "hash")
    assert env.hash_parts == ["html"]


def test_log_lines_stay_one_line() -> None:
    _, env = run('log {"a\nb"};')
    assert env.log_lines == ["a\\nb"]


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ('lower("AbC") == "abc"', True),
        ('upper("abc") == "ABC"', True),
        ('len("abcd") == 4', True),
        ('starts_with(req.path, "/simple/")', True),
        ('ends_with(req.path, "/")', True),
        ('contains(req.path, "mpl")', True),
        ('regsuball("a-b-c", "-", "+") == "a+b+c"', True),
        ('regsub("a-b-c", "-", "+") == "a+b-c"', True),
        ('req.path !~ "^/files/"', True),
        ('req.path ~ "(?i)^/SIMPLE"', True),
        ("req.restarts + 2 == 2", True),
        ("1m + 30s == 90s", True),
        ("5m > 299s && 5m >= 300s && 5m <= 300s && 5m != 1s", True),
        ('"n=" + 3 + " t=" + 90s == "n=3 t=90s"', True),
        ('"t=" + 500ms == "t=0.5s"', True),
        ('client.ua_class == "pip" || false', False),
        ("!(true && false)", True),
        ('req.method == "GET" && (req.path ~ "^/x" || true)', True),
    ],
)
def test_expressions(expr: str, want: bool) -> None:
    _, env = run(f'if ({expr}) {{ log "yes"; }} else {{ log "no"; }}', url="/simple/")
    assert env.log_lines == ["yes" if want else "no"]


def test_trace_records_branches_and_the_outcome() -> None:
    rules = compile_rules("sub recv {\n  if (true) {\n    return(pass);\n  }\n}")
    env = Env(trace=True)
    rules.run("recv", env)
    assert env.trace == [("recv", 2, "if"), ("recv", 3, "pass")]
    quiet = Env()
    rules.run("recv", quiet)
    assert quiet.trace is None
