"""HTTP/1.1 request parsing: the httptools (llhttp) callbacks that turn the bytes of one
request into a checked :class:`~pkgedge.http.request.Request`.

:class:`RequestParser` is a mixin of :class:`~pkgedge.server.protocol.HttpProtocol` (the
connection): httptools binds these methods once, when the connection's parser is made, so
they cost nothing more than methods of the connection itself. They hold the strict checks
(sizes of the target, the head and the body; HTTP/1.0 or 1.1 only; the methods of
:mod:`pkgedge.server.accept`; origin-form targets; one valid Host; chunked as the only
Transfer-Encoding) and raise :class:`Reject` with the status a refused request gets; a
complete message goes to the connection's ``_enqueue``, and a plain keep-alive GET/HEAD
leaves its parse as ``_template`` (the connection remembers it for the same bytes again).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools

from pkgedge.http.request import Request
from pkgedge.server.accept import ALLOWED_METHODS, HOST_RE
from pkgedge.server.limits import Limits

#: A request's parse as the connection remembers it: method, target, headers, fields.
Template = tuple[str, str, list[tuple[str, str]], dict[str, str]]
#: Field names as received → their lower-case text (names repeat on every request); names
#: holding "_" are never added, so a miss is where they are dropped.
_NAMES: dict[bytes, str] = {}
#: Host values already found valid (bounded).
_HOSTS: set[str] = set()


class Reject(Exception):
    """The request is answered ``status`` with ``reason`` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


class RequestParser:
    """The httptools callbacks; the connection's ``__init__`` sets the state declared here."""

    limits: Limits
    parser: httptools.HttpRequestParser
    client: str
    _loop: asyncio.AbstractEventLoop
    head_started: float | None
    body_started: float | None
    _url: bytes
    _headers: list[tuple[bytes, bytes]]
    _header_bytes: int
    _body: list[bytes]
    _body_size: int
    _in_message: bool  # between on_message_begin and on_message_complete
    _completed: int  # messages completed by the current feed_data
    _template: Template | None
    _current: Request

    if TYPE_CHECKING:

        def _enqueue(self, req: Request) -> None: ...

    def on_message_begin(self) -> None:
        self._in_message = True
        if self.head_started is None:
            self.head_started = self._loop.time()
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise Reject(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        limits = self.limits
        if self._header_bytes > limits.max_header_size or len(self._headers) >= limits.max_headers:
            raise Reject(431, "request header fields too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_started = None
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.0", "1.1"):
            if version.startswith("1.") or version in ("0.9", "0.0"):
                raise Reject(400, "only HTTP/1.0 and HTTP/1.1 requests are accepted")
            raise Reject(505, "HTTP version not supported")
        method = parser.get_method().decode("ascii")
        if method not in ALLOWED_METHODS:
            raise Reject(405, f"method {method} is not allowed here")
        if not self._url.startswith(b"/"):
            raise Reject(400, "only origin-form request targets are accepted")
        headers: list[tuple[str, str]] = []
        fields: dict[str, str] = {}
        hosts = 0
        names = _NAMES
        for raw_name, raw_value in self._headers:
            name = names.get(raw_name)
            if name is None:
                if b"_" in raw_name:
                    # header names with "_" are dropped (as nginx does): CGI-style servers
                    # read them as the dashed names, which would slip past every filter here
                    continue
                name = raw_name.decode("latin-1").lower()
                if len(names) < 512:
                    names[raw_name] = name
            value = raw_value.decode("latin-1")
            headers.append((name, value))
            if name in fields:
                if name == "host":
                    raise Reject(400, "more than one Host header")
                fields[name] = f"{fields[name]}, {value}"
            else:
                fields[name] = value
                hosts += name == "host"
        if not hosts:
            if version == "1.1":
                raise Reject(400, "HTTP/1.1 requests must carry a Host header")
        elif fields["host"] not in _HOSTS:
            if not HOST_RE.match(fields["host"]):
                raise Reject(400, "invalid Host header")
            if len(_HOSTS) < 256:
                _HOSTS.add(fields["host"])
        te = fields.get("transfer-encoding")
        if te is not None and [c.strip().lower() for c in te.split(",")] != ["chunked"]:
            # only plain chunked is understood; anything else is ambiguous framing
            raise Reject(501, "unsupported Transfer-Encoding")
        content_length = fields.get("content-length")  # (llhttp refuses a repeated one)
        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self.limits.max_body_size
        ):
            raise Reject(413, "request body too large")
        if content_length not in (None, "0") or te is not None:
            self.body_started = self._loop.time()
        self._current = Request(
            method,
            self._url.decode("latin-1"),
            headers,
            bool(parser.should_keep_alive()),
            self.client,
            fields,
        )

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.limits.max_body_size:
            raise Reject(413, "request body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._completed += 1
        self.body_started = None
        req = self._current
        if self._body:
            req.body = b"".join(self._body)
        elif (
            req.method in ("GET", "HEAD")
            and req.keep_alive
            and "content-length" not in req.map
            and "transfer-encoding" not in req.map
        ):
            self._template = (req.method, req.target, req.headers, req.map)
        self._enqueue(req)
