"""Request smuggling and malformed requests against a real ``pkgedge edge``, over raw sockets.

One corpus (:data:`CORPUS`), three views of it:

* :func:`test_answer` — the exact answer to every payload: the status of the first response,
  whether the edge then closes the connection, and (where it matters) how many responses it
  sent and the ``Allow`` of a 405. Where the edge accepts what a strict server rejects, the
  test keeps the strict answer and is marked ``xfail(strict=True, reason="edge bug: ...")``.
* :func:`test_origin_never_sees_more_than_was_sent` — the key property, through the real
  upstream's request log: the origin never receives more requests than the payload holds
  well-formed requests (a smuggled request never reaches it), nor a smuggled, hop-by-hop or
  unkeyed field.
* :func:`test_no_raw_client_bytes_reach_the_origin` — the same payloads through a second edge
  in front of a recording origin that keeps the exact bytes it receives: every request there is
  re-serialised by the edge (canonical request line, lower-case ``name: value`` lines, its own
  ``content-length``, never ``transfer-encoding``); no client header line shows up verbatim.

Requests use paths the test upstream serves (``/simple/alpha/``, ``/simple/beta/``); the
smuggled request inside a payload always targets ``/simple/smuggled/`` and carries
``X-Smuggled: 1``, so it is recognisable wherever it lands. The cache is purged before every
payload, so each well-formed GET is a miss and really goes to the origin.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import pytest

from support.edge import EdgeProcess
from support.upstream import LoggedRequest, UpstreamIndex

#: The edge's own Allow on a 405 (``pkgedge.server.accept.ALLOW_HEADER``).
EDGE_ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#: Once the expected responses are in: read until the edge closes, or until it has been silent
#: this long (then the connection counts as kept open). Before that, wait up to FIRST_BYTE.
IDLE = 0.3
FIRST_BYTE = 10.0

HOST = b"Host: 127.0.0.1\r\n"
ALPHA = b"/simple/alpha/"
BETA = b"/simple/beta/"
SMUGGLED = b"GET /simple/smuggled/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Smuggled: 1\r\n\r\n"

#: Request fields that must never reach the origin, whatever the payload (hop-by-hop fields,
#: fields a Connection header named, the marker of smuggled requests and trailers). Compared
#: after reading ``_`` as ``-``: ``Transfer_Encoding`` is ``Transfer-Encoding`` to CGI/WSGI.
NEVER_AT_ORIGIN = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "x-drop-me",
        "x-smuggled",
        "x-forwarded-host",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
    }
)


def req(
    method: bytes = b"GET",
    target: bytes = ALPHA,
    headers: bytes = b"",
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    host: bytes = HOST,
) -> bytes:
    return method + b" " + target + b" " + version + b"\r\n" + host + headers + b"\r\n" + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Case:
    """One payload and its strict answer.

    ``forwarded``: the most requests the origin may receive for it (the well-formed requests a
    strict server acts on). ``responses``: the exact number of responses, when it matters.
    ``allow``: the Allow a 405 must carry. ``bug``: the edge answers differently today (the
    answer test is xfail). ``relay_bug``: the origin receives more than it may today (the two
    origin tests are xfail).
    """

    id: str
    payload: bytes
    status: int
    closed: bool
    forwarded: int = 0
    responses: int | None = None
    allow: str | None = None
    bug: str | None = None
    relay_bug: str | None = None


def rejected(
    id: str,
    payload: bytes,
    status: int = 400,
    *,
    allow: str | None = None,
    bug: str | None = None,
    relay_bug: str | None = None,
) -> Case:
    """A payload a strict server refuses before acting on any of it: *status*, then close."""
    return Case(
        id, payload, status, True, 0, responses=1, allow=allow, bug=bug, relay_bug=relay_bug
    )


def post_te(te: bytes, body: bytes = b"0\r\n\r\n" + SMUGGLED) -> bytes:
    return req(b"POST", b"/simple/", te, body)


CORPUS: list[Case] = [
    # -- well-formed: answered, kept open --------------------------------------------------
    Case("baseline", req(), 200, closed=False, forwarded=1, responses=1),
    Case("pipelined-two", req() + req(target=BETA), 200, False, forwarded=2, responses=2),
    Case(
        "odd-casing-and-hop-by-hop",
        req(
            headers=b"Connection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nKeep-Alive: "
            b"timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nX-CaSe-PrObE: "
            b"MiXeD\r\nUser-Agent: pip/24.0\r\n"
        ),
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    Case(
        "obs-text-in-value",
        req(headers=b"X-Name: caf\xe9\r\n"),
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    # RFC 9112 §3 lets a recipient split the request line on any whitespace: allowed leniency
    Case(
        "two-spaces-in-request-line",
        b"GET  /simple/alpha/ HTTP/1.1\r\n" + HOST + b"\r\n",
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    # -- CL.TE / TE.CL ---------------------------------------------------------------------
    rejected("cl-te", post_te(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n")),
    rejected(
        "te-cl",
        post_te(
            b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunk(SMUGGLED) + b"0\r\n\r\n"
        ),
    ),
    rejected(
        "get-cl-te",
        req(
            headers=b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            body=b"0\r\n\r\n" + SMUGGLED,
        ),
    ),
    rejected(
        "te-cl0-get",
        req(headers=b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n", body=b"0\r\n\r\n"),
    ),
    Case(
        "pipelined-then-cl-te",
        req() + post_te(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"),
        200,
        closed=True,
        forwarded=1,
        responses=2,
    ),
    # -- TE.TE: obfuscated Transfer-Encoding -----------------------------------------------
    rejected("te-xchunked", post_te(b"Transfer-Encoding: xchunked\r\n"), 501),
    rejected(
        "te-xchunked-with-cl", post_te(b"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n")
    ),
    rejected("te-chunked-identity", post_te(b"Transfer-Encoding: chunked, identity\r\n")),
    rejected(
        "te-identity-chunked",
        req(headers=b"Transfer-Encoding: identity, chunked\r\n", body=b"0\r\n\r\n"),
        501,
    ),
    rejected(
        "te-dup-chunked", post_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")
    ),
    rejected(
        "te-dup-chunked-identity",
        post_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
    ),
    rejected(
        "te-dup-identity-chunked",
        post_te(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n"),
        501,
    ),
    rejected(
        "te-space-before-colon",
        post_te(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n"),
    ),
    rejected(
        "te-tab-before-colon", req(headers=b"Transfer-Encoding\t: chunked\r\n", body=b"0\r\n\r\n")
    ),
    rejected("te-vtab", post_te(b"Transfer-Encoding:\x0bchunked\r\n")),
    rejected("te-obs-fold", post_te(b"Transfer-Encoding:\r\n chunked\r\n")),
    Case(
        "te-leading-space",  # OWS before the value is legal
        req(headers=b"Transfer-Encoding:  chunked\r\n", body=b"0\r\n\r\n" + req(target=BETA)),
        200,
        False,
        forwarded=2,
        responses=2,
    ),
    Case(
        "te-tab",  # HTAB is OWS: legal
        req(headers=b"Transfer-Encoding:\tchunked\r\n", body=b"0\r\n\r\n" + req(target=BETA)),
        200,
        False,
        forwarded=2,
        responses=2,
    ),
    Case(
        "te-uppercase",  # transfer codings are case-insensitive
        req(headers=b"Transfer-Encoding: CHUNKED\r\n", body=b"0\r\n\r\n" + req(target=BETA)),
        200,
        False,
        forwarded=2,
        responses=2,
    ),
    Case(
        # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing: process, then close
        "te-http10",
        req(
            headers=b"Transfer-Encoding: chunked\r\n",
            body=b"0\r\n\r\n" + SMUGGLED,
            version=b"HTTP/1.0",
        ),
        200,
        closed=True,
        forwarded=1,
        responses=1,
    ),
    Case(
        "post-chunked-body",  # the origin's own 405 (it takes no uploads), relayed
        req(
            b"POST", b"/simple/", b"Transfer-Encoding: chunked\r\n", chunk(b"hello") + b"0\r\n\r\n"
        ),
        405,
        False,
        forwarded=1,
        responses=1,
    ),
    Case(
        "underscore-te",
        req(b"POST", b"/simple/", b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello"),
        405,  # the origin's
        False,
        forwarded=1,
        responses=1,
    ),
    # -- CL.0: a GET whose body is a second request ----------------------------------------
    Case(
        "cl0-get-body-holds-request",
        req(headers=b"Content-Length: %d\r\n" % len(SMUGGLED), body=SMUGGLED),
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    # -- Content-Length --------------------------------------------------------------------
    rejected(
        "cl-list-5-5", req(b"POST", b"/simple/", b"Content-Length: 5, 5\r\n", b"hello" + SMUGGLED)
    ),
    rejected(
        "cl-dup-same",
        req(
            b"POST", b"/simple/", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello" + SMUGGLED
        ),
    ),
    rejected(
        "cl-dup-different",
        req(
            b"POST", b"/simple/", b"Content-Length: 5\r\nContent-Length: 0\r\n", b"hello" + SMUGGLED
        ),
    ),
    rejected("cl-plus", req(b"POST", b"/simple/", b"Content-Length: +5\r\n", b"hello" + SMUGGLED)),
    rejected("cl-minus", req(b"POST", b"/simple/", b"Content-Length: -1\r\n", b"hello" + SMUGGLED)),
    rejected("cl-hex", req(b"POST", b"/simple/", b"Content-Length: 0x5\r\n", b"hello" + SMUGGLED)),
    rejected("cl-space-inside", req(b"POST", b"/simple/", b"Content-Length: 1 0\r\n", b"hello")),
    rejected("cl-empty", req(b"POST", b"/simple/", b"Content-Length:\r\n", b"hello" + SMUGGLED)),
    rejected(
        "cl-overflow",
        req(b"POST", b"/simple/", b"Content-Length: 99999999999999999999999\r\n", b"hello"),
    ),
    rejected(
        "cl-too-large",
        req(b"POST", b"/simple/", b"Content-Length: 200000000\r\n", b"hello"),
        413,
    ),
    # -- chunked framing -------------------------------------------------------------------
    rejected(
        "chunk-size-not-hex",
        post_te(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
    ),
    rejected(
        "chunk-size-0x", post_te(b"Transfer-Encoding: chunked\r\n", b"0x5\r\nhello\r\n0\r\n\r\n")
    ),
    rejected(
        "chunk-size-negative",
        post_te(b"Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
    ),
    rejected(
        "chunk-size-overflow",
        post_te(b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"),
    ),
    rejected(
        "chunk-size-trailing-space",
        post_te(b"Transfer-Encoding: chunked\r\n", b"5 \r\nhello\r\n0\r\n\r\n"),
    ),
    rejected(
        "chunk-data-longer-than-size",
        post_te(b"Transfer-Encoding: chunked\r\n", b"3\r\nhello\r\n0\r\n\r\n" + SMUGGLED),
    ),
    rejected(
        "chunk-ext-nul",
        post_te(b"Transfer-Encoding: chunked\r\n", b"5;a\x00b\r\nhello\r\n0\r\n\r\n"),
    ),
    rejected(
        "chunk-ext-bare-lf", post_te(b"Transfer-Encoding: chunked\r\n", b"5;a\nhello\r\n0\r\n\r\n")
    ),
    rejected(
        "chunk-bare-lf", post_te(b"Transfer-Encoding: chunked\r\n", b"5\nhello\n0\n\n" + SMUGGLED)
    ),
    Case(
        "chunk-ext-legal",
        req(
            headers=b"Transfer-Encoding: chunked\r\n",
            body=b"5;name=value\r\nhello\r\n0\r\n\r\n" + req(target=BETA),
        ),
        200,
        False,
        forwarded=2,
        responses=2,
    ),
    Case(
        "chunk-trailer-field",  # a trailer is not a header: it never reaches the origin
        req(headers=b"Transfer-Encoding: chunked\r\n", body=b"0\r\nX-Smuggled: 1\r\n\r\n"),
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    # -- line endings, folding, whitespace -------------------------------------------------
    # (RFC 9112 §2.2 lets a recipient take a bare LF as a line end; the strict choice is 400)
    rejected("bare-lf-everywhere", b"GET /simple/alpha/ HTTP/1.1\nHost: 127.0.0.1\n\n"),
    rejected(
        "bare-lf-in-head",
        b"GET /simple/alpha/ HTTP/1.1\r\n" + b"Host: 127.0.0.1\nX-Smuggled: 1\r\n\r\n",
    ),
    rejected("bare-cr-in-head", req(headers=b"X-A: a\rX-Smuggled: 1\r\n")),
    rejected("bare-cr-request-line", b"GET /simple/alpha/ HTTP/1.1\rHost: 127.0.0.1\r\n\r\n"),
    rejected("obs-fold", req(headers=b"X-A: a\r\n X-Smuggled: 1\r\n")),
    rejected("ws-before-colon", req(headers=b"X-A : a\r\n")),
    rejected("ws-before-colon-host", b"GET /simple/alpha/ HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n"),
    rejected("ws-before-first-header", b"GET /simple/alpha/ HTTP/1.1\r\n Host: 127.0.0.1\r\n\r\n"),
    rejected("empty-field-name", req(headers=b": x\r\n")),
    rejected("field-without-colon", req(headers=b"X-A\r\n")),
    # -- control bytes, non-ASCII ----------------------------------------------------------
    rejected("nul-in-value", req(headers=b"X-A: a\x00b\r\n")),
    rejected("ctl-in-value", req(headers=b"X-A: a\x01b\r\n")),
    rejected("esc-in-value", req(headers=b"X-A: a\x1b[31mb\r\n")),
    rejected("del-in-value", req(headers=b"X-A: a\x7fb\r\n")),
    rejected("nul-in-name", req(headers=b"X-\x00A: a\r\n")),
    rejected("nul-in-target", req(target=b"/simple/al\x00pha/")),
    rejected("ctl-in-target", req(target=b"/simple/al\x01pha/")),
    rejected("del-in-target", req(target=b"/simple/al\x7fpha/")),
    rejected("tab-in-target", req(target=b"/simple/al\tpha/")),
    rejected("space-in-target", req(target=b"/simple/alpha/ x")),
    rejected("non-ascii-target", req(target=b"/simple/\xc3\xa9/")),
    # -- header injection ------------------------------------------------------------------
    Case(
        # %0D%0A stays encoded: the origin sees a path, never a header line (it answers 404)
        "crlf-encoded-in-target",
        req(target=b"/simple/alpha/%0d%0aX-Smuggled:%201"),
        404,
        False,
        forwarded=1,
        responses=1,
    ),
    Case(
        # an encoded CRLF in a value is just text: relayed as such, never a header line
        "crlf-encoded-in-value",
        req(headers=b"X-A: a%0d%0aX-Smuggled: 1\r\n"),
        200,
        False,
        forwarded=1,
        responses=1,
    ),
    rejected(
        "lf-in-target",
        b"GET /simple/alpha/\nX-Smuggled: 1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    ),
    # -- request-target forms --------------------------------------------------------------
    # (the edge serves origin-form only: by design it never acts as a forward proxy)
    rejected("absolute-form", req(target=b"http://127.0.0.1/simple/alpha/")),
    rejected("absolute-form-other-host", req(target=b"http://evil.example/simple/alpha/")),
    rejected("asterisk-form", req(b"OPTIONS", b"*")),
    # -- Host --------------------------------------------------------------------------------
    rejected("dup-host", req(headers=b"Host: evil.example\r\n")),
    rejected("dup-host-other-case", req(headers=b"hOsT: evil.example\r\n")),
    rejected("missing-host-http11", b"GET /simple/alpha/ HTTP/1.1\r\n\r\n"),
    Case(
        "missing-host-http10",
        b"GET /simple/alpha/ HTTP/1.0\r\n\r\n",
        200,
        closed=True,
        forwarded=1,
        responses=1,
    ),
    rejected(
        "host-invalid-value",
        req(host=b"Host: a b/c\r\n"),
    ),
    # -- sizes -----------------------------------------------------------------------------
    rejected(
        "request-line-too-long",
        req(target=b"/simple/" + b"a" * 9000 + b"/"),
        414,
    ),
    rejected("head-too-large", req(headers=b"X-A: " + b"a" * 70000 + b"\r\n"), 431),
    rejected(
        "too-many-fields",
        req(headers=b"".join(b"X-H%d: v\r\n" % i for i in range(150))),
        431,
    ),
    # -- methods ---------------------------------------------------------------------------
    rejected("trace", req(b"TRACE"), 405, allow=EDGE_ALLOW),
    rejected(
        "propfind",
        req(b"PROPFIND", headers=b"Content-Length: 0\r\n"),
        405,
        allow=EDGE_ALLOW,
    ),
    rejected(
        "connect-authority-form",
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n",
        405,
        allow=EDGE_ALLOW,
    ),
    rejected("connect-origin-form", req(b"CONNECT"), 405, allow=EDGE_ALLOW),
    # (llhttp knows no such method: a parse error, before any method check)
    rejected("unknown-method", req(b"FOO")),
    rejected("lowercase-method", req(b"get")),
    # -- upgrades, other protocols, versions -----------------------------------------------
    Case(
        "upgrade-websocket",
        req(
            headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: "
            b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        ),
        200,  # the Upgrade is ignored (RFC 9110 §7.8 allows it); nothing after it is read
        closed=True,
        forwarded=1,
        responses=1,
    ),
    Case(
        "upgrade-h2c-then-request",
        req(
            headers=b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        )
        + SMUGGLED,
        200,
        closed=True,
        forwarded=1,
        responses=1,
    ),
    rejected("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    rejected("http09", b"GET /simple/alpha/\r\n\r\n"),
    rejected(
        "version-2.0",
        req(version=b"HTTP/2.0"),
        505,
    ),
    # (RFC 9110 §2.5 would have 1.2 processed as 1.1; refusing it is the conservative choice)
    rejected("version-1.2", req(version=b"HTTP/1.2")),
]


def _params(kind: str) -> list[object]:
    out: list[object] = []
    for case in CORPUS:
        reason = case.bug if kind == "answer" else case.relay_bug
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def test_corpus_ids_are_unique() -> None:
    ids = [c.id for c in CORPUS]
    assert len(ids) == len(set(ids))


# -- talking to the edge -------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]


@dataclass
class Exchange:
    raw: bytes
    closed: bool
    responses: list[Response]
    origin: list[LoggedRequest]


class _ResponseReader:
    """Splits what the edge sent into responses (httptools, as a client would)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.responses: list[Response] = []
        self.complete = 0
        self._headers: dict[str, str] = {}

    def on_message_begin(self) -> None:
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.responses.append(Response(self.parser.get_status_code(), self._headers))

    def on_message_complete(self) -> None:
        self.complete += 1

    def feed(self, data: bytes) -> list[Response]:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            pass  # e.g. bytes after a Connection: close response; what parsed so far counts
        return self.responses


def complete_responses(data: bytes) -> int:
    counter = _ResponseReader()
    counter.feed(data)
    return counter.complete


def send(url: str, payload: bytes, want: int = 1, idle: float = IDLE) -> tuple[bytes, bool]:
    """Send *payload* on a new connection; (all bytes received, whether the edge closed).
    Reads until the edge closes; or, once *want* complete responses are in, until it has been
    silent for *idle* s (the connection is then taken as kept open)."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=FIRST_BYTE) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the edge answered and closed before taking everything: read its answer
        out = b""
        try:
            while data := sock.recv(65536):
                out += data
                sock.settimeout(idle if complete_responses(out) >= want else FIRST_BYTE)
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            return out, True
    return out, True


@dataclass
class Stack:
    edge: EdgeProcess
    upstream: UpstreamIndex
    workers: list[int]
    results: dict[str, Exchange]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One upstream and one edge for the whole corpus (the cache is purged per payload)."""
    base = tmp_path_factory.mktemp("smuggling")
    upstream = UpstreamIndex(base / "upstream")
    upstream.add_project("alpha", "1.0", requires_dist=["beta>=1.0"])
    upstream.add_project("beta", "1.0")
    upstream.start()
    edge = EdgeProcess(upstream.index_url, base / "cache", log_path=base / "edge.log")
    try:
        edge.start()
        yield Stack(edge, upstream, edge.worker_pids(), {})
    finally:
        edge.stop()
        upstream.stop()


def run_case(stack: Stack, case: Case) -> Exchange:
    """Send *case* once (purged cache, empty origin log); later calls reuse the result, so
    the answer test and the origin test judge the same exchange."""
    if case.id not in stack.results:
        stack.edge.purge(all=True)
        stack.upstream.reset_log()
        raw, closed = send(stack.edge.url, case.payload, want=case.responses or 1)
        time.sleep(0.05)  # a fetch the edge started must have been logged by now
        responses = _ResponseReader().feed(raw)
        stack.results[case.id] = Exchange(raw, closed, responses, stack.upstream.log)
    return stack.results[case.id]


# -- 1. the exact answer ---------------------------------------------------------------------


@pytest.mark.parametrize("case", _params("answer"))
def test_answer(stack: Stack, case: Case) -> None:
    ex = run_case(stack, case)
    assert ex.raw.startswith(b"HTTP/1.1 "), f"no HTTP/1.1 status line: {ex.raw[:200]!r}"
    assert ex.responses, f"no response head: {ex.raw[:300]!r}"
    first = ex.responses[0]
    got = [r.status for r in ex.responses]
    assert first.status == case.status, f"statuses {got}: {ex.raw[:300]!r}"
    assert ex.closed == case.closed, f"closed={ex.closed}, statuses {got}"
    if case.responses is not None:
        assert len(ex.responses) == case.responses, f"statuses {got}"
    if case.allow is not None:
        assert first.headers.get("allow") == case.allow
    if first.status >= 400 and first.headers.get("cache-status", "").startswith("pkgedge"):
        # the edge's own refusals: plain text, never cacheable, never a traceback
        body = ex.raw.partition(b"\r\n\r\n")[2]
        assert b"Traceback" not in body
        if "edge-error" in first.headers.get("cache-status", ""):
            assert first.headers.get("cache-control") == "no-store"


# -- 2. the key property: nothing smuggled reaches the origin --------------------------------


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.mark.parametrize("case", _params("relay"))
def test_origin_never_sees_more_than_was_sent(stack: Stack, case: Case) -> None:
    ex = run_case(stack, case)
    seen = [(r.method, r.path) for r in ex.origin]
    assert len(ex.origin) <= case.forwarded, (
        f"the origin received {len(ex.origin)} requests for a payload with {case.forwarded} "
        f"well-formed ones: {seen}"
    )
    for r in ex.origin:
        assert not r.path.startswith("/simple/smuggled"), f"smuggled request relayed: {seen}"
        bad = sorted(n for n in r.headers if _canonical(n) in NEVER_AT_ORIGIN)
        assert not bad, f"{r.method} {r.path} reached the origin with {bad}"
        if r.method == "GET":
            assert "content-length" not in r.headers, "a GET body was relayed"
    assert stack.edge.worker_pids() == stack.workers, "a worker died"


# -- 3. the origin only ever sees the edge's own serialisation -------------------------------


class RecordingOrigin:
    """A minimal HTTP/1.1 origin on 127.0.0.1 that records the exact bytes of every request
    (head and Content-Length body) and answers ``200 ok`` with ``no-store``. It frames requests
    by Content-Length only: bytes the edge relayed raw would show up as extra requests."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[tuple[bytes, bytes]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def index_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(30)
        with conn:
            try:
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    m = re.search(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*$", head)
                    need = int(m.group(1)) if m else 0
                    while len(buf) < need:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf[:need], buf[need:]
                    with self.lock:
                        self.requests.append((head, body))
                    answer = b"ok\n"
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncache-control: no-store"
                        b"\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(answer), b"" if head.startswith(b"HEAD ") else answer)
                    )
            except OSError:
                return

    def take(self) -> list[tuple[bytes, bytes]]:
        with self.lock:
            out, self.requests = self.requests, []
        return out

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EdgeProcess, RecordingOrigin]]:
    base = tmp_path_factory.mktemp("smuggling-raw")
    origin = RecordingOrigin()
    edge = EdgeProcess(origin.index_url, base / "cache", log_path=base / "edge.log")
    try:
        edge.start()
        yield edge, origin
    finally:
        edge.stop()
        origin.close()


_REQUEST_LINE = re.compile(rb"^(GET|HEAD|POST|DELETE|OPTIONS) /[\x21-\x7e]* HTTP/1\.1$")
_FIELD_LINE = re.compile(rb"^[a-z0-9!#$%&'*+.^_`|~-]+: [^\r\n]*$")


def _client_lines(payload: bytes) -> set[bytes]:
    """Every header-looking line of the payload whose field name is not already lower-case."""
    out = set()
    for line in re.split(rb"\r\n|\n|\r", payload):
        name, colon, _ = line.partition(b":")
        if colon and name and name != name.lower():
            out.add(line)
    return out


@pytest.mark.parametrize("case", _params("relay"))
def test_no_raw_client_bytes_reach_the_origin(
    recorded: tuple[EdgeProcess, RecordingOrigin], case: Case
) -> None:
    edge, origin = recorded
    origin.take()
    send(edge.url, case.payload, want=max(case.forwarded, 1))
    time.sleep(0.05)
    got = origin.take()
    assert len(got) <= case.forwarded, f"{len(got)} requests at the origin: {got}"
    verbatim = _client_lines(case.payload)
    for head, body in got:
        lines = head.split(b"\r\n")
        assert _REQUEST_LINE.match(lines[0]), f"request line relayed as {lines[0]!r}"
        assert b"/simple/smuggled" not in lines[0]
        names: list[str] = []
        for line in lines[1:]:
            assert _FIELD_LINE.match(line), f"not the edge's own serialisation: {line!r}"
            assert line not in verbatim, f"client line relayed verbatim: {line!r}"
            names.append(line.split(b":", 1)[0].decode("latin-1"))
        assert names.count("host") == 1, names
        bad = sorted(n for n in names if _canonical(n) in NEVER_AT_ORIGIN)
        assert not bad, f"relayed to the origin: {bad}"
        lengths = [ln for ln in lines[1:] if ln.startswith(b"content-length: ")]
        assert len(lengths) <= 1
        if lengths:
            assert int(lengths[0].split(b": ")[1]) == len(body)
        else:
            assert body == b""
    if case.id == "post-chunked-body":
        # the decoded body, with the edge's own Content-Length (checked above)
        assert [body for _, body in got] == [b"hello"]


def test_harness_sees_one_plain_get(stack: Stack) -> None:
    """Sanity check of the harness itself: a plain GET is one origin request, logged."""
    stack.edge.purge(all=True)
    stack.upstream.reset_log()
    raw, _ = send(stack.edge.url, req(headers=b"Connection: close\r\n"))
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert [(r.method, r.path) for r in stack.upstream.log] == [("GET", "/simple/alpha/")]


# -- 4. refusals are read whole: lingering close, never a reset ------------------------------

#: Bytes a client is still sending when the edge refuses (a body, the next requests).
UNREAD = b"X" * 16384


def _refused() -> list[object]:
    return [
        pytest.param(c, id=c.id)
        for c in CORPUS
        if c.closed and c.status >= 400 and c.bug is None and c.responses == 1
    ]


def _answer_then_send_more(url: str, payload: bytes, *, half_close: bool) -> bytes:
    """Send *payload*; once the edge's answer is in, send :data:`UNREAD` (input the edge has
    not read when it decides to close), optionally half-close, and read until EOF. A reset
    (instead of the edge's FIN) raises ConnectionResetError."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=FIRST_BYTE) as sock:
        sock.sendall(payload)
        out = b""
        while not complete_responses(out):
            data = sock.recv(65536)
            assert data, f"EOF before a whole answer: {out[:300]!r}"
            out += data
        sock.sendall(UNREAD)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while data := sock.recv(65536):
            out += data
    return out


@pytest.mark.parametrize("case", _refused())
def test_refusal_is_answered_then_closed_without_a_reset(stack: Stack, case: Case) -> None:
    raw = _answer_then_send_more(stack.edge.url, case.payload, half_close=True)
    responses = _ResponseReader().feed(raw)
    assert [r.status for r in responses] == [case.status], raw[:300]
    assert complete_responses(raw) == 1


def test_refusal_lingers_only_until_its_deadline(stack: Stack) -> None:
    """A client that never closes: the edge sends FIN right after the answer, keeps reading
    for a bounded time, then closes its socket (what the client sends after that is refused
    by the kernel with a reset)."""
    u = urlsplit(stack.edge.url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=FIRST_BYTE) as sock:
        sock.sendall(req(version=b"HTTP/1.2"))
        out = b""
        while not complete_responses(out):
            data = sock.recv(65536)
            assert data, out
            out += data
        assert out.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(1) == b""  # half-closed: the edge's FIN follows the answer
        gone = False
        deadline = time.monotonic() + 30  # a bound on the wait, not a timing assertion
        while not gone and time.monotonic() < deadline:
            try:
                sock.sendall(b"X")  # read and discarded while the edge lingers
            except (BrokenPipeError, ConnectionResetError):
                gone = True
            time.sleep(0.1)
        assert gone, "the edge never closed a lingering connection"
