"""A bounded fuzz of the request-parsing path (hypothesis; runs in CI, well under 30 s).

Two targets, fed the same generated inputs — random bytes, and valid requests (plain,
pipelined, Content-Length bodies, chunked bodies with random chunk sizes) mutated by inserted
CR / LF / NUL / SP / HTAB / colon / DEL / obs-text bytes, dropped or changed bytes and repeated
header lines, sent in random pieces:

* one real edge (2 workers, module scoped) over raw sockets, a new connection per example:
  the edge never crashes (same worker PIDs, still answers a normal GET), every answer is a
  sequence of well-formed ``HTTP/1.1 NNN`` responses, never a 500, a 502/504 only for a
  well-formed request, and the origin never receives more requests than the example held
  complete well-formed ones (:func:`wellformed_bound`);
* :class:`pkgedge.server.protocol.HttpProtocol` in process, with a fake transport and a stub
  handler: no exception ever escapes ``data_received``, the handler only ever sees requests
  that passed the strict checks, and feeding the bytes one at a time gives exactly the same
  requests and the same output as feeding them whole.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkgedge.http.request import Request
from pkgedge.server.accept import ALLOWED_METHODS
from pkgedge.server.limits import Limits
from pkgedge.server.protocol import HttpProtocol
from pkgedge.stats.counters import Counters
from support.edge import EdgeProcess
from support.upstream import UpstreamIndex

HOST = b"Host: 127.0.0.1\r\n"
SMUGGLED = b"GET /simple/smuggled/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: How long to wait for the first byte of an answer when no well-formed request was sent
#: (an incomplete request gets none), for more bytes after the expected responses, and for
#: the answers to well-formed requests.
FIRST_BYTE = 0.3
MORE = 0.1
PATIENCE = 3.0

# -- generated inputs --------------------------------------------------------------------------


def _req(
    method: bytes = b"GET",
    target: bytes = b"/simple/alpha/",
    headers: bytes = b"",
    body: bytes = b"",
    close: bool = True,
) -> bytes:
    conn = b"Connection: close\r\n" if close else b""
    return method + b" " + target + b" HTTP/1.1\r\n" + HOST + headers + conn + b"\r\n" + body


TEMPLATES = [
    _req(),
    _req(target=b"/simple/beta/", headers=b"Accept: application/vnd.pypi.simple.v1+json\r\n"),
    _req(close=False) + _req(target=b"/simple/beta/"),
    _req(target=b"/files/alpha/alpha-1.0-py3-none-any.whl?x=1", close=False)
    + _req(b"HEAD", b"/simple/"),
    _req(b"POST", b"/simple/", b"Content-Length: 5\r\n", b"hello", close=False) + _req(),
    _req(headers=b"Content-Length: %d\r\n" % len(SMUGGLED), body=SMUGGLED, close=False) + _req(),
    _req(b"GET", b"/simple/alpha/", b"Range: bytes=0-9\r\nAccept-Encoding: gzip\r\n"),
    _req(b"DELETE", b"/simple/alpha/"),
    _req(b"OPTIONS", b"/simple/"),
]

MUTATION_BYTES = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b"\x7f", b"\xff", b";"]


@st.composite
def chunked_request(draw: st.DrawFn) -> bytes:
    """A chunked POST (or GET) with random chunk sizes — some declared wrong — and extensions,
    optionally followed by a pipelined request."""
    method = draw(st.sampled_from([b"POST", b"GET"]))
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=4))
    body = b""
    for data in chunks:
        size = len(data) + draw(st.sampled_from([0, 0, 0, -1, 1]))
        ext = draw(st.sampled_from([b"", b"", b";a=b", b';x="y"', b" ;z"]))
        body += b"%x%s\r\n%s\r\n" % (max(size, 0), ext, data)
    body += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-Trailer: 1\r\n\r\n", b"0\r\n", b""]))
    head = _req(method, b"/simple/", b"Transfer-Encoding: chunked\r\n", close=False)
    tail = draw(st.sampled_from([b"", _req(), SMUGGLED]))
    return head + body + tail


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request (or chunked one) with up to three mutations (mostly one)."""
    data = bytearray(draw(st.one_of(st.sampled_from(TEMPLATES), chunked_request())))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 2, 3]))):
        kind = draw(st.sampled_from(["insert", "insert", "delete", "replace", "repeat-line"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(MUTATION_BYTES))
        elif kind == "delete" and data:
            del data[at]
        elif kind == "replace" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "repeat-line":
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


PAYLOADS = st.one_of(st.binary(max_size=300), *[mutated()] * 5)


@st.composite
def pieces(draw: st.DrawFn) -> list[bytes]:
    """A payload, split at random boundaries."""
    payload = draw(PAYLOADS)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(payload))), max_size=5))))
    out, last = [], 0
    for cut in [*cuts, len(payload)]:
        if cut > last:
            out.append(payload[last:cut])
            last = cut
    return out or [b""]


# -- the oracle: how many requests could the origin legitimately get? ------------------------

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")


def _line(data: bytes, pos: int) -> tuple[bytes, int] | None:
    end = data.find(b"\n", pos)
    if end < 0:
        return None
    return data[pos:end].rstrip(b"\r"), end + 1


def wellformed_bound(data: bytes) -> int:
    """An upper bound on the complete, well-formed requests in *data*, as the most lenient
    reading RFC 9112 allows would frame them (bare LF line ends, whitespace-split request
    lines, obs-fold, HTTP/0.9 simple requests, any Host, a final ``chunked`` after unknown
    codings, Transfer-Encoding winning over Content-Length and then the end). Requests after
    a malformed or incomplete one, or after one that ends the connection, are not counted.

    Being lenient, it never counts fewer requests than a correct edge acts on; a request it
    does not count (bytes inside a body, after garbage) must never reach the origin.
    """
    n, pos = 0, 0
    while True:
        while data.startswith((b"\r\n", b"\n"), pos):  # RFC 9112 §2.2: empty lines first
            pos += 2 if data.startswith(b"\r\n", pos) else 1
        got = _line(data, pos)
        if got is None:
            return n
        request_line, pos = got
        words = request_line.split()
        if len(words) == 2 and _TOKEN.fullmatch(words[0]):
            return n + 1  # HTTP/0.9: one request, then the connection ends
        if len(words) != 3 or not _TOKEN.fullmatch(words[0]):
            return n
        method, _, version = words
        v = _VERSION.fullmatch(version)
        if v is None:
            return n
        headers: list[tuple[bytes, bytes]] = []
        while True:
            got = _line(data, pos)
            if got is None:
                return n
            line, pos = got
            if not line:
                break
            if line[:1] in (b" ", b"\t"):
                if not headers:
                    return n
                headers[-1] = (headers[-1][0], headers[-1][1] + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                return n
            headers.append((name.lower(), value.strip(b" \t")))
        if v.group(1) != b"1":
            return n + 1
        fields: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            fields.setdefault(name, []).extend(p.strip() for p in value.split(b","))
        codings = [c.lower() for c in fields.get(b"transfer-encoding", []) if c]
        lengths = [c for c in fields.get(b"content-length", []) if c]
        last = False
        if b"transfer-encoding" in fields:
            if not codings or codings[-1] != b"chunked":
                return n
            last = bool(lengths)  # both: process with Transfer-Encoding, then close
            end = _chunked_end(data, pos)
            if end is None:
                return n
            pos = end
        elif lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                return n
            pos += int(lengths[0])
            if pos > len(data):
                return n
        n += 1
        tokens = {t.lower() for t in fields.get(b"connection", [])}
        if (
            last
            or b"close" in tokens
            or (v.group(2) == b"0" and b"keep-alive" not in tokens)
            or b"upgrade" in fields
            or method == b"CONNECT"
        ):
            return n


def _chunked_end(data: bytes, pos: int) -> int | None:
    while True:
        got = _line(data, pos)
        if got is None:
            return None
        line, pos = got
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not size_text or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_text):
            return None
        size = int(size_text, 16)
        if size == 0:
            while True:  # trailer section
                got = _line(data, pos)
                if got is None:
                    return None
                line, pos = got
                if not line:
                    return pos
        pos += size
        if data.startswith(b"\r\n", pos):
            pos += 2
        elif data.startswith(b"\n", pos):
            pos += 1
        else:
            return None


def test_oracle_on_known_shapes() -> None:
    assert wellformed_bound(_req()) == 1
    assert wellformed_bound(_req(close=False) + _req()) == 2
    assert wellformed_bound(_req(close=False)[:-1]) == 0
    body = _req(headers=b"Content-Length: %d\r\n" % len(SMUGGLED), body=SMUGGLED, close=False)
    assert wellformed_bound(body) == 1  # the request inside the body is not a request
    cl_te = _req(
        b"POST", b"/simple/", b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", close=False
    )
    assert wellformed_bound(cl_te + b"0\r\n\r\n" + SMUGGLED) == 1
    assert wellformed_bound(b"GARBAGE\r\n\r\n" + _req()) == 0
    chunked = _req(b"POST", b"/simple/", b"Transfer-Encoding: chunked\r\n", close=False)
    assert wellformed_bound(chunked + b"5\r\nhello\r\n0\r\n\r\n" + _req()) == 2
    assert wellformed_bound(chunked + b"5\r\nhelloXX\r\n0\r\n\r\n" + _req()) == 0


# -- the real edge -----------------------------------------------------------------------------


@dataclass
class Fuzzed:
    edge: EdgeProcess
    upstream: UpstreamIndex
    workers: list[int]
    examples: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    base = tmp_path_factory.mktemp("fuzz")
    upstream = UpstreamIndex(base / "upstream")
    upstream.add_project("alpha", "1.0", requires_dist=["beta>=1.0"])
    upstream.add_project("beta", "1.0")
    upstream.start()
    edge = EdgeProcess(upstream.index_url, base / "cache", workers=2, log_path=base / "edge.log")
    try:
        edge.start()
        yield Fuzzed(edge, upstream, edge.wait_workers())
    finally:
        edge.stop()
        upstream.stop()


class _Responses:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.statuses: list[int] = []
        self.complete = 0

    def on_headers_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())

    def on_message_complete(self) -> None:
        self.complete += 1


def exchange(url: str, parts: list[bytes], want: int) -> tuple[bytes, bool]:
    """Send *parts* as separate segments; read until the edge closes, or goes quiet: for
    :data:`FIRST_BYTE` s before any answer when no well-formed request was sent, else for up
    to :data:`PATIENCE` s while fewer than *want* responses are complete, then :data:`MORE` s
    (so no answer, nor an origin fetch, of this example spills into the next one)."""
    u = urlsplit(url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=PATIENCE) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(0.001)
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        sock.settimeout(PATIENCE if want else FIRST_BYTE)
        try:
            while data := sock.recv(65536):
                out += data
                reader = _Responses()
                try:
                    reader.parser.feed_data(out)
                except httptools.HttpParserError:
                    pass
                sock.settimeout(MORE if reader.complete >= want else PATIENCE)
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            return out, True
    return out, True


def check_answer(out: bytes, bound: int) -> list[int]:
    """*out* is a sequence of well-formed responses (possibly cut short by our timeout)."""
    if not out:
        return []
    assert re.match(rb"HTTP/1\.1 [1-5]\d\d ", out), f"not a status line: {out[:80]!r}"
    reader = _Responses()
    try:
        reader.parser.feed_data(out)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"malformed response stream ({exc}): {out[:400]!r}") from None
    for status in reader.statuses:
        assert status != 500, f"500 from the edge: {out[:400]!r}"
        if status in (502, 504):
            assert bound >= 1, f"{status} for bytes without a well-formed request"
    return reader.statuses


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(parts=pieces())
def test_fuzz_edge_over_sockets(fuzzed: Fuzzed, parts: list[bytes]) -> None:
    payload = b"".join(parts)
    bound = wellformed_bound(payload)
    fuzzed.upstream.reset_log()
    out, _ = exchange(fuzzed.edge.url, parts, bound)
    statuses = check_answer(out, bound)
    time.sleep(0.01)
    origin = [(r.method, r.path) for r in fuzzed.upstream.log]
    assert len(origin) <= bound, (
        f"the origin got {len(origin)} requests ({origin}) for a payload with at most "
        f"{bound} well-formed ones: {payload!r}"
    )
    assert fuzzed.edge.running
    assert fuzzed.edge.worker_pids() == fuzzed.workers, f"a worker died on {payload!r}"
    fuzzed.examples += 1
    for s in statuses:
        fuzzed.statuses[s] = fuzzed.statuses.get(s, 0) + 1


def test_edge_survived_the_fuzz(fuzzed: Fuzzed) -> None:
    """Runs after the fuzz (same module): no worker died or was replaced."""
    if not fuzzed.examples:
        pytest.skip("checks what test_fuzz_edge_over_sockets left behind: run the module")
    assert fuzzed.edge.worker_pids() == fuzzed.workers, "a worker died during the fuzz"
    r = fuzzed.edge.get("/simple/alpha/")
    assert r.status_code == 200 and "Links for alpha" in r.text
    assert "Traceback" not in fuzzed.edge.stderr_text()
    # the fuzz reached both sides: accepted requests and refusals
    assert any(200 <= s < 400 for s in fuzzed.statuses), fuzzed.statuses
    assert fuzzed.statuses.get(400, 0) > 0, fuzzed.statuses


# -- in process: HttpProtocol with a fake transport --------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closing = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.out += data

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class StubHandler:
    """Answers every request after one loop turn, with what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[str, str]], bytes]] = []

    def try_hit(self, req: Request, client: HttpProtocol) -> bool:
        return False

    async def handle(self, req: Request, client: HttpProtocol) -> None:
        self.seen.append((req.method, req.target, req.headers, req.body))
        await asyncio.sleep(0)
        body = f"{req.method} {req.target} {len(req.body)}".encode("latin-1")
        client.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


async def drive(
    data: bytes, step: int | None, limits: Limits | None = None
) -> tuple[StubHandler, bytes]:
    """Feed *data* to a new HttpProtocol, whole (*step* None) or *step* bytes at a time,
    letting the loop run between pieces as a real socket would; honours pause/close.
    *limits* may be shared between calls (so is the memo of parsed requests it holds)."""
    handler = StubHandler()
    proto = HttpProtocol(handler, Counters(1), set(), limits=limits or Limits())
    transport = FakeTransport()
    proto.connection_made(transport)
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        for _ in range(50):
            if not transport.paused or transport.closing:
                break
            await asyncio.sleep(0)
        if transport.closing or transport.paused:
            break
        proto.data_received(piece)  # nothing may escape
        await asyncio.sleep(0)
    for _ in range(200):
        if not proto.busy:
            break
        await asyncio.sleep(0)
    proto.connection_lost(None)
    return handler, bytes(transport.out)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@settings(max_examples=400, deadline=None, database=None)
@given(payload=PAYLOADS, step=st.integers(1, 7))
def test_fuzz_protocol_in_process(
    loop: asyncio.AbstractEventLoop, payload: bytes, step: int
) -> None:
    whole, out_whole = loop.run_until_complete(drive(payload, None))
    split, out_split = loop.run_until_complete(drive(payload, step))
    one, out_one = loop.run_until_complete(drive(payload, 1))
    assert split.seen == whole.seen == one.seen
    assert out_split == out_whole == out_one
    assert len(whole.seen) <= wellformed_bound(payload)
    for method, target, headers, _ in whole.seen:
        assert method in ALLOWED_METHODS
        assert target.startswith("/")
        assert sum(1 for n, _ in headers if n == "host") <= 1
    if out_whole:
        check_answer(out_whole, len(whole.seen))


def test_protocol_in_process_smoke(loop: asyncio.AbstractEventLoop) -> None:
    """The harness itself: two pipelined requests, then garbage → two answers, then a 400."""
    payload = _req(close=False) + _req(target=b"/simple/beta/", close=False) + b"BOGUS\r\n\r\n"
    handler, out = loop.run_until_complete(drive(payload, 3))
    assert [(m, t) for m, t, _, _ in handler.seen] == [
        ("GET", "/simple/alpha/"),
        ("GET", "/simple/beta/"),
    ]
    assert out.count(b"HTTP/1.1 200 OK") == 2
    assert b"HTTP/1.1 400 " in out


@settings(max_examples=300, deadline=None, database=None)
@given(payload=PAYLOADS, step=st.sampled_from([None, 1, 5]))
def test_the_memo_of_parsed_requests_never_changes_an_answer(
    loop: asyncio.AbstractEventLoop, payload: bytes, step: int | None
) -> None:
    """Connections sharing one worker's Limits share its memo of parsed requests: the same
    bytes again (whole, or as the pieces a socket gives) are answered exactly as parsing
    them would, whatever was remembered from the first time."""
    shared = Limits()
    first, out_first = loop.run_until_complete(drive(payload, None, shared))
    again, out_again = loop.run_until_complete(drive(payload, step, shared))
    assert again.seen == first.seen
    assert out_again == out_first


def test_a_whole_request_seen_before_is_not_parsed_again(
    loop: asyncio.AbstractEventLoop,
) -> None:
    shared = Limits()
    request = _req(close=False)
    handler, out = loop.run_until_complete(drive(request + request, None, shared))
    assert shared.parsed == {}  # two requests in one chunk: not one request's bytes
    loop.run_until_complete(drive(request, None, shared))
    assert list(shared.parsed) == [request]
    handler, out = loop.run_until_complete(drive(request, None, shared))
    assert [(m, t) for m, t, _, _ in handler.seen] == [("GET", "/simple/alpha/")]
    assert out.count(b"HTTP/1.1 200 OK") == 1


def test_requests_with_a_body_or_closing_are_never_remembered(
    loop: asyncio.AbstractEventLoop,
) -> None:
    shared = Limits()
    for payload in (
        _req(close=True),
        b"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab",
        b"GET /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ):
        loop.run_until_complete(drive(payload, None, shared))
    assert shared.parsed == {}
