"""The rules language wired into the pipeline: each action in the phase it runs in, against
an in-memory origin and client (both stores)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from pkgedge.edge.pipeline import Pipeline
from pkgedge.edge.ruleset import Ruleset
from pkgedge.rules import compile_rules
from support.memory import MemoryClient, MemoryOrigin, get, make_pipeline, request

PAGE = [("content-type", "text/html"), ("cache-control", "max-age=600")]
BODY = b"<html>" + b"x" * 2000 + b"</html>"


@pytest.fixture(params=["disk", "memory"])
def edge(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Pipeline, MemoryOrigin]:
    return make_pipeline(tmp_path, store=request.param, backends="mirror=http://mirror.test/idx/")


def use(pipeline: Pipeline, text: str, version: int = 2) -> Ruleset:
    rs = Ruleset(compile_rules(text, backends=["origin", "mirror"]), version)
    pipeline.use_rules(rs)
    return rs


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def gets(pipeline: Pipeline, target: str, n: int, **h: str) -> list[Any]:
    async def go() -> list[Any]:
        return [await get(pipeline, target, **h) for _ in range(n)]

    return run(go())  # type: ignore[no-any-return]


def test_recv_redirects_a_renamed_project_without_the_origin(edge: Any) -> None:
    pipeline, origin = edge
    use(
        pipeline,
        'table renamed { "old-name": "new-name" }\n'
        "sub recv {\n"
        '  if (req.path ~ "^/simple/([^/]+)/$" && regsub(req.path, "^/simple/([^/]+)/$", "\\1")'
        " in renamed) {\n"
        '    redirect 301 "/simple/" + renamed[regsub(req.path, "^/simple/([^/]+)/$", "\\1")]'
        ' + "/";\n  }\n}\n',
    )
    [(status, headers, _)] = gets(pipeline, "/simple/old-name/", 1)
    assert status == 301 and headers["location"] == "/simple/new-name/"
    assert origin.count == 0


def test_recv_sets_a_request_field_and_rewrites_the_url(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/b/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'sub recv { set req.http.x-edge-note = "rules"; '
        'if (req.path == "/simple/a/") { set req.url = "/simple/b/"; } }',
    )
    (s1, _, b1), (s2, h2, _) = gets(pipeline, "/simple/a/", 2)
    assert (s1, s2) == (200, 200) and b1 == BODY
    assert [t for _, t, _ in origin.requests] == ["/simple/b/"]  # one fetch: /a/ is /b/ now
    assert origin.requests[0][2]["x-edge-note"] == "rules"
    assert h2["cache-status"].startswith("pkgedge; hit")


def test_block_and_a_named_rate_limit(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'acl bad { "127.0.0.0/8"; }\n'
        'sub recv { if (req.path ~ "^/simple/blocked/" && client.ip in bad) '
        '{ block "this address may not read that"; }\n'
        '  if (req.path ~ "^/simple/a/") { ratelimit "pages" 2 per 1m; } }',
    )
    [(status, _, body)] = gets(pipeline, "/simple/blocked/", 1)
    assert status == 403 and b"this address may not read that" in body
    statuses = [s for s, _, _ in gets(pipeline, "/simple/a/", 3)]
    assert statuses == [200, 200, 429]
    assert origin.count == 1


def test_synthetic_answer_with_fields_and_body(edge: Any) -> None:
    pipeline, origin = edge
    use(
        pipeline,
        'sub recv { if (req.path == "/simple/gone/") '
        '{ synthetic 410 "removed by the index" with content-type = "text/plain", '
        'x-why = "policy"; } }',
    )
    [(status, headers, body)] = gets(pipeline, "/simple/gone/", 1)
    assert status == 410 and body == b"removed by the index"
    assert headers["x-why"] == "policy" and origin.count == 0


def test_hash_data_keeps_variants_apart(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, 'sub hash { hash_data(req.http.x-tenant ?? ""); }')
    gets(pipeline, "/simple/a/", 2, x_tenant="one")
    gets(pipeline, "/simple/a/", 2, x_tenant="two")
    assert origin.count == 2  # one fetch per tenant, each then a hit


def test_hit_pass_fetches_privately(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, 'sub hit { if (req.http.x-fresh == "1") { return(pass); } }')
    gets(pipeline, "/simple/a/", 2)
    assert origin.count == 1
    [(status, headers, _)] = gets(pipeline, "/simple/a/", 1, x_fresh="1")
    assert status == 200 and "fwd=bypass" in headers["cache-status"]
    assert origin.count == 2


def test_fetch_sets_ttl_keys_fields_and_pass(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=[("content-type", "text/html")], body=BODY)  # no freshness
    origin.add("/simple/p/", headers=PAGE, body=BODY)
    use(
        pipeline,
        "sub fetch {\n"
        '  if (req.path == "/simple/a/") { set beresp.ttl = 5m; add surrogate_key "project-a";'
        ' set beresp.http.x-stored-by = "rules"; }\n'
        '  if (req.path == "/simple/p/") { return(pass); }\n}',
    )
    (_, h1, _), (_, h2, _) = gets(pipeline, "/simple/a/", 2)
    assert h1["x-stored-by"] == "rules" and h2["cache-status"].startswith("pkgedge; hit; ttl=")
    assert 290 < int(h2["cache-status"].rpartition("ttl=")[2]) <= 300
    assert origin.count == 1
    assert pipeline.store.purge_surrogate(["project-a"]) == 1
    gets(pipeline, "/simple/a/", 1)
    assert origin.count == 2
    gets(pipeline, "/simple/p/", 2)
    assert origin.count == 4  # not stored: every request fetches


def test_deliver_fields_for_one_project_also_on_the_fast_path(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/six/", headers=[*PAGE, ("x-internal", "1")], body=BODY)
    use(
        pipeline,
        'sub deliver { if (req.path ~ "^/simple/six/") { set resp.http.x-note = "hello"; '
        "unset resp.http.x-internal; } }",
    )
    assert pipeline.ruleset.fast  # depends on the request's shape only
    answers = gets(pipeline, "/simple/six/", 3)
    for _, headers, _ in answers:
        assert headers["x-note"] == "hello" and "x-internal" not in headers

    async def fast() -> bool:
        return pipeline.try_hit(request("/simple/six/"), MemoryClient())

    assert run(fast())  # the third answer above came from the fast path, with the field


def test_client_dependent_rules_key_the_fast_path_by_what_they_read(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, "sub deliver { set resp.http.x-client = client.ip; }")
    assert pipeline.ruleset.fast and pipeline.ruleset.inputs_read == ("client.ip",)

    def from_(ip: str) -> Any:
        req = request("/simple/a/")
        req.client = ip
        return req

    async def go() -> list[tuple[bool, str]]:
        out = []
        for ip in ("127.0.0.1", "127.0.0.1", "127.0.0.1", "10.0.0.9", "10.0.0.9"):
            client = MemoryClient()
            req = from_(ip)
            took = pipeline.try_hit(req, client)
            if not took:
                await pipeline.handle(req, client)
            out.append((took, client.response()[1]["x-client"]))
        return out

    assert run(go()) == [
        (False, "127.0.0.1"),  # miss
        (False, "127.0.0.1"),  # hit through the phases, remembered
        (True, "127.0.0.1"),  # replayed
        (False, "10.0.0.9"),  # another client: not the first one's answer
        (True, "10.0.0.9"),
    ]
    assert origin.count == 1


def test_a_deliver_sub_reading_an_object_s_age_runs_on_every_replay(
    edge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, origin = edge
    origin.add(
        "/simple/a/",
        headers=[("content-type", "text/html"), ("cache-control", "max-age=86400")],
        body=BODY,
    )
    seen: list[list[str]] = []
    pipeline.hooks.on_rules_log(lambda req, lines: seen.append(list(lines)))
    use(
        pipeline,
        'sub deliver { if (obj.age < 1h) { set resp.http.x-young = "yes"; } '
        'log "delivered " + req.path; }',
    )
    rs = pipeline.ruleset
    assert rs.fast and rs.live_deliver
    gets(pipeline, "/simple/a/", 2)

    async def fast() -> tuple[bool, dict[str, str]]:
        client = MemoryClient()
        took = pipeline.try_hit(request("/simple/a/"), client)
        return took, client.response()[1]

    took, headers = run(fast())
    assert took and headers["x-young"] == "yes"
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 7200)  # two hours later
    took, headers = run(fast())
    assert took and "x-young" not in headers  # the same memo, the rule run again
    assert len(seen) == 4 and origin.count == 1


def test_restart_on_another_backend(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/idx/only-mirror/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'sub fetch { if (beresp.status == 404 && req.restarts == 0) { restart "mirror"; } }',
    )
    [(status, _, body)] = gets(pipeline, "/simple/only-mirror/", 1)
    assert status == 200 and body == BODY
    assert [t for _, t, _ in origin.requests] == ["/simple/only-mirror/", "/idx/only-mirror/"]


def test_a_rule_failing_at_run_time_is_a_503_and_the_worker_goes_on(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        "sub recv { if (defined(req.http.x-target)) { set req.url = req.http.x-target; } }",
    )
    [(status, _, body)] = gets(pipeline, "/simple/a/", 1, x_target="http://elsewhere.test/")
    assert status == 503 and b"rules error in sub recv" in body and b"line 1" in body
    assert pipeline.counters.snapshot()["rules_errors"] == 1
    [(status, _, _)] = gets(pipeline, "/simple/a/", 1)
    assert status == 200


def test_error_sub_rewrites_the_edge_s_own_error_page(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/down/", fail=True)
    use(
        pipeline,
        'sub error { set resp.http.x-error = "yes"; '
        'if (resp.status == 502) { synthetic 502 "the index is down; try later"; } }',
    )
    [(status, headers, body)] = gets(pipeline, "/simple/down/", 1)
    assert status == 502 and body == b"the index is down; try later"
    assert headers["x-error"] == "yes"


def test_log_lines_reach_the_hooks(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    seen: list[tuple[str, list[str]]] = []
    pipeline.hooks.on_rules_log(lambda req, lines: seen.append((req.target, list(lines))))
    use(pipeline, 'sub log { log "served " + req.path + " " + cache.state; }')
    assert pipeline.ruleset.live_log  # it runs after every replay too
    gets(pipeline, "/simple/a/", 3)
    assert seen == [
        ("/simple/a/", ["served /simple/a/ miss"]),
        ("/simple/a/", ["served /simple/a/ hit"]),
        ("/simple/a/", ["served /simple/a/ hit"]),
    ]


def test_a_live_table_change_ends_the_fast_path_memos(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    rs = use(
        pipeline,
        'table notes { "/simple/a/": "first" }\n'
        'sub deliver { set resp.http.x-note = notes[req.path] ?? "none"; }',
    )
    assert pipeline.ruleset.fast
    assert [h["x-note"] for _, h, _ in gets(pipeline, "/simple/a/", 3)] == ["first"] * 3
    rs.tables.replace("notes", {"/simple/a/": "second"})
    assert [h["x-note"] for _, h, _ in gets(pipeline, "/simple/a/", 3)] == ["second"] * 3


def test_a_request_keeps_the_ruleset_it_started_with(edge: Any) -> None:
    pipeline, origin = edge
    gate = asyncio.Event()
    origin.add("/simple/a/", headers=PAGE, body=BODY).gate = gate
    use(pipeline, 'sub deliver { set resp.http.x-version = "2"; }', 2)

    async def go() -> tuple[str, str]:
        first = asyncio.ensure_future(get(pipeline, "/simple/a/"))
        await asyncio.sleep(0.01)
        use(pipeline, 'sub deliver { set resp.http.x-version = "3"; }', 3)
        gate.set()
        _, h1, _ = await first
        _, h2, _ = await get(pipeline, "/simple/a/")
        return h1["x-version"], h2["x-version"]

    assert run(go()) == ("2", "3")


def test_the_trace_lists_the_rules_that_matched(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, 'sub recv { if (req.path ~ "^/simple/") { set req.http.x-a = "1"; } }')
    [(_, headers, _)] = gets(pipeline, "/simple/a/", 1, pkgedge_trace="1")
    assert headers["pkgedge-trace"].startswith("recv:rule@1(")


def from_client(target: str, ip: str, **headers: str) -> Any:
    req = request(target, **headers)
    req.client = ip
    return req


async def send(pipeline: Pipeline, req: Any) -> tuple[bool, int, dict[str, str]]:
    client = MemoryClient()
    took = pipeline.try_hit(req, client)
    if not took:
        await pipeline.handle(req, client)
    status, headers, _ = client.response()
    return took, status, headers


def test_a_live_recv_runs_once_per_request_on_either_path(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, 'sub recv { ratelimit "pages" 4 per 1m; }')
    assert pipeline.ruleset.live_recv and pipeline.ruleset.fast

    async def go() -> list[tuple[bool, int]]:
        out = []
        for _ in range(5):
            took, status, _ = await send(pipeline, request("/simple/a/"))
            out.append((took, status))
        return out

    # miss, hit through the phases (remembered), two replays; a token each, never two
    assert run(go()) == [(False, 200), (False, 200), (True, 200), (True, 200), (False, 429)]


def test_a_live_recv_answers_some_clients_and_the_rest_stay_fast(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'acl internal { "10.0.0.0/8"; }\n'
        'sub recv { if (req.http.user-agent ~ "(?i)badbot") { block "no bots"; }\n'
        '  if (client.ip in internal) { set req.http.x-internal = "1"; } }\n'
        'sub deliver { if (req.http.x-internal == "1") { set resp.http.x-served = "inside"; } }',
    )
    rs = pipeline.ruleset
    assert rs.live_recv and rs.fast and rs.inputs_read == ("req.http.x-internal",)

    async def go() -> list[tuple[bool, int, str]]:
        out = []
        for ip, ua in (
            ("192.0.2.1", "pip/24"),  # miss
            ("192.0.2.1", "pip/24"),  # hit, remembered
            ("192.0.2.7", "uv/0.4"),  # another client, same inputs after recv: replayed
            ("10.1.2.3", "pip/24"),  # internal: another key (x-internal set by recv)
            ("10.1.2.4", "uv/0.4"),  # internal too: replayed
            ("192.0.2.9", "BadBot/1.0"),  # recv answers: the phases deliver its 403
        ):
            took, status, headers = await send(
                pipeline, from_client("/simple/a/", ip, user_agent=ua)
            )
            out.append((took, status, headers.get("x-served", "")))
        return out

    assert run(go()) == [
        (False, 200, ""),
        (False, 200, ""),
        (True, 200, ""),
        (False, 200, "inside"),
        (True, 200, "inside"),
        (False, 403, ""),
    ]
    assert origin.count == 1


def test_recv_results_without_effects_are_remembered_and_effects_never(edge: Any) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(pipeline, 'sub recv { if (client.ua_class == "bot") { ratelimit "bots" 2 per 1m; } }')

    async def go(ua: str, n: int) -> list[tuple[bool, int]]:
        out = []
        for _ in range(n):
            took, status, _ = await send(pipeline, request("/simple/a/", user_agent=ua))
            out.append((took, status))
        return out

    pip = run(go("pip/24.0", 6))
    assert [s for _, s in pip] == [200] * 6 and all(took for took, _ in pip[2:])
    assert len(pipeline._recv_memo) == 1  # pip's plain look-up, decided without effects
    bots = run(go("Googlebot/2.1 (+http://www.google.com/bot.html)", 4))
    # a token taken is an effect: never remembered, so the limit holds on the fast path too
    assert [s for _, s in bots] == [200, 200, 429, 429]
    assert len(pipeline._recv_memo) == 1


@pytest.mark.parametrize("windowed", [True, False])
def test_live_deliver_replays_see_the_age_recv_s_edits_and_changing_edits(
    edge: Any, monkeypatch: pytest.MonkeyPatch, windowed: bool
) -> None:
    """The memo keeps the fields and the last head a live deliver sub built: each replay
    still sees its own obj.age, the request as recv left it (recv run live, or remembered),
    and a head rebuilt when the edits change and reused when they do not. A sub comparing
    obj.age with constants only is not run again while the age stays between them (its
    other inputs in the memo's key: ``windowed``); one using obj.age otherwise runs every
    time."""
    pipeline, origin = edge
    origin.add(
        "/simple/a/",
        headers=[("content-type", "text/html"), ("cache-control", "max-age=86400")],
        body=BODY,
    )
    use(
        pipeline,
        'acl internal { "10.0.0.0/8"; }\n'
        'sub recv { if (client.ip in internal) { set req.http.x-internal = "1"; } }\n'
        "sub deliver {\n"
        '  if (req.http.x-internal == "1") { set resp.http.x-served = "inside"; }\n'
        '  if (obj.age > 1h) { set resp.http.x-old = "1"; }\n'
        "  if (obj.age > 2h) { unset resp.http.content-type; set resp.status = 203; }\n"
        + ("" if windowed else '  if (len("" + obj.age) > 99) { set resp.http.x-long = "1"; }\n')
        + "}",
    )
    rs = pipeline.ruleset
    assert rs.live_recv and rs.live_deliver and rs.fast
    assert (rs.deliver_limits == {"obj.age": (3600.0, 7200.0), "obj.ttl": ()}) is windowed
    assert rs.inputs_read == (("req.http.x-internal",) if windowed else ())
    real = time.time
    later = [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + later[0])
    runs = [0]
    runner = rs.rules.runners["deliver"]
    assert runner is not None

    def counted(env: Any) -> Any:
        runs[0] += 1
        return runner(env)

    rs.rules.runners["deliver"] = counted

    async def go(ip: str) -> tuple[bool, int, dict[str, str]]:
        return await send(pipeline, from_client("/simple/a/", ip))

    def seen(ip: str) -> tuple[bool, int, str, str, str, str]:
        took, status, h = run(go(ip))
        fields = h.get("x-served", ""), h.get("x-old", ""), h.get("content-type", ""), h["age"]
        return (took, status, *fields)

    for ip in ("10.1.2.3", "10.1.2.3", "192.0.2.1", "192.0.2.1"):
        seen(ip)  # a miss, then hits (one per memo key through the phases)
    before = runs[0]
    assert seen("10.1.2.3") == (True, 200, "inside", "", "text/html", "0")  # recv remembered
    assert seen("192.0.2.1") == (True, 200, "", "", "text/html", "0")
    assert seen("192.0.2.1") == (True, 200, "", "", "text/html", "0")  # the same head again
    assert runs[0] - before == (1 if windowed else 3)  # each memo's first replay runs
    later[0] = 5400  # 1.5 h: rule 2 now sets a field
    assert seen("192.0.2.1") == (True, 200, "", "1", "text/html", "5400")
    assert seen("10.1.2.3") == (True, 200, "inside", "1", "text/html", "5400")
    assert seen("10.1.2.3") == (True, 200, "inside", "1", "text/html", "5400")
    assert runs[0] - before == (3 if windowed else 6)
    later[0] = 9000  # 2.5 h: rule 3 unsets one and changes the status
    assert seen("10.1.2.3") == (True, 203, "inside", "1", "", "9000")
    assert seen("192.0.2.1") == (True, 203, "", "1", "", "9000")
    later[0] = 10  # and back (a clock set back): the edits of the first replays again
    assert seen("192.0.2.1") == (True, 200, "", "", "text/html", "10")
    assert seen("192.0.2.1") == (True, 200, "", "", "text/html", "10")
    assert runs[0] - before == (6 if windowed else 10)
    assert origin.count == 1


def test_a_shape_only_recv_s_edits_reach_a_live_deliver_sub(edge: Any) -> None:
    """recv reads only the shape, deliver reads obj.age: recv is looked up live so that the
    replays' deliver sees the field it set."""
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'sub recv { if (req.path ~ "^/simple/") { set req.http.x-a = "1"; } }\n'
        'sub deliver { if (req.http.x-a == "1" && obj.age < 1h) { set resp.http.x-a = "seen"; } }',
    )
    assert pipeline.ruleset.live_recv and pipeline.ruleset.live_deliver

    async def go() -> list[tuple[bool, str]]:
        out = []
        for _ in range(4):
            took, _, headers = await send(pipeline, request("/simple/a/"))
            out.append((took, headers.get("x-a", "")))
        return out

    assert run(go()) == [(False, "seen"), (False, "seen"), (True, "seen"), (True, "seen")]


def test_the_replays_reused_env_is_a_new_one(edge: Any) -> None:
    """fastrules.renew leaves an Env as a new one from request_env would be, whatever the
    last replay left in it (a new Env attribute must be renewed too)."""
    from pkgedge.edge import fastrules, rulesrun
    from pkgedge.rules import Env

    pipeline, _ = edge
    rs = use(pipeline, 'sub deliver { if (obj.age > 1h) { set resp.http.x-old = "1"; } }')
    req = from_client("/simple/a/?q=1", "192.0.2.1", user_agent="pip/24.0")
    dirty = Env(trace=True)
    for slot in Env.__slots__:
        value = getattr(dirty, slot)
        if isinstance(value, (dict, list)):
            value = type(value)(x=1) if isinstance(value, dict) else [("x",)]
        elif isinstance(value, bool):
            value = not value
        elif isinstance(value, (int, float)):
            value = value + 7
        elif isinstance(value, str):
            value = value + "-old"
        setattr(dirty, slot, value)
    renewed = fastrules.renew(dirty, pipeline, req, rs)
    fresh = rulesrun.request_env(pipeline, req, rs)
    for slot in Env.__slots__:
        assert getattr(renewed, slot) == getattr(fresh, slot), slot


def test_the_window_of_a_deliver_sub_s_result_excludes_its_limits() -> None:
    """Between two limits the comparisons decide alike; on one, they may not (``>=``)."""
    from pkgedge.edge.fastrules import _window

    limits = {"obj.age": (3600.0, 7200.0), "obj.ttl": (600.0,)}
    inf = float("inf")
    assert _window(10.0, 5000.0, limits) == (-inf, 3600.0, 600.0, inf)
    assert _window(5000.0, 100.0, limits) == (3600.0, 7200.0, -inf, 600.0)
    assert _window(3600.0, 100.0, limits) is None
    assert _window(10.0, 600.0, limits) is None


def test_which_deliver_subs_compare_the_age_with_constants_only() -> None:
    def limits(body: str) -> Any:
        return compile_rules("sub deliver { " + body + " }").effects["deliver"].time_limits

    assert limits('if (obj.ttl <= 10m || 2h < obj.age) { set resp.http.x = "1"; }') == (
        ("obj.age", 7200.0),
        ("obj.ttl", 600.0),
    )
    assert limits('set resp.http.x = "1";') == ()
    assert limits('if (obj.age > obj.ttl) { set resp.http.x = "1"; }') is None
    assert limits('set resp.http.x = "" + obj.age;') is None


def test_a_deliver_sub_reading_the_backend_recv_chose_is_not_replayed_across_clients(
    edge: Any,
) -> None:
    """recv chooses the backend per client, deliver reads it: a replay for one client never
    gives the other client's deliver edits (both hit the same stored object)."""
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        'acl internal { "10.0.0.0/8"; }\n'
        'sub recv { if (client.ip in internal) { set req.backend = "mirror"; } }\n'
        'sub deliver { if (req.backend == "mirror") { set resp.http.x-b = "mirror"; } }',
    )

    def seen(ip: str) -> str:
        _, status, h = run(send(pipeline, from_client("/simple/a/", ip)))
        assert status == 200
        return h.get("x-b", "")

    # the outside client fills and warms the memo; the inside one hits the same object
    assert [seen("192.0.2.1") for _ in range(3)] == ["", "", ""]
    assert [seen("10.1.2.3") for _ in range(3)] == ["mirror"] * 3
    assert [seen("192.0.2.1") for _ in range(2)] == ["", ""]
    assert origin.count == 1


def test_replays_keep_only_the_recv_edits_the_live_subs_read(edge: Any) -> None:
    """A remembered recv keeps its edits of the request fields the live deliver and log subs
    read (set, append, unset; names as written in either sub): the replays see those fields
    as recv left them, and never replay the others (nothing reads them)."""
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    use(
        pipeline,
        "sub recv {\n"
        '  set req.http.x-c = "unread"; set req.http.X-A = "1";\n'
        '  append req.http.x-b = "recv"; unset req.http.cookie;\n'
        "}\n"
        "sub deliver {\n"
        '  if (obj.age > obj.ttl) { set resp.http.x-old = "1"; }\n'
        "  set resp.http.x-a = req.http.x-a;\n"
        '  if (defined(req.http.Cookie)) { set resp.http.x-cookie = "kept"; }\n'
        "}\n"
        'sub log { log "b=" + req.http.x-b; }\n',
    )
    rs = pipeline.ruleset
    assert rs.live_deliver and rs.live_log and rs.deliver_limits is None
    assert rs.live_fields == {"x-a", "x-b", "cookie"}
    lines: list[list[str]] = []
    pipeline.hooks.on_rules_log(lambda req, got: lines.append(list(got)))

    async def go() -> list[tuple[bool, str, str]]:
        out = []
        for _ in range(4):
            req = request("/simple/a/", x_b="client", cookie="c=1")
            took, _, h = await send(pipeline, req)
            out.append((took, h.get("x-a", ""), h.get("x-cookie", "")))
        return out

    assert run(go()) == [(False, "1", ""), (False, "1", ""), (True, "1", ""), (True, "1", "")]
    assert lines == [["b=client, recv"]] * 4
    [(_, edits, _)] = pipeline._recv_memo.values()
    assert edits == (("set", "x-a", "1"), ("append", "x-b", "recv"), ("unset", "cookie", ""))
