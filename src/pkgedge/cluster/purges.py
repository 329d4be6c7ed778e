"""Purges fanned out to every node through a Redis stream, with acknowledgements.

The admin API's ``POST /purge`` on any node (also the origin's purges, which are such calls)
checks the body and, in one Lua script call (:data:`PUBLISH`), reads the live nodes and adds
the body to the stream ``pkgedge:purges`` with the names of the live shields; it then waits
until every node that was live has applied it, or until ``--purge-timeout``: each node
acknowledges by adding ``{node, purged}`` to the stream ``pkgedge:acks:ID``, which the
publisher reads with a blocking ``XREAD``. The answer names the nodes that did not
acknowledge.

Every node's worker 0 follows the stream with ``XREAD`` from the last ID it applied, kept in
``cache-dir/cluster-purges.json`` with Redis's epoch: a node that was down catches up from
there before it serves (worker 0 does it before it accepts); one whose ID the stream no
longer holds (trimmed) purges everything. The cursor is written once the follower has been
idle for :data:`SAVE_IDLE` s (at least every :data:`SAVE_EVERY` s while purges keep coming,
and when the node stops), not after every entry: after a crash the entries applied since the
last write are applied again, which is harmless (a purge of what is already gone purges
nothing; an object fetched again since is fetched once more). Ordering against the shield:
an ``edge``-tier node applies an entry only once every shield named in it has acknowledged
it (a blocking ``XREAD`` on its acknowledgements, at most the timeout after publication), so
no edge refills from a shield that still holds the old object.

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

from pkgedge.cluster.link import DOWN, LIVE, PREFIX, Client, Registry, log

STREAM = PREFIX + "purges"
EPOCH = PREFIX + "epoch"
#: ``ACKS + ID``: the stream of a purge's acknowledgements (fields ``node``, ``purged``)
ACKS = PREFIX + "acks:"
#: entries kept in the stream (a node down for longer purges everything when it returns)
MAXLEN = 10_000
#: seconds a purge's acknowledgements are kept (at least twice this node's purge timeout):
#: they are read only until the timeout has passed, and a stream takes ~4.7 KB in Redis
ACK_TTL = 60
#: the follower writes its cursor once idle for this long, or at least this often
SAVE_IDLE = 0.05
SAVE_EVERY = 1.0
_BATCH = 100

#: KEYS: the node set, the purge stream; ARGV: live since (a time), the stream's length, the
#: body, the key prefix → {the entry's ID, then name, tier of every live node}. One round
#: trip for what the publisher needs; the entry carries the live shields (a JSON list) for
#: the edges to wait for. (Node keys are built here: one Redis server, not a Redis Cluster.)
PUBLISH = """
local names = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
local out = {false}
local shields = {}
for _, name in ipairs(names) do
  local tier = redis.call('HGET', ARGV[4] .. 'node:' .. name, 'tier') or 'shield'
  out[#out + 1] = name
  out[#out + 1] = tier
  if tier == 'shield' then shields[#shields + 1] = name end
end
local listed = '[]'
if #shields > 0 then listed = cjson.encode(shields) end
out[1] = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                    'body', ARGV[3], 'shields', listed)
return out
"""

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
        self.blocking = blocking  # its own connections: XREAD BLOCK waits on them
        self.check = check
        self.apply = apply
        self.timeout = timeout
        self.cursor_path = Path(cache_dir) / "cluster-purges.json"
        self.outbox_path = Path(cache_dir) / "cluster-outbox.jsonl"
        self.last = "0-0"
        self.epoch = ""
        self.applied = 0
        self.saved = ""  # the cursor's ID in the file
        self._saved_at = 0.0
        self._script = client.register_script(PUBLISH)

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
        sid, tiers = await self._add(raw)
        live = set(tiers) | {self.name}  # this node always applies it
        counts = await self.acks(sid, live, time.time() + self.timeout)
        missing = sorted(live - set(counts))
        purged = counts.get(self.name, sum(counts.values()))
        result = {"purged": purged, "id": sid, "nodes": counts, "missing": missing}
        result["soft"] = bool(json.loads(raw or b"{}").get("soft"))
        return 200, json.dumps(result).encode()

    async def _add(self, raw: bytes) -> tuple[str, dict[str, str]]:
        """Add a purge to the stream: its ID, and the live nodes → their tier."""
        keys = [PREFIX + "nodes", STREAM]
        since = time.time() - LIVE
        got = await self._script(keys=keys, args=[since, MAXLEN, raw, PREFIX])
        pairs = [v.decode() for v in got[1:]]
        return got[0].decode(), dict(zip(pairs[::2], pairs[1::2], strict=True))

    async def acks(self, sid: str, want: set[str], deadline: float) -> dict[str, int]:
        """The acknowledgements of ``sid`` (node → objects purged) read until every node in
        ``want`` is among them or the time is ``deadline`` (``time.time()``)."""
        key, last = ACKS + sid, "0-0"
        got: dict[str, int] = {}
        while not want <= got.keys():
            left = deadline - time.time()
            if left > 0:  # XREAD's BLOCK 0 would wait for ever
                block = max(1, int(min(left, 1.0) * 1000))
                reply = await self.blocking.xread({key: last}, block=block)
            else:  # a last look, without waiting
                reply = await self.redis.xread({key: last})
            for eid, fields in reply[0][1] if reply else []:
                last = eid.decode()
                got[fields[b"node"].decode()] = int(fields[b"purged"])
            if left <= 0:
                break
        return got

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
                await self._add(json.loads(line)["body"].encode())
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
        self.saved, self._saved_at = self.last, time.monotonic()

    def save(self) -> None:
        """Write the cursor if it moved since it was last written (also when the node stops)."""
        if self.epoch and self.saved != self.last:
            self._save_cursor()

    async def start(self) -> None:
        """Where to follow from: the saved cursor, caught up from the stream."""
        r = self.redis
        await r.set(EPOCH, secrets.token_hex(8), nx=True)
        epoch = (await r.get(EPOCH) or b"").decode()
        newest = await r.xrevrange(STREAM, count=1)
        head = newest[0][0].decode() if newest else "0-0"
        # following already (Redis came back): where this process got to, newer than the file
        saved = (self.epoch, self.last) if self.epoch else self._load_cursor()
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
            self.save()

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
                idle = 1000 if self.saved == self.last else int(SAVE_IDLE * 1000)
                got = await self.blocking.xread({STREAM: self.last}, count=_BATCH, block=idle)
                if got:
                    await self._apply_all(got[0][1])
                if not got or time.monotonic() - self._saved_at >= SAVE_EVERY:
                    self.save()
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
        """Apply and acknowledge entries (the cursor moves; :meth:`save` writes it)."""
        for sid_raw, fields in entries:
            sid = sid_raw.decode()
            if self.registry.tier == "edge":
                await self._after_shields(sid, fields.get(b"shields"))
            status, body = self.apply(fields.get(b"body", b"{}"))
            count = json.loads(body).get("purged", 0) if status == 200 else -1
            await self.ack(sid, count)
            self.last = sid
            self.applied += 1

    async def ack(self, sid: str, count: int) -> None:
        """Tell the publisher (and the edges, if this is a shield) that ``sid`` is applied."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(ACKS + sid, {"node": self.name, "purged": count})
        pipe.expire(ACKS + sid, max(ACK_TTL, int(2 * self.timeout)))
        await pipe.execute()

    async def _after_shields(self, sid: str, listed: bytes | None) -> None:
        """Wait until every shield live at publication (``listed`` in the entry; the registry
        asked now for an entry without the list) has applied ``sid``, at most the purge
        timeout after it was published."""
        deadline = _ms(sid) + self.timeout
        if time.time() >= deadline:
            return  # an old entry (catching up): the shields applied it long ago, or never will
        if listed is not None:
            shields = {str(n) for n in json.loads(listed)}
        else:
            shields = {n for n, t in (await self.registry.live()).items() if t == "shield"}
        if shields:
            await self.acks(sid, shields, deadline)
