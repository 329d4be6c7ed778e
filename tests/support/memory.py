"""An edge pipeline in one process, with an in-memory origin and client: for unit tests of
the phases without sockets.

:class:`MemoryOrigin` answers the pipeline's origin requests from a table of scripted
responses (and records every request); :class:`MemoryClient` collects what delivery writes
and parses it back into status, headers and body. :func:`make_pipeline` builds a real
:class:`~pkgedge.edge.pipeline.Pipeline` over a real disk tier in a temporary directory
whose backend talks to the memory origin.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

from pkgedge.cache.memstore import MemoryStore
from pkgedge.cache.store import DiskStore, Store
from pkgedge.config import build_edge_settings
from pkgedge.edge.backend import Backend
from pkgedge.edge.hooks import Hooks
from pkgedge.edge.pipeline import Pipeline
from pkgedge.errors import UpstreamError
from pkgedge.http.request import Request
from pkgedge.stats.counters import Counters

UPSTREAM = "http://127.0.0.1:9/simple/"


@dataclass
class Scripted:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    fail: bool = False  # raise an upstream error instead of answering
    gate: asyncio.Event | None = None  # hold the answer until set


class MemoryResponse:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self.released = False

    async def read(self) -> bytes:
        body, self._body = self._body, b""
        return body

    async def read_all(self, limit: int) -> bytes:
        return await self.read()

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.released = True


class MemoryOrigin:
    """The origin the pipeline fetches from; ``requests`` lists (method, target, headers)."""

    def __init__(self) -> None:
        self.routes: dict[str, Scripted] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    def add(self, target: str, **kw: Any) -> Scripted:
        self.routes[target] = s = Scripted(**kw)
        return s

    @property
    def count(self) -> int:
        return len(self.requests)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> MemoryResponse:
        self.requests.append((method, target, dict(headers)))
        s = self.routes.get(target)
        if s is None:
            return MemoryResponse(404, [("content-length", "10")], b"not found\n")
        if s.gate is not None:
            await s.gate.wait()
        if s.fail:
            raise UpstreamError("origin unreachable (scripted)")
        headers = [*s.headers, ("content-length", str(len(s.body)))]
        return MemoryResponse(s.status, headers, s.body)


class MemoryBackend(Backend):
    origin: MemoryOrigin

    def pool(self, origin: str) -> Any:
        return self.origin


class MemoryClient:
    """A client connection: what the pipeline wrote, parsed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    @property
    def peer(self) -> str:
        return "127.0.0.1"

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def abort(self) -> None:
        self.closed = self.aborted = True

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """Parse the one response written (status, headers, body)."""
        out: dict[str, Any] = {"headers": {}, "body": b""}

        class P:
            def on_header(self, name: bytes, value: bytes) -> None:
                out["headers"][name.decode().lower()] = value.decode()

            def on_body(self, body: bytes) -> None:
                out["body"] += body

        parser = httptools.HttpResponseParser(P())
        data = bytes(self.data)
        if head_only:
            data = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        parser.feed_data(data)
        return parser.get_status_code(), out["headers"], out["body"]


def request(target: str, method: str = "GET", **headers: str) -> Request:
    fields = [
        ("host", "edge.test"),
        *((k.replace("_", "-").lower(), v) for k, v in headers.items()),
    ]
    return Request(method, target, fields, True, "127.0.0.1")


def make_pipeline(tmp: Path, store: str = "disk", **options: Any) -> tuple[Pipeline, MemoryOrigin]:
    """A pipeline over a ``"disk"`` (LMDB) or ``"memory"`` (dict) store in ``tmp``."""
    flags = {
        "upstream": UPSTREAM,
        "cache_dir": str(tmp / "cache"),
        "workers": "1",
        "access_log": "off",
        **{k: str(v) for k, v in options.items()},
    }
    settings = build_edge_settings(flags, environ={})
    tier: Store = (
        DiskStore(settings.cache_dir, settings.disk_size, map_size=1 << 26)
        if store == "disk"
        else MemoryStore(settings.cache_dir, settings.disk_size)
    )
    tier.prepare()
    tier.open()
    origin = MemoryOrigin()
    backend = MemoryBackend(settings, tier)
    backend.origin = origin
    return Pipeline(settings, tier, Counters(1), Hooks(), backend), origin


async def get(pipeline: Pipeline, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """One request through the fast path or, if it declines, the phases."""
    client = MemoryClient()
    req = request(target, **headers)
    if not pipeline.try_hit(req, client):
        await pipeline.handle(req, client)
    return client.response()
