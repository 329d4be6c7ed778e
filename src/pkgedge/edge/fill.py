"""The fetch side: one origin fetch per object, that any number of clients wait on.

A :class:`Fill` is Varnish's "busy object": the first miss for a key starts it, later misses
for the same key (in this worker) join it, and every waiter streams the body from the fill's
file as bytes arrive. Misses in *other* workers see the fill through the disk tier's ``busy``
table and follow it with a :class:`RemoteFill`, which polls the same file. The body goes to
disk, never into memory, so a 1 GB object costs every waiter a fixed-size buffer.
"""

from __future__ import annotations

import asyncio
import enum
import marshal
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pkgedge.cache import fields, policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import vary_names
from pkgedge.errors import PkgedgeError, UpstreamError
from pkgedge.http.headers import Headers, as_map
from pkgedge.upstream.client import UpstreamResponse

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Edge

#: 5xx answers from the origin that count as errors for stale-if-error.
ORIGIN_ERRORS = frozenset({500, 502, 503, 504})
_REWRITE_LIMIT = 64 << 20


class State(enum.Enum):
    PENDING = "pending"  # waiting for the origin's head
    STREAMING = "streaming"  # body arriving into the file
    DONE = "done"  # complete and committed
    NOT_MODIFIED = "not-modified"  # revalidated: the stored object was refreshed
    PASS = "pass"  # not storable: the response goes to one client only
    FAILED = "failed"  # the origin failed; waiters may serve stale-if-error
    GONE = "gone"  # (remote) the fill ended without a result we can read: look up again


def new_objid() -> str:
    return secrets.token_hex(12)


class Fill:
    """A fetch in this worker."""

    remote = False

    def __init__(
        self,
        edge: Edge,
        ckey: bytes,
        primary: bytes,
        path: str,
        origin: str,
        target: str,
        headers: Headers,
        req_map: dict[str, str],
        stale: Entry | None,
        stale_key: bytes | None,
    ) -> None:
        self.edge = edge
        self.ckey = ckey
        self.primary = primary
        self.path = path
        self.origin = origin
        self.target = target
        self.req_headers = headers
        self.req_map = req_map
        self.stale = stale
        self.stale_key = stale_key
        self.objid = new_objid()
        self.state = State.PENDING
        self.status = 0
        self.headers: Headers = []
        self.length: int | None = None
        self.written = 0
        self.initial_age = 0.0
        self.response_time = 0.0
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.waiters = 0
        self.stored = False
        self.why = ""
        self._pass: UpstreamResponse | None = None
        self._event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"<Fill {self.ckey!r} {self.state.value} written={self.written} waiters={self.waiters}>"
        )

    @property
    def file_path(self) -> Path:
        return self.edge.store.tmp_path(self.objid)

    def body_paths(self) -> tuple[Path, Path]:
        return self.edge.store.tmp_path(self.objid), self.edge.store.body_path(self.objid)

    def notify(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def wait_progress(self) -> None:
        await self._event.wait()

    def take_pass(self) -> UpstreamResponse | None:
        resp, self._pass = self._pass, None
        return resp

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        edge = self.edge
        tmp = self.file_path
        edge.fetching += 1
        try:
            await self._fetch(tmp)
        except (PkgedgeError, OSError) as exc:
            self.error = exc
            self.state = State.FAILED
            edge.counters.add("origin_errors")
        except asyncio.CancelledError:
            self.error = UpstreamError("fetch cancelled (shutting down)")
            self.state = State.FAILED
            raise
        finally:
            if self.state is not State.DONE:
                for p in (tmp, Path(str(tmp) + ".head")):
                    try:
                        p.unlink()
                    except FileNotFoundError:
                        pass
                edge.store.unclaim(self.ckey, self.objid)
            else:
                try:
                    Path(str(tmp) + ".head").unlink()
                except FileNotFoundError:
                    pass
            edge.fills.pop(self.ckey, None)
            edge.fetching -= 1
            self.notify()

    def _publish_head(self, kind: str) -> None:
        """Tell waiters in other workers what this fill became (atomic rename)."""
        head = Path(str(self.file_path) + ".head")
        part = Path(str(head) + ".part")
        part.write_bytes(
            marshal.dumps(
                (kind, self.status, self.headers, self.length, self.initial_age, self.response_time)
            )
        )
        os.replace(part, head)

    async def _fetch(self, tmp: Path) -> None:
        edge = self.edge
        headers = list(self.req_headers)
        if self.stale is not None:
            cond = policy.conditional_headers(as_map(self.stale.headers))
            headers.extend(cond.items())
            edge.counters.add("revalidations")
        pool = edge.pool(self.origin)
        request_time = time.time()
        edge.counters.add("origin_fetches")
        resp = await pool.request("GET", self.target, headers)
        response_time = time.time()
        self.status = resp.status
        rmap = as_map(resp.headers)
        self.response_time = response_time
        self.initial_age = policy.initial_age(
            rmap, request_time=request_time, response_time=response_time
        )
        stale = self.stale
        if (
            stale is not None
            and resp.status == 304
            and not policy.not_modified_selects(as_map(stale.headers), rmap)
        ):
            resp.release()  # RFC 9111 §4.3.4: a 304 for another representation
            self.stale = None
            return await self._fetch(tmp)  # fetch it whole, unconditionally
        if self.stale is not None and resp.status == 304 and self.stale_key is not None:
            resp.release()
            merged = policy.merge_not_modified(self.stale.headers, rmap)
            fr = policy.freshness(
                self.stale.status,
                as_map(merged),
                response_time=response_time,
                default_ttl=edge.settings.default_ttl,
            )
            e = self.stale
            e.headers = fields.stored_fields(merged, response_time)
            e.response_time = response_time
            e.initial_age = policy.initial_age(
                rmap, request_time=request_time, response_time=response_time
            )
            e.lifetime, e.swr, e.sie = fr.lifetime, fr.swr, fr.sie
            e.must_revalidate, e.no_cache, e.soft_purged = fr.must_revalidate, fr.no_cache, False
            edge.store.update(self.stale_key, e)
            edge.counters.add("not_modified")
            self.entry = e
            self.state = State.NOT_MODIFIED
            self._publish_head("nm")
            self.notify()
            return
        if resp.status in ORIGIN_ERRORS and self.stale is not None:
            resp.close()
            raise UpstreamError(f"origin answered {resp.status}")
        ok, why = policy.storable(
            "GET", resp.status, self.req_map, rmap, default_ttl=edge.settings.default_ttl
        )
        stored = fields.stored_fields(resp.headers, response_time)
        stored = edge.rewrite_location(stored, self.origin + self.target)
        if not ok:
            # not stored: the one client it goes to gets every end-to-end field (Set-Cookie
            # included), minus the edge-only ones
            self.headers = edge.rewrite_location(
                fields.forwarded_fields(resp.headers, response_time),
                self.origin + self.target,
            )
            self.why = why
            self._pass = resp
            self.state = State.PASS
            self._publish_head("pass")
            self.notify()
            return
        clen = rmap.get("content-length")
        self.length = int(clen) if clen and clen.isdigit() else None
        ctype = rmap.get("content-type", "").lower()
        rewrite = edge.should_rewrite(self.path, ctype)
        body: bytes | None = None
        if rewrite:
            body = await resp.read_all(_REWRITE_LIMIT)
            edge.counters.add("bytes_from_origin", len(body))
            body = edge.rewrite_page(body, ctype, self.origin + self.target)
            self.length = len(body)
        self.headers = stored
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.state = State.STREAMING
            self._publish_head("obj")
            self.notify()
            if body is not None:
                os.write(fd, body)
                self.written = len(body)
                self.notify()
            else:
                while chunk := await resp.read():
                    view = memoryview(chunk)
                    while view:
                        n = os.write(fd, view)
                        view = view[n:]
                    self.written += len(chunk)
                    edge.counters.add("bytes_from_origin", len(chunk))
                    self.notify()
        finally:
            os.close(fd)
        if self.length is not None and self.written != self.length:
            raise UpstreamError(
                f"origin sent {self.written} bytes, Content-Length said {self.length}"
            )
        self.length = self.written
        fr = policy.freshness(
            resp.status, rmap, response_time=response_time, default_ttl=edge.settings.default_ttl
        )
        keys = rmap.get("surrogate-key", "").split()
        entry = Entry(
            self.objid,
            resp.status,
            stored,
            response_time=response_time,
            initial_age=self.initial_age,
            lifetime=fr.lifetime,
            swr=fr.swr,
            sie=fr.sie,
            must_revalidate=fr.must_revalidate,
            no_cache=fr.no_cache,
            size=self.written,
            keys=keys,
        )
        vary = vary_names(rmap.get("vary"))
        vkey = edge.store.variant_key(self.primary, rmap.get("vary"), self.req_map, self.path)
        edge.store.commit(self.primary, vkey, entry, vary, tmp)
        if self.ckey != vkey:
            edge.store.unclaim(self.ckey, self.objid)
        self.entry = entry
        self.stored = True
        self.state = State.DONE


class RemoteFill:
    """A fill running in another worker, followed through the disk tier and its files."""

    remote = True
    POLL = 0.005

    def __init__(self, edge: Edge, ckey: bytes, pid: int, objid: str) -> None:
        self.edge = edge
        self.ckey = ckey
        self.pid = pid
        self.objid = objid
        self.state = State.PENDING
        self.status = 0
        self.headers: Headers = []
        self.length: int | None = None
        self.written = 0
        self.initial_age = 0.0
        self.response_time = 0.0
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.waiters = 1
        self.stored = True
        self.why = ""

    def body_paths(self) -> tuple[Path, Path]:
        return self.edge.store.tmp_path(self.objid), self.edge.store.body_path(self.objid)

    def take_pass(self) -> UpstreamResponse | None:
        return None

    async def wait_progress(self) -> None:
        await asyncio.sleep(self.POLL)
        self.refresh()

    def refresh(self) -> None:
        store = self.edge.store
        tmp, final = self.body_paths()
        if self.state is State.PENDING:
            try:
                (
                    kind,
                    self.status,
                    self.headers,
                    self.length,
                    self.initial_age,
                    self.response_time,
                ) = marshal.loads(Path(str(tmp) + ".head").read_bytes())
            except (FileNotFoundError, EOFError, ValueError):
                if store.busy(self.ckey) is None:
                    self.state = State.GONE
                return
            self.state = State.STREAMING if kind == "obj" else State.GONE
            if self.state is State.GONE:
                return
        if self.state is State.STREAMING:
            for p in (tmp, final):
                try:
                    self.written = p.stat().st_size
                    break
                except FileNotFoundError:
                    continue
            if self.length is not None and self.written >= self.length:
                self.state = State.DONE
            elif store.busy(self.ckey) is None and not tmp.exists():
                self.state = State.DONE if final.exists() else State.FAILED
                if self.state is State.DONE:
                    self.written = final.stat().st_size
                    self.length = self.written
