"""The fetch side: one origin fetch per object, that any number of clients wait on.

A :class:`Fill` is the busy object of a fetch in this worker; misses in *other* workers see it
through the disk tier's ``busy`` table and follow it with a :class:`RemoteFill`, which polls
the same file. The body goes to disk, never into memory, so a 1 GB object costs every waiter
a fixed-size buffer. :class:`Fills` is the worker's table of fetches in progress and its count
of origin fetches (the cap that protects the origin).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from pkgedge.cache import fields, policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import vary_names
from pkgedge.cache.store import Store
from pkgedge.edge.backend import Backend
from pkgedge.edge.busy import BusyObject, BusyState, State
from pkgedge.edge.rulesrun import FetchHook, FetchRuling, RuleAnswer
from pkgedge.errors import PkgedgeError, UpstreamError
from pkgedge.http.headers import Headers, as_map
from pkgedge.stats.counters import Counters
from pkgedge.upstream.client import UpstreamResponse

#: 5xx answers from the origin that count as errors for stale-if-error.
ORIGIN_ERRORS = frozenset({500, 502, 503, 504})
_REWRITE_LIMIT = 64 << 20
log = logging.getLogger("pkgedge.edge")


@dataclass(frozen=True, slots=True)
class FetchSpec:
    """What to fetch for a miss, and which stored object (if any) it revalidates."""

    ckey: bytes  # the key misses collapse on
    primary: bytes  # the primary cache key
    path: str  # the cache path (for Vary on the simple API)
    route: tuple[str, str]  # (origin, target)
    headers: Headers  # request fields sent to the origin
    req_map: dict[str, str]  # the client's request fields (storability, Vary)
    stale: Entry | None  # the object being revalidated
    stale_key: bytes | None  # its variant key
    on_response: FetchHook | None = None  # the rules' fetch sub (edge/rulesrun.py)


def new_objid() -> str:
    return secrets.token_hex(12)


class Fills:
    """Fetches in progress in this worker, and how many origin fetches are running."""

    def __init__(
        self, store: Store, backend: Backend, counters: Counters, default_ttl: float
    ) -> None:
        self.store = store
        self.backend = backend
        self.counters = counters
        self.default_ttl = default_ttl
        self.active: dict[bytes, Fill] = {}
        self.fetching = 0

    def __repr__(self) -> str:
        return f"<Fills active={len(self.active)} fetching={self.fetching}>"

    def join(self, ckey: bytes) -> Fill | None:
        fill = self.active.get(ckey)
        if fill is not None:
            fill.waiters += 1
        return fill

    def busy(self, ckey: bytes) -> bool:
        return ckey in self.active or self.store.busy(ckey) is not None

    def start(self, spec: FetchSpec) -> BusyObject | Entry:
        """Start the fetch of ``spec.ckey``, or follow the one another worker started; or
        the fresh object another worker stored between this request's look-up and the claim
        (its claim was released when it stored it: the look-up is made again once claimed)."""
        objid = new_objid()
        owner = self.store.claim(spec.ckey, objid)
        if owner is not None and owner[0] != os.getpid():
            return RemoteFill(self.store, spec.ckey, owner[1])
        if spec.stale is None:
            _, entry = self.store.lookup(spec.primary, spec.req_map, spec.path)
            if entry is not None and entry.ttl(time.time()) > 0:
                self.store.unclaim(spec.ckey, objid)
                return entry
        fill = Fill(self, objid, spec)
        self.active[spec.ckey] = fill
        fill.task = asyncio.get_running_loop().create_task(fill.run())
        return fill

    async def cancel_all(self) -> None:
        tasks = [f.task for f in self.active.values() if f.task is not None]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class Fill(BusyState):
    """A fetch in this worker."""

    def __init__(self, fills: Fills, objid: str, spec: FetchSpec) -> None:
        super().__init__(spec.ckey, objid)
        self.fills = fills
        self.store = fills.store
        self.primary = spec.primary
        self.path = spec.path
        self.origin, self.target = spec.route
        self.req_headers = spec.headers
        self.req_map = spec.req_map
        self.stale = spec.stale
        self.stale_key = spec.stale_key
        self.on_response = spec.on_response
        self._pass: UpstreamResponse | None = None
        self._event = asyncio.Event()
        self.via_peer = False  # answered by the peer that owns the path (edge/peers.py)
        self.task: asyncio.Task[None] | None = None

    @property
    def _tmp(self) -> Path:
        return self.store.tmp_path(self.objid)

    def body_paths(self) -> tuple[Path, Path]:
        return self._tmp, self.store.body_path(self.objid)

    def _notify(self) -> None:
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    async def wait_progress(self) -> None:
        await self._event.wait()

    def take_pass(self) -> UpstreamResponse | None:
        resp, self._pass = self._pass, None
        return resp

    async def run(self) -> None:
        fills = self.fills
        fills.fetching += 1
        try:
            await self._fetch()
        except RuleAnswer as exc:  # the rules answered instead of the origin
            self.error = exc
            self.state = State.FAILED
        except (PkgedgeError, OSError) as exc:
            self.error = exc
            self.state = State.FAILED
            fills.counters.add("origin_errors")
            kept = "; the stored copy is kept" if self.stale is not None else ""
            log.warning("origin fetch of %s failed: %s%s", self.target, exc, kept)
        except asyncio.CancelledError:
            self.error = UpstreamError("fetch cancelled (shutting down)")
            self.state = State.FAILED
            raise
        finally:
            self.store.files.drop_tmp(self.objid)
            if self.state is not State.DONE:
                self.store.unclaim(self.ckey, self.objid)
            fills.active.pop(self.ckey, None)
            fills.fetching -= 1
            self._notify()

    def _location(self, headers: Headers) -> Headers:
        """A redirect's Location rewritten to stay on the edge (a peer's already is)."""
        if self.via_peer:
            return headers
        return self.fills.backend.rewrite_location(headers, self.origin + self.target)

    def _publish(self, kind: str) -> None:
        """Tell waiters in other workers what this fill became (atomic rename)."""
        self.store.files.publish_head(self.objid, self.head_record(kind))
        self._notify()

    async def _fetch(self) -> None:
        fills, backend = self.fills, self.fills.backend
        headers = list(self.req_headers)
        if self.stale is not None:
            headers.extend(policy.conditional_headers(as_map(self.stale.headers)).items())
            fills.counters.add("revalidations")
        request_time = time.time()
        fills.counters.add("origin_fetches")
        # no stored copy to fall back on: the director may ask the fallback backend
        resp, self.via_peer = await backend.fill_fetch(
            self.path,
            (self.origin, self.target),
            headers,
            self.req_map,
            failover=self.stale is None,
        )
        self.response_time = response_time = time.time()
        self.status = resp.status
        rmap = as_map(resp.headers)
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
            return await self._fetch()  # fetch it whole, unconditionally
        if self.stale is not None and resp.status == 304 and self.stale_key is not None:
            resp.release()
            self._refresh(self.stale, self.stale_key, rmap)
            self.state = State.NOT_MODIFIED
            self._publish("nm")
            return
        if resp.status in ORIGIN_ERRORS and self.stale_key is not None:
            # a stored object is never replaced by an error page (also after a 304 for
            # another representation made this an unconditional refetch)
            resp.close()
            raise UpstreamError(f"origin answered {resp.status}")
        fr = policy.freshness(
            resp.status, rmap, response_time=response_time, default_ttl=fills.default_ttl
        )
        ruling: FetchRuling | None = None
        if self.on_response is not None:
            try:
                ruling = self.on_response(resp.status, resp.headers, (fr.lifetime, fr.swr, fr.sie))
            except RuleAnswer:
                resp.close()
                raise
            resp.headers = ruling.headers
            rmap = as_map(resp.headers)
        ok, why = policy.storable(
            "GET", resp.status, self.req_map, rmap, default_ttl=fills.default_ttl
        )
        if ruling is not None:
            if ruling.uncacheable:
                ok, why = False, "rules"
            elif not ok and why == "no-freshness" and (ruling.ttl or 0) > 0:
                ok = True  # the rules gave it a lifetime
        if not ok:
            # not stored: the one client it goes to gets every end-to-end field (Set-Cookie
            # included), minus the edge-only ones
            self.headers = self._location(fields.forwarded_fields(resp.headers, response_time))
            self.why = why
            self._pass = resp
            self.state = State.PASS
            self._publish("pass")
            return
        stored = fields.stored_fields(resp.headers, response_time)
        self.headers = self._location(stored)
        clen = rmap.get("content-length")
        self.length = int(clen) if clen and clen.isdigit() else None
        ctype = rmap.get("content-type", "").lower()
        body: bytes | None = None
        if backend.should_rewrite(ctype):
            page_url = self.origin + self.target
            body = await resp.read_all(_REWRITE_LIMIT)
            fills.counters.add("bytes_from_origin", len(body))
            if self.via_peer:  # already in this tier's form (edge/peers.py)
                await backend.learn_hosts(body)
            else:
                body = await backend.rewrite_page(body, ctype, page_url)
            self.length = len(body)
        await self._write_body(resp, body)
        lifetime, swr, sie = fr.lifetime, fr.swr, fr.sie
        keys = rmap.get("surrogate-key", "").split()
        if ruling is not None:
            lifetime = lifetime if ruling.ttl is None else ruling.ttl
            swr = swr if ruling.swr is None else ruling.swr
            sie = sie if ruling.sie is None else ruling.sie
            keys.extend(k for k in ruling.keys if k not in keys)
        entry = Entry(
            self.objid,
            resp.status,
            self.headers,
            response_time=response_time,
            initial_age=self.initial_age,
            lifetime=lifetime,
            swr=swr,
            sie=sie,
            must_revalidate=fr.must_revalidate,
            no_cache=fr.no_cache,
            size=self.written,
            keys=keys,
        )
        vkey = self.store.variant_key(self.primary, rmap.get("vary"), self.req_map, self.path)
        self.store.commit(self.primary, vkey, entry, vary_names(rmap.get("vary")), self._tmp)
        if self.ckey != vkey:
            self.store.unclaim(self.ckey, self.objid)
        self.entry = entry
        self.state = State.DONE

    async def _write_body(self, resp: UpstreamResponse, body: bytes | None) -> None:
        """Stream the body into the temp file, telling waiters after every chunk."""
        fd, _ = self.store.files.open_tmp(self.objid)
        try:
            self.state = State.STREAMING
            self._publish("obj")
            if body is not None:
                os.write(fd, body)
                self.written = len(body)
                self._notify()
            else:
                while chunk := await resp.read():
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    self.written += len(chunk)
                    self.fills.counters.add("bytes_from_origin", len(chunk))
                    self._notify()
        finally:
            os.close(fd)
        if self.length is not None and self.written != self.length:
            raise UpstreamError(
                f"origin sent {self.written} bytes, Content-Length said {self.length}"
            )
        self.length = self.written

    def _refresh(self, e: Entry, key: bytes, rmap: dict[str, str]) -> None:
        """A 304: update the stored object's fields and freshness (RFC 9111 §4.3.4)."""
        merged = policy.merge_not_modified(e.headers, rmap)
        fr = policy.freshness(
            e.status,
            as_map(merged),
            response_time=self.response_time,
            default_ttl=self.fills.default_ttl,
        )
        e.headers = fields.stored_fields(merged, self.response_time)
        e.response_time = self.response_time
        e.initial_age = self.initial_age
        e.lifetime, e.swr, e.sie = fr.lifetime, fr.swr, fr.sie
        e.must_revalidate, e.no_cache, e.soft_purged = fr.must_revalidate, fr.no_cache, False
        self.store.update(key, e)
        self.fills.counters.add("not_modified")
        self.entry = e


class RemoteFill(BusyState):
    """A fill running in another worker, followed through the disk tier and its files."""

    POLL = 0.005

    def __init__(self, store: Store, ckey: bytes, objid: str) -> None:
        super().__init__(ckey, objid)
        self.store = store

    def body_paths(self) -> tuple[Path, Path]:
        return self.store.tmp_path(self.objid), self.store.body_path(self.objid)

    def take_pass(self) -> UpstreamResponse | None:
        return None

    async def wait_progress(self) -> None:
        await asyncio.sleep(self.POLL)
        self.refresh()

    def refresh(self) -> None:
        tmp, final = self.body_paths()
        if self.state is State.PENDING:
            record = self.store.files.read_head(self.objid)
            if record is None or len(record) != 6:
                if self.store.busy(self.ckey) is None:
                    self.state = State.GONE
                return
            self.state = State.STREAMING if self.adopt_head(record) == "obj" else State.GONE
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
            elif self.store.busy(self.ckey) is None and not tmp.exists():
                self.state = State.DONE if final.exists() else State.FAILED
                if self.state is State.DONE:
                    self.written = final.stat().st_size
                    self.length = self.written
