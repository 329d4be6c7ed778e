"""The pipeline's phases, run in one process against an in-memory origin and client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pkgedge.edge import steps
from pkgedge.edge.phases import Phase, TransitionError
from pkgedge.edge.pipeline import Pipeline
from support.memory import MemoryClient, MemoryOrigin, get, make_pipeline, request

PAGE = [("content-type", "text/html"), ("cache-control", "max-age=600")]
BODY = b"<html>" + b"x" * 2000 + b"</html>"


@pytest.fixture(params=["disk", "memory"])
def edge(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Pipeline, MemoryOrigin]:
    """The same phases over the LMDB store and the in-memory store."""
    return make_pipeline(tmp_path, store=request.param)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_miss_then_hit_then_fast_path(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)

    async def go() -> list[tuple[int, dict[str, str], bytes]]:
        return [await get(pipeline, "/simple/a/") for _ in range(3)]

    (s1, h1, b1), (s2, h2, b2), (s3, h3, b3) = run(go())
    assert (s1, s2, s3) == (200, 200, 200)
    assert b1 == b2 == b3 == BODY
    assert h1["cache-status"] == "pkgedge; fwd=miss; stored"
    assert h2["cache-status"].startswith("pkgedge; hit; ttl=")
    assert h3["cache-status"].startswith("pkgedge; hit; ttl=")
    assert origin.count == 1
    assert len(pipeline.hot) == 1  # the second answer (phases) was remembered


def test_the_fast_path_writes_what_deliver_wrote(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)

    async def go() -> tuple[bytes, bytes, bool]:
        await get(pipeline, "/simple/a/", accept_encoding="gzip")
        slow, fast = MemoryClient(), MemoryClient()
        req = request("/simple/a/", accept_encoding="gzip")
        assert not pipeline.try_hit(req, slow)  # not remembered yet: the phases answer
        await pipeline.handle(req, slow)
        took = pipeline.try_hit(request("/simple/a/", accept_encoding="gzip"), fast)
        return bytes(slow.data), bytes(fast.data), took

    slow, fast, took = run(go())
    assert took
    assert b"content-encoding: gzip" in slow
    assert slow == fast  # same second: same Age and TTL, so byte for byte the same


def test_a_purge_ends_the_fast_path_for_every_memo(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)

    async def go() -> tuple[bool, bool, int]:
        await get(pipeline, "/simple/a/")
        await get(pipeline, "/simple/a/")
        before = pipeline.try_hit(request("/simple/a/"), MemoryClient())
        pipeline.store.purge_keys([b"/simple/a/"])
        after = pipeline.try_hit(request("/simple/a/"), MemoryClient())
        status, _, _ = await get(pipeline, "/simple/a/")
        return before, after, status

    before, after, status = run(go())
    assert before and not after
    assert status == 200 and origin.count == 2


def test_every_transition_is_checked(
    edge: tuple[Pipeline, MemoryOrigin], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)

    async def bad_hash(p: Pipeline, ctx: steps.Ctx) -> Phase:
        return Phase.DELIVER  # hash → deliver is not in the table

    monkeypatch.setitem(steps.STEPS, Phase.HASH, bad_hash)
    with pytest.raises(TransitionError, match="hash → deliver"):
        run(pipeline.handle(request("/simple/a/"), MemoryClient()))


def test_trace_lists_each_phase(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    _, h, _ = run(get(pipeline, "/simple/a/", pkgedge_trace="1"))
    assert h["pkgedge-trace"] == (
        "recv:rule@20(lookup); hash:key(/simple/a/); lookup:; miss:miss(not in cache); "
        "fetch:fetch; deliver:stream"
    )


def test_concurrent_misses_collapse_into_one_fetch(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    gate = asyncio.Event()

    async def go() -> list[tuple[int, dict[str, str], bytes]]:
        origin.add("/simple/a/", headers=PAGE, body=BODY, gate=gate)
        tasks = [asyncio.create_task(get(pipeline, "/simple/a/")) for _ in range(5)]
        await asyncio.sleep(0.01)
        gate.set()
        return await asyncio.gather(*tasks)

    answers = run(go())
    assert origin.count == 1
    assert all(b == BODY for _, _, b in answers)
    assert sum("collapsed" in h["cache-status"] for _, h, _ in answers) == 4


def test_stale_if_error_serves_the_stored_object(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    headers = [("content-type", "text/html"), ("cache-control", "max-age=0, stale-if-error=600")]
    origin.add("/simple/a/", headers=[*headers, ("etag", '"v1"')], body=BODY)

    async def go() -> tuple[int, dict[str, str], bytes]:
        await get(pipeline, "/simple/a/")
        origin.add("/simple/a/", fail=True)
        return await get(pipeline, "/simple/a/")

    status, h, body = run(go())
    assert status == 200 and body == BODY
    assert "detail=stale-if-error" in h["cache-status"]


def test_an_origin_error_without_stale_is_a_502(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/simple/a/", fail=True)
    status, h, body = run(get(pipeline, "/simple/a/"))
    assert status == 502
    assert body.startswith(b"upstream error:")
    assert h["content-type"].startswith("text/plain")


def test_a_post_passes_and_is_not_stored(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    origin.add("/legacy/", status=200, headers=[("content-type", "text/plain")], body=b"ok")

    async def go() -> tuple[int, dict[str, str], bytes]:
        client = MemoryClient()
        req = request("/legacy/", method="POST")
        req.body = b"form"
        assert not pipeline.try_hit(req, client)
        await pipeline.handle(req, client)
        return client.response()

    status, h, body = run(go())
    assert (status, body) == (200, b"ok")
    assert h["cache-status"] == "pkgedge; fwd=bypass"
    assert origin.requests[0][0] == "POST"
    assert pipeline.store.lookup(b"/legacy/", {}, "/legacy/")[1] is None


def test_the_origin_fetch_cap_answers_503(tmp_path: Path) -> None:
    pipeline, origin = make_pipeline(tmp_path, max_origin_fetches=0)
    origin.add("/simple/a/", headers=PAGE, body=BODY)
    status, h, body = run(get(pipeline, "/simple/a/"))
    assert status == 503 and h["retry-after"] == "5"
    assert b"origin is busy" in body
    assert origin.count == 0


def test_a_refusal_from_protection_is_delivered_by_the_phases(tmp_path: Path) -> None:
    pipeline, origin = make_pipeline(tmp_path, rate_limit="1/1")
    origin.add("/simple/a/", headers=PAGE, body=BODY)

    async def go() -> list[int]:
        return [(await get(pipeline, "/simple/a/"))[0] for _ in range(3)]

    assert run(go())[-1] == 429


def test_stale_while_revalidate_keeps_its_detail(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    pipeline, origin = edge
    headers = [
        ("content-type", "text/html"),
        ("cache-control", "max-age=0, stale-while-revalidate=600"),
    ]
    origin.add("/simple/a/", headers=headers, body=BODY)

    async def go() -> tuple[dict[str, str], dict[str, str]]:
        await get(pipeline, "/simple/a/")
        _, h1, _ = await get(pipeline, "/simple/a/")
        _, h2, _ = await get(pipeline, "/simple/a/")
        return h1, h2

    h1, h2 = run(go())
    assert h1["cache-status"].endswith("detail=stale-while-revalidate")
    assert h2["cache-status"].endswith("detail=stale-while-revalidate")  # never the fast path
    assert 2 <= origin.count <= 3  # the first fetch, and background refreshes


def test_a_large_body_is_written_from_its_mapping(edge: tuple[Pipeline, MemoryOrigin]) -> None:
    """Above JOIN_MAX the head and the mapped body are two writes: the same bytes arrive."""
    pipeline, origin = edge
    big = bytes(range(256)) * 1000  # 256 kB, kept in memory (memory-object-max is 1 MB)
    origin.add("/files/big.whl", headers=[("cache-control", "max-age=600")], body=big)

    async def go() -> list[tuple[int, dict[str, str], bytes]]:
        return [await get(pipeline, "/files/big.whl") for _ in range(3)]

    answers = run(go())
    assert [b == big for _, _, b in answers] == [True, True, True]
    assert answers[2][1]["content-length"] == str(len(big))
    assert origin.count == 1 and len(pipeline.hot) == 1
