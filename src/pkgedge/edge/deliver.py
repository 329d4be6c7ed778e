"""Delivery: the one place responses are written to clients.

A stored object (ranges, 304s, compression, memory or disk, sendfile), a fetch in progress
(streamed from its file as it grows), a pass-through upstream response (relayed with
backpressure both ways), or a synthetic response built by the edge. A fresh hit whose body is
in memory is also remembered by the fast path (:mod:`pkgedge.edge.fastpath`), which replays
exactly what was written here.
"""

from __future__ import annotations

import os
import time

from pkgedge.cache import policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.memory import MemoryTier
from pkgedge.cache.store import Store
from pkgedge.config import EdgeSettings
from pkgedge.edge import shield
from pkgedge.edge.busy import BusyObject, State
from pkgedge.edge.context import Client, Ctx
from pkgedge.edge.fastpath import HotHits
from pkgedge.edge.peers import PEER
from pkgedge.edge.rulesrun import edited
from pkgedge.errors import PkgedgeError
from pkgedge.http import response as dl
from pkgedge.http.headers import Headers, as_map
from pkgedge.stats.counters import Counters
from pkgedge.upstream.client import UpstreamResponse

CHUNK = 256 * 1024
#: In-memory bodies up to this size are written in one piece with their head.
JOIN_MAX = 64 * 1024
_NOT_MODIFIED_KEEP = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)


class Delivery:
    """Writes responses for one worker; owns the memory tier's reads and writes."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: Store,
        memory: MemoryTier,
        counters: Counters,
        hot: HotHits,
    ) -> None:
        self.settings = settings
        self.store = store
        self.memory = memory
        self.counters = counters
        self.hot = hot
        self.edges = shield.TrustedEdges(settings.trusted_edges)
        self.peers = bool(settings.peers)  # edge/peers.py
        self.tiers = bool(settings.shield) or self.peers  # a Cache-Status of several members

    async def __call__(self, ctx: Ctx) -> None:
        """Write what the phases decided: one of synthetic, stored, busy or pass-through."""
        if self.tiers and "fwd=" in ctx.cache_status:
            ctx.cache_status = shield.both_tiers(_received(ctx), ctx.cache_status)
        if self.peers and self.edges.asks(ctx.req) and ctx.req.map.get(shield.TIER) == PEER:
            ctx.cache_status = shield.as_peer(ctx.cache_status)  # the owner answering a peer
        if ctx.synthetic is not None:
            ctx.client.write(ctx.synthetic)
            ctx.sent = len(ctx.synthetic)
        elif ctx.entry is not None:
            await self.stored(ctx, ctx.entry)
        elif ctx.response is not None:
            await self.relay(ctx, ctx.response)
        elif ctx.fill is not None:
            await self.stream(ctx, ctx.fill)
        else:  # pragma: no cover - the phase table makes this unreachable
            raise RuntimeError("deliver: nothing to deliver")

    def _trace_fields(self, ctx: Ctx) -> Headers:
        return [("pkgedge-trace", ctx.trace.header())] if ctx.trace is not None else []

    def _for_edge(self, ctx: Ctx, stored: Headers) -> Headers:
        """A shield answering its edge adds the edge-only fields (edge/shield.py)."""
        return shield.edge_fields(stored) if self.edges and self.edges.asks(ctx.req) else []

    def read_small(self, entry: Entry, coding: str | None) -> memoryview | None:
        """The body (or its encoded copy, made now if needed) from the memory tier, mapping
        its file on this worker's first access; None if it is gone (purged meanwhile)."""
        key = entry.objid + (coding or "")
        body = self.memory.get(key)
        if body is not None:
            return body
        files = self.store.files
        if coding is None:
            return self.memory.map(key, files.body_path(entry.objid), entry.size)
        body = self.memory.map(key, files.encoded_path(entry.objid, coding), None)
        if body is None and files.read_encoded(entry.objid, coding, dl.compress) is not None:
            body = self.memory.map(key, files.encoded_path(entry.objid, coding), None)
        return body

    async def stored(self, ctx: Ctx, entry: Entry) -> None:
        req, client = ctx.req, ctx.client
        close = not req.keep_alive
        now = time.time()
        self.store.touch(entry.objid)
        emap = as_map(entry.headers)
        age = int(entry.age(now))
        size = entry.size
        rng: tuple[int, int] | None = None
        if entry.status == 200 and "range" in req.map:
            if_range = req.map.get("if-range")
            if if_range is None or policy.if_range_matches(if_range, emap):
                try:
                    rng = dl.parse_range(req.map["range"], size)
                except dl.RangeNotSatisfiable:
                    self.range_error(ctx, size)
                    return
        small = size <= self.settings.memory_object_max
        coding = None
        if (
            rng is None
            and small
            and self.settings.compress
            and entry.status == 200
            and size >= dl.MIN_COMPRESS
            and dl.compressible(entry.headers)
        ):
            coding = dl.choose_encoding(req.map.get("accept-encoding"))
        headers = rep = dl.representation(entry.headers, coding)
        if ctx.resp_edits:
            headers = edited(headers, ctx.resp_edits)
        # Validators are those of the representation this request would get (an encoded
        # body has its own ETag), so the client's If-None-Match is compared with that.
        if 200 <= entry.status < 300 and policy.client_not_modified(
            req.method, req.map, as_map(headers) if coding else emap
        ):
            keep = [(n, v) for n, v in headers if n in _NOT_MODIFIED_KEEP]
            head = dl.response_head(
                304,
                keep,
                length=None,
                age=age,
                cache_status=ctx.cache_status,
                extra=self._trace_fields(ctx),
                close=close,
            ).replace(b"transfer-encoding: chunked\r\n", b"")
            client.write(head)
            ctx.status, ctx.sent = 304, len(head)
            return
        status = ctx.resp_status or entry.status
        first, last = 0, size - 1
        if rng is not None:
            first, last = rng
            status = 206
            headers = [*headers, ("content-range", f"bytes {first}-{last}/{size}")]
        body = self.read_small(entry, coding) if small else None
        ctx.status = status
        if body is not None:
            if rng is not None:
                body = body[first : last + 1]
            prefix = dl.head_prefix(status, headers)
            if ctx.fresh_hit and ctx.trace is None and not self.edges.asks(req):
                # a plain fresh hit: written the way the fast path will replay it (rules that
                # change a hit's fields do it alike for every request of one shape when the
                # fast path is on: see Ruleset.fast)
                ttl = int(entry.ttl(now))
                ctx.cache_status = f"pkgedge; hit; ttl={ttl}"
                head = dl.hit_head(prefix, age, ttl, len(body), close)
                if status == 200 and req.method == "GET":
                    self.hot.remember(ctx, entry, prefix, coding, (entry.status, rep))
            else:
                head = prefix + dl.head_tail(
                    length=len(body),
                    age=age,
                    cache_status=ctx.cache_status,
                    extra=[*self._trace_fields(ctx), *self._for_edge(ctx, entry.headers)],
                    close=close,
                )
            ctx.sent = send(client, head, b"" if req.method == "HEAD" else body)
            return
        head = dl.response_head(
            status,
            [*headers, *self._trace_fields(ctx)],
            length=last - first + 1,
            age=age,
            cache_status=ctx.cache_status,
            extra=self._for_edge(ctx, entry.headers),
            close=close,
        )
        client.write(head)
        ctx.sent = len(head)
        if req.method == "HEAD":
            return
        try:
            fd = os.open(self.store.body_path(entry.objid), os.O_RDONLY)
        except FileNotFoundError:
            client.abort()
            return
        try:
            ctx.sent += await send_file(client, fd, first, last + 1)
        finally:
            os.close(fd)

    def range_error(self, ctx: Ctx, size: int) -> None:
        data = dl.error_response(
            416,
            "range not satisfiable",
            close=not ctx.req.keep_alive,
            extra=[("content-range", f"bytes */{size}")],
        )
        ctx.client.write(data)
        ctx.status, ctx.sent = 416, len(data)

    async def stream(self, ctx: Ctx, fill: BusyObject) -> None:
        """Send a response whose body is still arriving, reading it from the fill's file."""
        req, client = ctx.req, ctx.client
        length = fill.length
        headers = dl.representation(fill.headers, None)
        if ctx.resp_edits:
            headers = edited(headers, ctx.resp_edits)
        status = ctx.resp_status or fill.status
        first, end = 0, length
        if (
            length is not None
            and status == 200
            and "range" in req.map
            and "if-range" not in req.map
        ):
            try:
                rng = dl.parse_range(req.map["range"], length)
            except dl.RangeNotSatisfiable:
                self.range_error(ctx, length)
                return
            if rng is not None:
                first, end = rng[0], rng[1] + 1
                status = 206
                headers = [*headers, ("content-range", f"bytes {rng[0]}-{rng[1]}/{length}")]
        head = dl.response_head(
            status,
            [*headers, *self._trace_fields(ctx)],
            length=None if end is None else end - first,
            age=int(fill.initial_age + max(0.0, time.time() - fill.response_time)),
            cache_status=ctx.cache_status,
            extra=self._for_edge(ctx, fill.headers),
            close=not req.keep_alive,
        )
        client.write(head)
        ctx.status, ctx.sent = status, len(head)
        if req.method == "HEAD":
            return
        ctx.sent += await _follow(client, fill, first, end)

    async def relay(self, ctx: Ctx, resp: UpstreamResponse) -> None:
        """Relay an upstream response that is not stored, with backpressure both ways."""
        req, client = ctx.req, ctx.client
        rmap = as_map(resp.headers)
        clen = rmap.get("content-length")
        no_body = req.method == "HEAD" or resp.status in (204, 304)
        length = int(clen) if clen and clen.isdigit() else (0 if no_body else None)
        pass_headers = (
            edited(ctx.pass_headers, ctx.resp_edits) if ctx.resp_edits else ctx.pass_headers
        )
        head = dl.response_head(
            ctx.resp_status or resp.status,
            [*pass_headers, *self._trace_fields(ctx)],
            length=length,
            age=None,
            cache_status=ctx.cache_status,
            close=not req.keep_alive,
        )
        if no_body and resp.status in (204, 304):
            head = head.replace(b"content-length: 0\r\n", b"")
        client.write(head)
        ctx.status, ctx.sent = resp.status, len(head)
        if no_body:
            if req.method == "HEAD":
                resp.close()
            else:
                resp.release()
            return
        try:
            while chunk := await resp.read():
                self.counters.add("bytes_from_origin", len(chunk))
                client.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n" if length is None else chunk)
                ctx.sent += len(chunk)
                await client.drain()
                if client.closed:
                    resp.close()
                    break
            else:
                if length is None:
                    client.write(b"0\r\n\r\n")
        except PkgedgeError:
            client.abort()


def send(client: Client, head: bytes, body: bytes | memoryview) -> int:
    """Write a head and an in-memory body: joined when small (one copy, one system call),
    else the body straight from the memory tier's mapping (no copy). Returns bytes written."""
    if len(body) <= JOIN_MAX:
        data = head + body
        client.write(data)
        return len(data)
    client.write(head)
    client.write(body)
    return len(head) + len(body)


async def send_file(client: Client, fd: int, start: int, end: int) -> int:
    """Send bytes ``start..end`` of a complete file: sendfile(2) where the client offers it."""
    sendfile = getattr(client, "sendfile", None)
    if sendfile is not None:
        sent: int = await sendfile(fd, start, end - start)
        if sent < end - start:
            client.abort()
        return sent
    sent = 0
    offset = start
    while offset < end and not client.closed:
        data = os.pread(fd, min(CHUNK, end - offset), offset)
        if not data:
            client.abort()
            break
        client.write(data)
        offset += len(data)
        sent += len(data)
        await client.drain()
    return sent


async def _follow(client: Client, fill: BusyObject, first: int, end: int | None) -> int:
    """Copy a growing body from ``first`` to ``end`` (None: to its end, chunked)."""
    chunked = end is None
    sent = 0
    offset = first
    fd = -1
    try:
        while not client.closed:
            if fd < 0:
                for p in fill.body_paths():
                    try:
                        fd = os.open(p, os.O_RDONLY)
                        break
                    except FileNotFoundError:
                        continue
            limit = fill.written if end is None else min(fill.written, end)
            if fd >= 0 and offset < limit:
                data = os.pread(fd, min(CHUNK, limit - offset), offset)
                if data:
                    client.write(b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data)
                    offset += len(data)
                    sent += len(data)
                    await client.drain()
                    continue
            if end is not None and offset >= end:
                break
            if fill.state is State.DONE:
                if end is None and offset >= fill.written:
                    client.write(b"0\r\n\r\n")
                    break
                continue
            if fill.state in (State.FAILED, State.GONE):
                client.abort()  # the body cannot be completed: the client must see it
                break
            await fill.wait_progress()
    finally:
        if fd >= 0:
            os.close(fd)
    return sent


def _received(ctx: Ctx) -> Headers:
    """The fields the response being delivered came with (its shield's Cache-Status)."""
    if ctx.entry is not None:
        return ctx.entry.headers
    if ctx.response is not None:
        return ctx.pass_headers
    return ctx.fill.headers if ctx.fill is not None else []
