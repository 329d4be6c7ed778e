"""Purges fanned out to every node through a Redis stream, with acknowledgements.

The admin API's ``POST /purge`` on any node (also the origin's purges, which are such calls)
checks the body, adds it to the stream ``pkgedge:purges`` and waits until every node that was
live when it was published has applied it (each node adds itself to ``pkgedge:ack:ID`` and
pushes its name to ``pkgedge:ackq:ID``, which the publisher blocks on), or until
``--purge-timeout``; the answer names the nodes that did not acknowledge.

Every node's worker 0 follows the stream with ``XREAD`` from the last ID it applied, kept in
``cache-dir/cluster-purges.json`` with Redis's epoch: a node that was down catches up from
there before it serves (worker 0 does it before it accepts); one whose ID the stream no
longer holds (trimmed) purges everything. Ordering against the shield: an ``edge``-tier node
applies an entry only once every live ``shield``-tier node has acknowledged it (or the
timeout passed), so no edge refills from a shield that still holds the old object.

Redis down: the node that was asked applies the purge itself, keeps it in
``cache-dir/cluster-outbox.jsonl`` and answers with ``queued``; worker 0 publishes the outbox
when Redis answers again.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pkgedge.cluster.link import DOWN, PREFIX, Client, Registry, log

STREAM = PREFIX + "purges"
EPOCH = PREFIX + "epoch"
#: entries kept in the stream (a node down for longer purges everything when it returns)
MAXLEN = 10_000
ACK_TTL = 3600
_BATCH = 100
_POLL = 0.005

#: ``check(raw)``: the error a purge body gets (status, reason), or None if it is valid
Check = Callable[[bytes], "tuple[int, bytes] | None"]
#: ``apply(raw)``: purge on this node; (status, JSON body with "purged")
Apply = Callable[[bytes], "tuple[int, bytes]"]


def _ms(sid: str) -> float:
    return int(sid.partition("-")[0]) / 1000.0


def _newer(a: str, b: str) -> bool:
    """Stream ID ``a`` comes after ``b``."""
    ta, _, sa = a.partition("-")
    tb, _, sb = b.partition("-")
    return (int(ta), int(sa or 0)) > (int(tb), int(sb or 0))


class PurgeBus:
    """One per worker: publishes purges; worker 0 also follows the stream (:meth:`follow`)."""

    def __init__(
        self,
        registry: Registry,
        client: Client,
        blocking: Client,
        cache_dir: str,
        check: Check,
        apply: Apply,
        timeout: float,
    ) -> None:
        self.registry = registry
        self.name = registry.name
        self.redis = client
        self.blocking = blocking  # its own connections: XREAD and BLPOP block
        self.check = check
        self.apply = apply
        self.timeout = timeout
        self.cursor_path = Path(cache_dir) / "cluster-purges.json"
        self.outbox_path = Path(cache_dir) / "cluster-outbox.jsonl"
        self.last = "0-0"
        self.epoch = ""
        self.applied = 0

    def __repr__(self) -> str:
        return f"<PurgeBus {self.name} last={self.last}>"

    # -- publishing ----------------------------------------------------------------------
    async def publish(self, raw: bytes) -> tuple[int, bytes]:
        """The admin API's purge on a node with Redis."""
        bad = self.check(raw)
        if bad is not None:
            return bad
        try:
            return await self._publish(raw)
        except DOWN as exc:
            status, body = self.apply(raw)
            if status != 200:
                return status, body
            self._queue(raw)
            result = json.loads(body)
            result.update(queued=True, missing=[f"redis unreachable ({exc})"])
            return 200, json.dumps(result).encode()

    async def _publish(self, raw: bytes) -> tuple[int, bytes]:
        live = set(await self.registry.live()) | {self.name}  # this node always applies it
        sid = (await self.redis.xadd(STREAM, {"body": raw}, maxlen=MAXLEN)).decode()
        started = time.monotonic()
        acked: set[str] = set()
        queue = PREFIX + "ackq:" + sid
        while not live <= acked:
            left = self.timeout - (time.monotonic() - started)
            if left <= 0:
                break
            got = await self.blocking.blpop([queue], timeout=max(0.01, min(left, 1.0)))
            if got is not None:
                acked.add(got[1].decode())
        counts = {
            k.decode(): int(v) for k, v in (await self.redis.hgetall(PREFIX + "ack:" + sid)).items()
        }
        missing = sorted(live - set(counts))
        purged = counts.get(self.name, sum(counts.values()))
        result = {"purged": purged, "id": sid, "nodes": counts, "missing": missing}
        result["soft"] = bool(json.loads(raw or b"{}").get("soft"))
        return 200, json.dumps(result).encode()

    def _queue(self, raw: bytes) -> None:
        with self.outbox_path.open("ab") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps({"body": raw.decode("utf-8", "replace")}).encode() + b"\n")

    async def flush_outbox(self) -> int:
        """Publish the purges queued while Redis was down (worker 0)."""
        try:
            fh = self.outbox_path.open("r+b")
        except FileNotFoundError:
            return 0
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
            for line in lines:
                body = json.loads(line)["body"].encode()
                await self.redis.xadd(STREAM, {"body": body}, maxlen=MAXLEN)
            fh.seek(0)
            fh.truncate()
        if lines:
            log.warning("published %d purge(s) queued while redis was down", len(lines))
        return len(lines)

    # -- following -----------------------------------------------------------------------
    def _load_cursor(self) -> tuple[str, str] | None:
        try:
            data = json.loads(self.cursor_path.read_text())
            return str(data["epoch"]), str(data["last"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save_cursor(self) -> None:
        tmp = self.cursor_path.with_name(f".{self.cursor_path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"epoch": self.epoch, "last": self.last}))
        tmp.replace(self.cursor_path)

    async def start(self) -> None:
        """Where to follow from: the saved cursor, caught up from the stream."""
        r = self.redis
        await r.set(EPOCH, secrets.token_hex(8), nx=True)
        epoch = (await r.get(EPOCH) or b"").decode()
        newest = await r.xrevrange(STREAM, count=1)
        head = newest[0][0].decode() if newest else "0-0"
        saved = self._load_cursor()
        if saved is None:
            self.epoch, self.last = epoch, head  # a new node: nothing to catch up on
        elif saved[0] != epoch:
            log.warning("redis lost its purge stream (new epoch): applying all it holds")
            self.epoch, self.last = epoch, "0-0"
        else:
            self.epoch, self.last = saved
            if await self._trimmed_since(self.last):
                log.warning("purges since %s were trimmed from the stream: purging all", self.last)
                self.apply(b'{"all": true}')
        self._save_cursor()
        await self.catch_up()

    async def _trimmed_since(self, last: str) -> bool:
        """Were entries after ``last`` trimmed from the stream? Trimming removes the oldest
        first, so while the entry ``last`` is still there nothing after it went; once it has
        gone, some entries after it may have (a purge of everything is the safe answer)."""
        if last == "0-0" or await self.redis.xrange(STREAM, min=last, max=last, count=1):
            return False
        newest = await self.redis.xrevrange(STREAM, count=1)
        return bool(newest) and _newer(newest[0][0].decode(), last)

    async def catch_up(self) -> int:
        """Apply every entry after the cursor (no blocking)."""
        done = 0
        while True:
            got = await self.redis.xread({STREAM: self.last}, count=_BATCH)
            entries = got[0][1] if got else []
            if not entries:
                return done
            await self._apply_all(entries)
            done += len(entries)

    async def follow(self, *, started: bool = False) -> None:
        """Worker 0: start (unless done), then apply entries as they arrive; survive Redis
        outages."""
        warned = False
        while True:
            try:
                if not started:
                    await self.start()
                    started = True
                await self.flush_outbox()
                got = await self.blocking.xread({STREAM: self.last}, count=_BATCH, block=1000)
                if got:
                    await self._apply_all(got[0][1])
                if warned:
                    log.warning("purge stream followed again from %s", self.last)
                    warned = False
            except DOWN as exc:
                if not warned:
                    log.warning("redis unreachable (purges): %s", exc)
                warned = True
                started = False  # the epoch may have changed meanwhile
                await asyncio.sleep(0.25)

    async def _apply_all(self, entries: list[Any]) -> None:
        for sid_raw, fields in entries:
            sid = sid_raw.decode()
            if self.registry.tier == "edge":
                await self._after_shields(sid)
            status, body = self.apply(fields.get(b"body", b"{}"))
            count = json.loads(body).get("purged", 0) if status == 200 else -1
            pipe = self.redis.pipeline(transaction=False)
            pipe.hset(PREFIX + "ack:" + sid, self.name, count)
            pipe.expire(PREFIX + "ack:" + sid, ACK_TTL)
            pipe.rpush(PREFIX + "ackq:" + sid, self.name)
            pipe.expire(PREFIX + "ackq:" + sid, 60)
            await pipe.execute()
            self.last = sid
            self.applied += 1
            self._save_cursor()

    async def _after_shields(self, sid: str) -> None:
        """Wait until every live shield has applied ``sid`` (at most the purge timeout after
        it was published)."""
        deadline = _ms(sid) + self.timeout
        if time.time() >= deadline:
            return  # an old entry (catching up): the shields applied it long ago, or never will
        shields = {n for n, t in (await self.registry.live()).items() if t == "shield"}
        while shields and time.time() < deadline:
            acked = {k.decode() for k in await self.redis.hkeys(PREFIX + "ack:" + sid)}
            if shields <= acked:
                return
            await asyncio.sleep(_POLL)
