"""Delivery: writing responses to clients from stored objects, fills in progress and
pass-through upstream responses (ranges, 304s, compression, chunked framing, backpressure)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Protocol

from pkgedge.cache import policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.eviction import S3FIFO
from pkgedge.cache.store import Store
from pkgedge.config import EdgeSettings
from pkgedge.edge.fill import Fill, RemoteFill, State
from pkgedge.edge.phases import Trace
from pkgedge.errors import PkgedgeError
from pkgedge.http import response as dl
from pkgedge.http.headers import Headers, as_map
from pkgedge.stats.counters import Counters
from pkgedge.upstream.client import UpstreamResponse

if TYPE_CHECKING:
    from pkgedge.http.request import Request

CHUNK = 256 * 1024
_NOT_MODIFIED_KEEP = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)


class Client(Protocol):
    """What delivery needs from a client connection (the server implements it)."""

    closed: bool

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def peer(self) -> str: ...


class Responder:
    """Writes responses for one worker; owns the memory tier's reads and writes."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: Store,
        memory: S3FIFO[str, bytes],
        counters: Counters,
    ) -> None:
        self.settings = settings
        self.store = store
        self.memory = memory
        self.counters = counters

    def error(self, client: Client, req: Request, status: int, reason: str) -> tuple[int, int, str]:
        data = dl.error_response(status, reason, close=not req.keep_alive)
        client.write(data)
        return status, len(data), "error"

    def encoded_headers(self, headers: Headers, coding: str) -> Headers:
        out = dl.add_vary(headers, "Accept-Encoding")
        out = [*out, ("content-encoding", coding)]
        for n, v in headers:
            if n == "etag":
                out = dl.replace_header(out, "etag", dl.encoded_etag(v, coding))
        return out

    def read_small(self, entry: Entry, coding: str | None) -> bytes | None:
        """The body (or its encoded form) from the memory tier or the disk tier."""
        mkey = entry.objid + (coding or "")
        body = self.memory.get(mkey)
        if body is not None:
            return body
        if coding is None:
            body = self.store.files.read(entry.objid, entry.size)
        else:
            body = self.store.files.read_encoded(entry.objid, coding, dl.compress)
        if body is None:
            return None
        self.memory.put(mkey, body, len(body))
        return body

    async def deliver(
        self, req: Request, client: Client, entry: Entry, cache_status: str, trace: Trace | None
    ) -> tuple[int, int, str]:
        now = time.time()
        self.store.touch(entry.objid)
        emap = as_map(entry.headers)
        extra = [("pkgedge-trace", trace.header())] if trace else []
        age = int(entry.age(now))
        size = entry.size
        rng: tuple[int, int] | None = None
        if entry.status == 200 and "range" in req.map:
            if_range = req.map.get("if-range")
            if if_range is None or policy.if_range_matches(if_range, emap):
                try:
                    rng = dl.parse_range(req.map["range"], size)
                except dl.RangeNotSatisfiable:
                    return self.range_error(client, req, size, cache_status)
        coding = None
        headers = entry.headers
        small = size <= self.settings.memory_object_max
        if dl.compressible(headers):
            if (
                rng is None
                and small
                and self.settings.compress
                and entry.status == 200
                and size >= dl.MIN_COMPRESS
            ):
                coding = dl.choose_encoding(req.map.get("accept-encoding"))
            headers = (
                self.encoded_headers(headers, coding)
                if coding
                else dl.add_vary(headers, "Accept-Encoding")
            )
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
                cache_status=cache_status,
                extra=extra,
                close=not req.keep_alive,
            )
            head = head.replace(b"transfer-encoding: chunked\r\n", b"")
            client.write(head)
            return 304, len(head), cache_status
        status = entry.status
        first, last = 0, size - 1
        if rng is not None:
            first, last = rng
            status = 206
            headers = [*headers, ("content-range", f"bytes {first}-{last}/{size}")]
        headers = [*headers, *extra]
        body = self.read_small(entry, coding) if small else None
        if body is not None:
            if rng is not None:
                body = body[first : last + 1]
            head = dl.response_head(
                status,
                headers,
                length=len(body),
                age=age,
                cache_status=cache_status,
                close=not req.keep_alive,
            )
            if req.method == "HEAD":
                body = b""
            client.write(head + body)
            return status, len(head) + len(body), cache_status
        head = dl.response_head(
            status,
            headers,
            length=last - first + 1,
            age=age,
            cache_status=cache_status,
            close=not req.keep_alive,
        )
        client.write(head)
        if req.method == "HEAD":
            return status, len(head), cache_status
        try:
            fd = os.open(self.store.body_path(entry.objid), os.O_RDONLY)
        except FileNotFoundError:
            client.abort()
            return status, len(head), cache_status
        try:
            sent = await self.send_file(client, fd, first, last + 1)
        finally:
            os.close(fd)
        return status, len(head) + sent, cache_status

    def range_error(
        self, client: Client, req: Request, size: int, cache_status: str
    ) -> tuple[int, int, str]:
        data = dl.error_response(
            416,
            "range not satisfiable",
            close=not req.keep_alive,
            extra=[("content-range", f"bytes */{size}")],
        )
        client.write(data)
        return 416, len(data), cache_status

    async def send_file(self, client: Client, fd: int, start: int, end: int) -> int:
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

    async def stream_fill(
        self,
        req: Request,
        client: Client,
        fill: Fill | RemoteFill,
        cache_status: str,
        trace: Trace | None,
    ) -> tuple[int, int, str]:
        """Send a response whose body is still arriving, reading it from the fill's file."""
        length = fill.length
        headers = list(fill.headers)
        if dl.compressible(headers):
            headers = dl.add_vary(headers, "Accept-Encoding")
        status = fill.status
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
                return self.range_error(client, req, length, cache_status)
            if rng is not None:
                first, end = rng[0], rng[1] + 1
                status = 206
                headers.append(("content-range", f"bytes {rng[0]}-{rng[1]}/{length}"))
        if trace:
            headers.append(("pkgedge-trace", trace.header()))
        chunked = end is None
        head = dl.response_head(
            status,
            headers,
            length=None if end is None else end - first,
            age=int(fill.initial_age + max(0.0, time.time() - fill.response_time)),
            cache_status=cache_status,
            close=not req.keep_alive,
        )
        client.write(head)
        if req.method == "HEAD":
            return status, len(head), cache_status
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
                        if chunked:
                            client.write(b"%x\r\n" % len(data) + data + b"\r\n")
                        else:
                            client.write(data)
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
        return status, len(head) + sent, cache_status

    async def stream_response(
        self,
        req: Request,
        client: Client,
        resp: UpstreamResponse,
        headers: Headers,
        cache_status: str,
    ) -> tuple[int, int, str]:
        """Relay an upstream response that is not stored, with backpressure both ways."""
        rmap = as_map(resp.headers)
        clen = rmap.get("content-length")
        no_body = req.method == "HEAD" or resp.status in (204, 304)
        length = int(clen) if clen and clen.isdigit() else (0 if no_body else None)
        head = dl.response_head(
            resp.status,
            headers,
            length=length,
            age=None,
            cache_status=cache_status,
            close=not req.keep_alive,
        )
        if no_body and resp.status in (204, 304):
            head = head.replace(b"content-length: 0\r\n", b"")
        client.write(head)
        sent = len(head)
        if no_body:
            if req.method == "HEAD":
                resp.close()
            else:
                resp.release()
            return resp.status, sent, cache_status
        try:
            while chunk := await resp.read():
                self.counters.add("bytes_from_origin", len(chunk))
                client.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n" if length is None else chunk)
                sent += len(chunk)
                await client.drain()
                if client.closed:
                    resp.close()
                    break
            else:
                if length is None:
                    client.write(b"0\r\n\r\n")
        except PkgedgeError:
            client.abort()
        return resp.status, sent, cache_status
