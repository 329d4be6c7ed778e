"""An isolated edge built from a draft configuration, and a run of requests through it.

:func:`run_doc` compiles the draft (a compile error: the diagnostics, each with line,
column and message, and nothing runs), then builds a real
:class:`~pkgedge.edge.pipeline.Pipeline` of its own: a :class:`~pkgedge.cache.memstore.MemoryStore`
in a temporary directory, its own :class:`~pkgedge.stats.counters.Counters`, no protection,
no access log, and a backend whose every pool is the built-in test origin (or, when the
document asks for ``"upstream"``, the configured upstream), wrapped in a recorder. Nothing of
the live edge is touched. Each request goes through the phases in order, traced
(``Pkgedge-Trace``), so the result lists what every phase decided, the rules that matched
(``rule@LINE``), the origin fetches it made, the rules' log lines and its assertions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from typing import Any

import httptools

from pkgedge.cache.memstore import MemoryStore
from pkgedge.config import EdgeSettings, build_edge_settings
from pkgedge.edge.backend import Backend
from pkgedge.edge.context import Ctx
from pkgedge.edge.hooks import Hooks
from pkgedge.edge.pipeline import Pipeline
from pkgedge.edge.ruleset import Ruleset
from pkgedge.edge.rulesrun import cache_state
from pkgedge.http.headers import Headers
from pkgedge.http.request import Request
from pkgedge.rules import Rules, RulesError, compile_rules
from pkgedge.stats.counters import Counters
from pkgedge.web.playground import asserts
from pkgedge.web.playground.doc import Doc, PlayRequest
from pkgedge.web.playground.origin import Fetch, Recorder, TestOrigin

#: What the isolated edge says it is when no edge settings are given (never contacted).
PLACEHOLDER_UPSTREAM = "http://playground.invalid/simple/"
PREVIEW = 4096  # bytes of a response body shown
REQUEST_TIMEOUT = 15.0  # seconds one request may take in the isolated edge
RUN_BUDGET = 60.0  # seconds a whole run may take; later requests are reported as not run
_SETTLE = 5.0  # seconds to wait for background fetches between requests


def default_settings() -> EdgeSettings:
    """Settings for a playground outside a running edge (the CLI)."""
    return build_edge_settings(
        {"upstream": PLACEHOLDER_UPSTREAM, "workers": "1", "access_log": "off"}, environ={}
    )


def diagnostics(exc: RulesError) -> list[dict[str, Any]]:
    """The compile errors as the page marks them (1-based lines and columns)."""
    return [
        {
            "line": d.span.line,
            "column": d.span.column,
            "end_line": d.span.end_line,
            "end_column": d.span.end_column,
            "message": d.message,
            "text": str(d),
        }
        for d in exc.diagnostics
    ]


def compile_draft(text: str, settings: EdgeSettings) -> Rules:
    """Compile a draft as the edge would (its backend names); :class:`RulesError` if not."""
    return compile_rules(text, name="playground", backends=["origin", *settings.backends])


class _Backend(Backend):
    """The isolated edge's origin side: every pool is recorded, and is the test origin unless
    the document asked for the configured upstream."""

    def __init__(
        self, settings: EdgeSettings, store: MemoryStore, test: bool, fetches: list[Fetch]
    ) -> None:
        super().__init__(settings, store)
        self._test = TestOrigin(settings.first_byte_timeout) if test else None
        self._recorders: dict[str, Recorder] = {}
        self.fetches = fetches

    def pool(self, origin: str) -> Any:
        rec = self._recorders.get(origin)
        if rec is None:
            if self._test is not None:
                rec = Recorder(f"test origin as {origin}", self._test, self.fetches)
            else:
                rec = Recorder(origin, super().pool(origin), self.fetches)
            self._recorders[origin] = rec
        return rec

    def close(self) -> None:
        """Close the connections to a real upstream (the test origin holds none)."""
        for pool in self._pools.values():
            pool.close()


class _Client:
    """The client connection: collects what delivery writes."""

    def __init__(self, peer: str) -> None:
        self.data = bytearray()
        self.closed = False
        self._peer = peer

    @property
    def peer(self) -> str:
        return self._peer

    def write(self, data: bytes | memoryview) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def abort(self) -> None:
        self.closed = True


def parse_response(data: bytes, head_only: bool) -> tuple[int, Headers, bytes]:
    """(status, fields, body) of the one response in ``data``."""
    fields: Headers = []
    body = bytearray()

    class _P:
        def on_header(self, name: bytes, value: bytes) -> None:
            fields.append((name.decode("latin-1").lower(), value.decode("latin-1")))

        def on_body(self, chunk: bytes) -> None:
            body.extend(chunk)

    if not data:
        return 0, [], b""
    parser = httptools.HttpResponseParser(_P())
    if head_only:
        data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        pass
    return parser.get_status_code(), fields, bytes(body)


def _preview(body: bytes) -> str:
    text = body[:PREVIEW].decode("utf-8", "replace")
    return text + (f"\n… ({len(body)} bytes in all)" if len(body) > PREVIEW else "")


class IsolatedEdge:
    """One pipeline over its own memory store, counters and recorded origin."""

    def __init__(self, rules: Rules, settings: EdgeSettings, origin: str = "test") -> None:
        self.tmp = tempfile.mkdtemp(prefix="pkgedge-playground-")
        self.settings = dataclasses.replace(
            settings, cache_dir=self.tmp, workers=1, access_log="off", protection="off"
        )
        self.store = MemoryStore(self.tmp, self.settings.disk_size)
        self.store.prepare()
        self.store.open()
        self.counters = Counters(1)
        self.fetches: list[Fetch] = []
        self.backend = _Backend(self.settings, self.store, origin == "test", self.fetches)
        self.pipeline = Pipeline(self.settings, self.store, self.counters, Hooks(), self.backend)
        self.pipeline.use_rules(Ruleset(rules, 0))

    async def settle(self) -> None:
        """Let background fetches (stale-while-revalidate) end before the next request."""
        tasks = [f.task for f in self.pipeline.fills.active.values() if f.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=_SETTLE)

    async def send(self, pr: PlayRequest, limit: float = REQUEST_TIMEOUT) -> dict[str, Any]:
        await self.settle()
        fields = [("host", "playground.test"), *pr.headers, ("pkgedge-trace", "1")]
        if pr.body:
            fields.append(("content-length", str(len(pr.body.encode()))))
        req = Request(pr.method, pr.path, fields, True, pr.client)
        req.body = pr.body.encode()
        client = _Client(pr.client)
        ctx = Ctx(req, client, time.time(), time.monotonic(), self.pipeline.ruleset)
        first = len(self.fetches)
        error = ""
        try:
            await asyncio.wait_for(self.pipeline.run(ctx), limit)
        except TimeoutError:
            error = f"the request took more than {limit:.3g} s"
        except Exception as exc:  # the edge's own failure: shown, never a crash of the run
            error = f"{type(exc).__name__}: {exc}"
        status, headers, body = parse_response(bytes(client.data), pr.method == "HEAD")
        fetches = self.fetches[first:]
        trace = ctx.trace.events if ctx.trace is not None else []
        hmap: dict[str, str] = {}
        for n, v in headers:
            hmap[n] = f"{hmap[n]}, {v}" if n in hmap else v
        last = fetches[-1] if fetches else None
        state = cache_state(ctx) if status else "error"
        facts: dict[str, Any] = {
            "client.status": status,
            "client.header": hmap,
            "client.body": body[:PREVIEW].decode("utf-8", "replace"),
            "origin.count": len(fetches),
            "origin.status": last.status if last else 0,
            "origin.header": dict(last.headers) if last else {},
            "origin.target": last.target if last else "",
            "cache.state": state,
            "trace": "; ".join(f"{p}:{d}" + (f"({w})" if w else "") for p, d, w in trace),
            "log": "\n".join(ctx.log_lines),
        }
        results = [asserts.check(a, facts) for a in pr.asserts]
        return {
            "request": {
                "method": pr.method,
                "path": pr.path,
                "headers": [list(h) for h in fields],
                "body": pr.body[:PREVIEW],
                "client": pr.client,
            },
            "response": {
                "status": status,
                "headers": [list(h) for h in headers],
                "body": _preview(body),
                "size": len(body),
            },
            "cache_state": state,
            "fetches": [f.as_json() for f in fetches],
            "events": [{"phase": p, "decision": d, "why": w} for p, d, w in trace],
            "log": list(ctx.log_lines),
            "asserts": results,
            "error": error,
            "ok": not error and all(r["ok"] for r in results),
        }

    async def close(self) -> None:
        try:
            await self.pipeline.close()
            self.backend.close()
            self.pipeline.memory.clear()
            self.store.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def not_run(pr: PlayRequest, why: str) -> dict[str, Any]:
    """The result of a request that was not sent."""
    return {
        "request": {
            "method": pr.method,
            "path": pr.path,
            "headers": [],
            "body": "",
            "client": pr.client,
        },
        "response": {"status": 0, "headers": [], "body": "", "size": 0},
        "cache_state": "error",
        "fetches": [],
        "events": [],
        "log": [],
        "asserts": [{"expr": a, "ok": False, "actual": None, "error": why} for a in pr.asserts],
        "error": why,
        "ok": False,
    }


async def run_doc(doc: Doc, settings: EdgeSettings | None = None) -> dict[str, Any]:
    """Compile ``doc.config`` and send ``doc.requests`` through an isolated edge, in order.

    ``{"ok", "diagnostics", "results", "counters"}``: ``ok`` is False on a compile error
    (``diagnostics`` lists them, ``results`` is empty) or when any request failed an
    assertion or could not be answered.
    """
    settings = settings or default_settings()
    try:  # in a thread: a large draft does not hold up the event loop (the admin's, live)
        rules = await asyncio.to_thread(compile_draft, doc.config, settings)
    except RulesError as exc:
        return {"ok": False, "diagnostics": diagnostics(exc), "results": [], "counters": {}}
    edge = IsolatedEdge(rules, settings, doc.origin)
    deadline = time.monotonic() + RUN_BUDGET
    try:
        results = []
        for r in doc.requests:
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(not_run(r, f"not run: the run's {RUN_BUDGET:g} s are spent"))
            else:
                results.append(await edge.send(r, min(REQUEST_TIMEOUT, left)))
        await edge.settle()
        counters = {k: v for k, v in edge.counters.snapshot().items() if v}
    finally:
        await edge.close()
    return {
        "ok": all(r["ok"] for r in results),
        "diagnostics": [],
        "results": results,
        "counters": counters,
    }
