"""The playground's origins: a built-in test origin that answers by path, and a recorder of
what the isolated edge fetched from whichever origin it uses.

The test origin reads ``/key=value`` segments of the target's path, in any order and
combinable (``/status=200/cache=60/header=x-a:1``):

- ``status=N``: the response status (100-599, default 200);
- ``wait=MS``: answer after MS milliseconds (at most :data:`MAX_WAIT_MS`); beyond the edge's
  ``first_byte_timeout`` the fetch fails as a real upstream's would (a timeout);
- ``cache=S``: ``Cache-Control: max-age=S`` (``cache=no-store`` and other directives are
  sent as given);
- ``header=name:value``: a response field (percent-decoded; repeatable);
- ``bytes=N``: a body of N bytes (at most :data:`MAX_BYTES`); otherwise a short text naming
  the target.

Other segments are the path itself. A malformed value is answered with a 400 naming it, so a
typo shows up in the results instead of as a surprise.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from pkgedge.errors import UpstreamTimeout
from pkgedge.http.headers import Headers

MAX_WAIT_MS = 5000
MAX_BYTES = 1 << 20
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CHUNK = 64 << 10


class BufferedResponse:
    """An origin response held in memory, read the way the edge reads an upstream one."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self.released = False

    async def read(self) -> bytes:
        chunk, self._body = self._body[:_CHUNK], self._body[_CHUNK:]
        return chunk

    async def read_all(self, limit: int) -> bytes:
        body, self._body = self._body, b""
        return body

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.released = True


def parse_directives(target: str) -> tuple[int, Headers, bytes, float]:
    """(status, fields, body, wait in seconds) the test origin answers ``target`` with."""
    path = target.partition("?")[0]
    status, wait, size = 200, 0.0, -1
    headers: Headers = []
    problems: list[str] = []
    for seg in path.split("/"):
        key, eq, raw = seg.partition("=")
        if not eq:
            continue
        value = unquote(raw)
        if key == "status":
            if value.isdigit() and 100 <= int(value) <= 599:
                status = int(value)
            else:
                problems.append(f"status={value}: a status from 100 to 599")
        elif key == "wait":
            if value.isdigit():
                wait = min(int(value), MAX_WAIT_MS) / 1000
            else:
                problems.append(f"wait={value}: milliseconds")
        elif key == "cache":
            cc = f"max-age={value}" if value.isdigit() else value
            if not value or any(c in value for c in "\r\n\0"):
                problems.append(f"cache={value}: seconds or Cache-Control directives")
            else:
                headers.append(("cache-control", cc))
        elif key == "header":
            name, colon, hv = value.partition(":")
            name = name.strip().lower()
            if not colon or not _TOKEN.match(name) or any(c in hv for c in "\r\n\0"):
                problems.append(f"header={value}: name:value")
            else:
                headers.append((name, hv.strip()))
        elif key == "bytes":
            if value.isdigit():
                size = min(int(value), MAX_BYTES)
            else:
                problems.append(f"bytes={value}: a number of bytes")
    if problems:
        body = ("test origin: bad directive " + "; ".join(problems) + "\n").encode()
        return 400, [("content-type", "text/plain; charset=utf-8")], body, 0.0
    if not any(n == "content-type" for n, _ in headers):
        headers.append(("content-type", "text/plain; charset=utf-8"))
    if size >= 0:
        body = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    else:
        body = f"test origin: {target}\n".encode()
    if status in (204, 304) or status < 200:
        body = b""
    return status, headers, body, wait


class TestOrigin:
    """The built-in origin: answers every request from its path (see the module's doc)."""

    def __init__(self, first_byte_timeout: float = float("inf")) -> None:
        self.first_byte_timeout = first_byte_timeout

    async def request(
        self, method: str, target: str, headers: Headers, body: bytes | None = None
    ) -> BufferedResponse:
        status, fields, payload, wait = parse_directives(target)
        if wait > self.first_byte_timeout:
            await asyncio.sleep(self.first_byte_timeout)
            raise UpstreamTimeout("upstream first-byte timeout")
        if wait:
            await asyncio.sleep(wait)
        if method == "HEAD":
            fields = [*fields, ("content-length", str(len(payload)))]
            return BufferedResponse(status, fields, b"")
        return BufferedResponse(status, [*fields, ("content-length", str(len(payload)))], payload)


class Pool(Protocol):
    async def request(
        self, method: str, target: str, headers: Headers, body: bytes | None = None
    ) -> Any: ...


@dataclass
class Fetch:
    """One request the isolated edge sent to an origin, and what came back."""

    origin: str
    method: str
    target: str
    headers: Headers
    status: int = 0
    response_headers: Headers = field(default_factory=list)
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "method": self.method,
            "target": self.target,
            "headers": [list(h) for h in self.headers],
            "status": self.status,
            "response_headers": [list(h) for h in self.response_headers],
            "error": self.error,
        }


class Recorder:
    """Wraps a pool: every request it sends is appended to ``fetches``."""

    def __init__(self, origin: str, pool: Pool, fetches: list[Fetch]) -> None:
        self.origin = origin
        self.pool = pool
        self.fetches = fetches

    async def request(
        self, method: str, target: str, headers: Headers, body: bytes | None = None
    ) -> Any:
        record = Fetch(self.origin, method, target, list(headers))
        self.fetches.append(record)
        try:
            resp = await self.pool.request(method, target, headers, body)
        except Exception as exc:
            record.error = str(exc) or type(exc).__name__
            raise
        record.status = resp.status
        record.response_headers = list(resp.headers)
        return resp
