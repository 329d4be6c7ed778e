"""The Redis side of pkgedge.cluster, one piece at a time against a real redis-server: the
purge stream's cursor, catch-up, trimming and epochs, the outbox while Redis is down, the
shield-first ordering, and the configuration's sync. (The whole cluster runs in
test_cluster.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pkgedge.cluster import config as cconfig
from pkgedge.cluster import purges as cpurges
from pkgedge.cluster import tables as ctables
from pkgedge.cluster.limits import LimitSync
from pkgedge.cluster.link import Registry, connect
from pkgedge.config import build_edge_settings
from pkgedge.edge.versions import VersionStore
from pkgedge.security.ratelimit import BucketSpec, PenaltyBox
from support.redis import RedisServer, redis_server  # noqa: F401  (module fixture)


def run(coro: Callable[[], Awaitable[Any]], *nodes: Node) -> Any:
    """Run ``coro`` in a new loop, closing the nodes' clients before the loop ends."""

    async def main() -> Any:
        try:
            return await coro()
        finally:
            for node in nodes:
                for client in node.clients:
                    await client.aclose()
                node.clients.clear()

    return asyncio.run(main())


class Node:
    """A PurgeBus whose apply records what it was given."""

    def __init__(self, tmp: Path, name: str, url: str, *, shield: bool = False) -> None:
        flags = {"upstream": "http://127.0.0.1:9/simple/", "cache_dir": str(tmp / name)}
        if shield:
            flags["shield"] = "http://127.0.0.1:9/"
        (tmp / name).mkdir(exist_ok=True)
        self.settings = build_edge_settings(
            {**flags, "redis": url, "node_name": name, "purge_timeout": "1s"}, environ={}
        )
        self.applied: list[dict[str, Any]] = []
        self.url = url
        self.clients: list[Any] = []

    def bus(self, timeout: float = 1.0) -> cpurges.PurgeBus:
        client, blocking = connect(self.url), connect(self.url, timeout=None)
        self.clients += [client, blocking]
        registry = Registry(self.settings, client)

        def apply(raw: bytes) -> tuple[int, bytes]:
            self.applied.append(json.loads(raw))
            return 200, b'{"purged": 1}'

        return cpurges.PurgeBus(
            registry, client, blocking, self.settings.cache_dir, lambda raw: None, apply, timeout
        )


async def _flush(url: str) -> None:
    client = connect(url)
    await client.flushall()
    await client.aclose()


def test_a_node_catches_up_from_its_cursor_in_order(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    a = Node(tmp_path, "a", redis_server.url)
    other = Node(tmp_path, "other", redis_server.url)

    async def scenario() -> None:
        bus = a.bus()
        await bus.start()  # a new node: nothing to catch up on
        pub = other.bus()
        for n in range(3):  # published while "a" is down (nobody acknowledges: 1 s timeout)
            await pub.redis.xadd(cpurges.STREAM, {"body": json.dumps({"urls": [f"/{n}"]})})
        again = a.bus()  # "a" starts again from its saved cursor
        await again.start()

    run(scenario, a, other)
    assert [p["urls"] for p in a.applied] == [["/0"], ["/1"], ["/2"]]


def test_a_cursor_the_stream_no_longer_holds_purges_everything(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    a = Node(tmp_path, "a", redis_server.url)

    async def scenario() -> None:
        bus = a.bus()
        await bus.redis.xadd(cpurges.STREAM, {"body": b'{"urls": ["/old"]}'})
        await bus.start()
        for n in range(5):
            await bus.redis.xadd(cpurges.STREAM, {"body": json.dumps({"urls": [f"/{n}"]})})
        await bus.redis.xtrim(
            cpurges.STREAM, maxlen=2, approximate=False
        )  # entries after the cursor are gone
        await a.bus().start()

    run(scenario, a)
    assert a.applied[0] == {"all": True}
    assert [p.get("urls") for p in a.applied[1:]] == [["/3"], ["/4"]]


def test_a_redis_that_lost_its_data_is_replayed_from_its_start(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    a = Node(tmp_path, "a", redis_server.url)

    async def scenario() -> None:
        bus = a.bus()
        for n in range(3):
            await bus.redis.xadd(cpurges.STREAM, {"body": json.dumps({"urls": [f"/{n}"]})})
        await bus.start()  # cursor at the newest entry
        await bus.redis.flushall()  # a new epoch: IDs start again lower than the cursor
        await bus.redis.set(cpurges.EPOCH, "new")
        await bus.redis.xadd(cpurges.STREAM, {"body": b'{"urls": ["/after"]}'})
        await a.bus().start()

    run(scenario, a)
    assert a.applied == [{"urls": ["/after"]}]


def test_with_redis_down_a_purge_applies_here_and_waits_in_the_outbox(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    a = Node(tmp_path, "a", redis_server.url)
    redis_server.kill()
    try:
        status, body = run(lambda: a.bus().publish(b'{"urls": ["/x"]}'), a)
    finally:
        redis_server.start()
    result = json.loads(body)
    assert status == 200 and result["queued"] is True and a.applied == [{"urls": ["/x"]}]
    run(lambda: _flush(redis_server.url))

    async def resume() -> list[Any]:
        bus = a.bus()
        assert await bus.flush_outbox() == 1
        assert await bus.flush_outbox() == 0  # sent once
        return list(await bus.redis.xrange(cpurges.STREAM))

    entries = run(resume, a)
    assert [json.loads(f[b"body"]) for _, f in entries] == [{"urls": ["/x"]}]


def test_an_edge_applies_a_purge_after_the_live_shield(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    shield = Node(tmp_path, "shield", redis_server.url)
    edge = Node(tmp_path, "edge", redis_server.url, shield=True)

    async def scenario() -> float:
        s, e = shield.bus(), edge.bus()
        await s.registry.beat()
        await e.registry.beat()
        # an entry without the list of shields (not published by PurgeBus): the edge asks the
        # registry which shields are live
        sid = (await s.redis.xadd(cpurges.STREAM, {"body": b'{"urls": ["/a"]}'})).decode()
        waited = asyncio.get_running_loop().create_task(e._after_shields(sid, None))
        await asyncio.sleep(0.2)
        assert not waited.done()  # the shield has not applied it yet
        started = time.monotonic()
        await s.ack(sid, 1)  # the shield applied it
        await waited
        return time.monotonic() - started

    took = run(scenario, shield, edge)
    assert took < 0.5  # released by the shield's ack, not by the 1 s timeout


async def _until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.005)


def test_a_purge_names_the_live_shields_and_edges_apply_it_once_they_have(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    shield = Node(tmp_path, "shield", redis_server.url)
    edge = Node(tmp_path, "edge", redis_server.url, shield=True)

    async def scenario() -> dict[str, Any]:
        # a long timeout: the edge is released by the shield's acknowledgement, never by it
        s, e = shield.bus(timeout=60), edge.bus(timeout=60)
        for bus in (s, e):
            await bus.registry.beat()
            await bus.start()
        loop = asyncio.get_running_loop()
        following = [loop.create_task(e.follow(started=True))]
        published = loop.create_task(e.publish(b'{"urls": ["/a"]}'))
        for _ in range(2000):  # published: the entry is in the stream
            if entries := await e.redis.xrange(cpurges.STREAM):
                break
            await asyncio.sleep(0.005)
        assert json.loads(entries[0][1][b"shields"]) == ["shield"]  # the live shields
        await asyncio.sleep(0.2)
        assert edge.applied == [] and not published.done()  # waits for the shield
        following.append(loop.create_task(s.follow(started=True)))
        try:
            status, body = await published
        finally:
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
        assert status == 200
        result: dict[str, Any] = json.loads(body)
        return result

    result = run(scenario, shield, edge)
    assert result["nodes"] == {"shield": 1, "edge": 1} and result["missing"] == []
    assert shield.applied == edge.applied == [{"urls": ["/a"]}]


def test_the_cursor_is_written_when_idle_and_a_crash_applies_again_what_followed_it(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    a = Node(tmp_path, "a", redis_server.url)

    def saved() -> str:
        return str(json.loads((tmp_path / "a" / "cluster-purges.json").read_text())["last"])

    async def add(bus: cpurges.PurgeBus, name: str) -> str:
        body = json.dumps({"urls": [name]})
        return (await bus.redis.xadd(cpurges.STREAM, {"body": body})).decode()

    async def scenario() -> None:
        bus = a.bus()
        await bus.start()
        follower = asyncio.get_running_loop().create_task(bus.follow(started=True))
        first = await add(bus, "/1")
        await _until(lambda: saved() == first, "the cursor written once the follower is idle")
        save_idle, cpurges.SAVE_IDLE, cpurges.SAVE_EVERY = cpurges.SAVE_IDLE, 60.0, 60.0
        try:
            await add(bus, "/2")
            await _until(lambda: len(a.applied) == 2, "the second purge")
            follower.cancel()  # a crash: the cursor in the file is still the first entry
            await asyncio.gather(follower, return_exceptions=True)
        finally:
            cpurges.SAVE_IDLE, cpurges.SAVE_EVERY = save_idle, 1.0
        assert saved() == first
        again = a.bus()
        await again.start()  # applies /2 again: harmless, and nothing is missed
        third = await add(again, "/3")
        await again.catch_up()
        again.save()  # what a node that stops does
        assert saved() == third
        await a.bus().start()  # nothing to apply again

    run(scenario, a)
    assert [p["urls"] for p in a.applied] == [["/1"], ["/2"], ["/2"], ["/3"]]


@dataclass
class _V:
    source: str


class FakeVersions:
    def __init__(self, source: str) -> None:
        self.list = [_V(source)]
        self.current = 0

    def active(self) -> int:
        return self.current

    def get(self, number: int) -> _V:
        return self.list[number]

    def create(self, source: str, author: str, comment: str = "", parent: int | None = None) -> int:
        self.list.append(_V(source))
        return len(self.list) - 1

    def activate(self, number: int, author: str, action: str = "activate") -> tuple[int, int]:
        old, self.current = self.current, number
        return old, number


def test_configuration_the_last_activation_anywhere_wins(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    va, vb = FakeVersions("default"), FakeVersions("default")

    async def scenario() -> None:
        a = cconfig.ConfigSync(connect(redis_server.url), "a", va, str(tmp_path / "a"))
        b = cconfig.ConfigSync(connect(redis_server.url), "b", vb, str(tmp_path / "b"))
        try:
            await _config_steps(a, b, va, vb)
        finally:
            await a.redis.aclose()
            await b.redis.aclose()

    run(scenario)


async def _config_steps(
    a: cconfig.ConfigSync, b: cconfig.ConfigSync, va: FakeVersions, vb: FakeVersions
) -> None:
    await a.sync()
    await b.sync()  # first looks: nothing published
    assert await a.redis.hgetall(cconfig.KEY) == {}
    va.activate(va.create("sub deliver {}", "me"), "me")
    await a.sync()  # published
    await b.sync()  # taken
    assert vb.get(vb.active()).source == "sub deliver {}"
    await b.sync()
    await a.sync()  # nothing bounces back
    assert len(va.list) == 2 and len(vb.list) == 2
    vb.activate(0, "rollback")  # a rollback on b wins in turn
    await b.sync()
    await a.sync()
    assert va.get(va.active()).source == "default"


def test_limit_syncs_share_buckets_and_penalties_in_one_round_trip(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    spec = BucketSpec(rate=0.001, burst=10.0)

    async def main() -> tuple[list[float], Any, Any]:
        await _flush(redis_server.url)
        clients = [connect(redis_server.url) for _ in range(2)]
        boxes = [PenaltyBox(600.0), PenaltyBox(600.0)]
        a, b = (
            LimitSync(c, f"n{i}", [], {"abuse": box})
            for i, (c, box) in enumerate(zip(clients, boxes, strict=True))
        )
        try:
            now = time.time()
            for _ in range(4):
                a.buckets.take("k", 1.0, now, spec)
            for _ in range(3):
                b.buckets.take("k", 1.0, now, spec)
            boxes[0].penalize("10.0.0.9", now, 60.0, "abuse")
            await a.sync()
            await clients[0].script_flush()  # a restarted Redis: the script is loaded again
            await b.sync()  # spends and reads a's penalty: one pipeline
            levels = [a.buckets.take("k", 0.0, time.time(), spec)[1]]
            levels.append(b.buckets.take("k", 0.0, time.time(), spec)[1])
            return levels, boxes[1].check("10.0.0.9", time.time()), boxes[0].check("x", now)
        finally:
            for c in clients:
                await c.aclose()

    levels, given, none = asyncio.run(main())
    # a saw its own 4 (settled at 6); b saw the 7 spent on both nodes (settled at 3)
    assert levels[0] == pytest.approx(6.0, abs=0.01)
    assert levels[1] == pytest.approx(3.0, abs=0.01)
    assert given is not None and given.reason == "abuse"  # a's penalty reached b's box
    assert none is None


TABLES_V = """\
table notes { "a": "1" }
acl staff { "192.0.2.0/24"; }
sub deliver { set resp.http.x-note = notes["a"]; }
"""


def test_table_edits_reach_every_node_once_and_the_first_published_wins(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    run(lambda: _flush(redis_server.url))
    stores = []
    for name in ("a", "b", "c"):
        store = VersionStore(tmp_path / name)
        store.activate(store.create(TABLES_V, "me"), "me")
        stores.append(store)
    sa, sb, sc = stores

    async def scenario() -> None:
        clients = [connect(redis_server.url) for _ in stores]
        a, b, c = (
            ctables.TableSync(cl, n, s, str(tmp_path / n))
            for cl, n, s in zip(clients, "abc", stores, strict=True)
        )
        try:
            for sync in (a, b, c):
                await sync.sync()  # nothing edited: nothing published
            assert await clients[0].hgetall(ctables.IDS) == {}
            sa.set_table("notes", {"a": "2", "b": "x"}, "alice")
            await a.sync()  # published
            assert sa.table_edits() == []
            await b.sync()  # taken
            assert sb.tables()["notes"] == {"a": "2", "b": "x"}
            assert sb.table_edits() == []  # not marked: it does not bounce back
            await b.sync()
            await a.sync()
            assert await clients[0].hget(ctables.IDS, "notes") == b"1"
            # b and c edit the same table before either syncs: b's reaches Redis first
            sb.set_table("notes", {"a": "b"}, "bob")
            sc.set_table("notes", {"a": "c"}, "carol")
            sb.set_table("staff", ["198.51.100.7"], "bob")
            await b.sync()
            await c.sync()  # takes b's edit; its own is dropped
            await a.sync()
            for s in stores:
                assert s.tables()["notes"] == {"a": "b"}
                assert s.tables()["staff"] == ["198.51.100.7"]
                assert s.table_edits() == []
            # a node restarted takes what it missed from its saved ids
            sb.set_table("notes", {"a": "later"}, "bob")
            await b.sync()
            fresh = ctables.TableSync(clients[0], "a", sa, str(tmp_path / "a"))
            assert fresh.taken == a.taken
            await fresh.sync()
            assert sa.tables()["notes"] == {"a": "later"}
        finally:
            for cl in clients:
                await cl.aclose()

    run(scenario)


def test_a_table_edit_the_node_cannot_apply_is_left_with_a_warning(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    run(lambda: _flush(redis_server.url))
    sa, sb = VersionStore(tmp_path / "a"), VersionStore(tmp_path / "b")
    sa.activate(sa.create(TABLES_V, "me"), "me")
    sb.ensure()  # the default configuration: no table "notes"

    async def scenario() -> None:
        ca, cb = connect(redis_server.url), connect(redis_server.url)
        a = ctables.TableSync(ca, "a", sa, str(tmp_path / "a"))
        b = ctables.TableSync(cb, "b", sb, str(tmp_path / "b"))
        try:
            sa.set_table("notes", {"a": "2"}, "alice")
            await a.sync()
            await b.sync()  # warns, keeps serving, does not ask again
            await b.sync()
        finally:
            await ca.aclose()
            await cb.aclose()

    with caplog.at_level("WARNING", logger="pkgedge.cluster"):
        run(scenario)
    warned = [r.getMessage() for r in caplog.records if "not applied here" in r.getMessage()]
    assert len(warned) == 1, warned
    assert "notes" not in sb.tables()
