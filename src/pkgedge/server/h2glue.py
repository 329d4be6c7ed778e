"""What the HTTP/2 protocol needs around ``h2``: the server connection and the SETTINGS it
announces, an HTTP/2 request's header list as a :class:`~pkgedge.http.request.Request` (with
the checks the HTTP/1.1 protocol makes: methods, origin-form targets, sizes, the host, after
:mod:`pkgedge.server.accept`), and the mapping of ``h2``'s errors to the GOAWAY RFC 9113
asks for."""

from __future__ import annotations

from collections.abc import Iterable

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from pkgedge.http.request import Request
from pkgedge.server.accept import ALLOWED_METHODS, HOST_RE
from pkgedge.server.limits import Limits

_GOAWAY_SIZE = 17  # a GOAWAY frame without debug data: 9-byte header, 8-byte payload
MAX_STREAMS = 100
INITIAL_WINDOW = 256 * 1024  # per stream, for request bodies (uploads)
CONNECTION_WINDOW = 1024 * 1024
HEADER_TABLE_SIZE = 4096  # the HPACK dynamic table the decoder allows


def server_connection(limits: Limits) -> h2.connection.H2Connection:
    """A server-side connection announcing our SETTINGS (no push). Its HPACK decoder refuses
    header lists above twice ``max_header_size``; between the two, the stream gets 431."""
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    codes = h2.settings.SettingCodes
    conn.local_settings = h2.settings.Settings(
        client=False,
        initial_values={
            codes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            codes.MAX_HEADER_LIST_SIZE: limits.max_header_size,
            codes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
            codes.HEADER_TABLE_SIZE: HEADER_TABLE_SIZE,
            codes.ENABLE_PUSH: 0,
        },
    )
    conn.decoder.max_header_list_size = 2 * limits.max_header_size
    return conn


class Reject(Exception):
    """The request is answered with ``status`` on its stream and not handed on."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def split_headers(
    headers: Iterable[tuple[bytes | str, bytes | str]],
) -> tuple[dict[str, str], list[tuple[str, str]], int]:
    """(pseudo-header fields, other fields, header list size as RFC 9113 counts it).

    Field names with ``_`` are dropped, as the HTTP/1.1 protocol (and nginx) drops them."""
    pseudo: dict[str, str] = {}
    fields: list[tuple[str, str]] = []
    size = 0
    for name, value in headers:
        n, v = _text(name), _text(value)
        size += len(n) + len(v) + 32
        if n.startswith(":"):
            pseudo[n] = v
        elif "_" not in n:
            fields.append((n, v))
    return pseudo, fields, size


def to_request(
    pseudo: dict[str, str], fields: list[tuple[str, str]], size: int, limits: Limits, client: str
) -> Request:
    """The request, or :class:`Reject` (431, 405, 400, 414, 413)."""
    if size > limits.max_header_size or len(fields) > limits.max_headers:
        raise Reject(431, "request header fields too large")
    method = pseudo.get(":method", "")
    if method not in ALLOWED_METHODS:
        raise Reject(405, f"method {method} is not allowed here")
    target = pseudo.get(":path", "")
    if not target.startswith("/"):
        raise Reject(400, "only origin-form request targets are accepted")
    if len(target) > limits.max_request_line:
        raise Reject(414, "request target too long")
    hosts = [v for n, v in fields if n == "host"]
    host = pseudo.get(":authority") or (hosts[0] if len(hosts) == 1 else "")
    if not host or len(hosts) > 1:
        raise Reject(400, "a request needs one :authority or Host")
    if not HOST_RE.match(host):
        raise Reject(400, "invalid :authority")
    fields = [("host", host), *((n, v) for n, v in fields if n != "host")]
    length = next((v for n, v in fields if n == "content-length"), None)
    if length is not None and length.isdigit() and int(length) > limits.max_body_size:
        raise Reject(413, "request body too large")
    return Request(method, target, fields, True, client, http="2")


def error_output(exc: Exception, out: bytes, last_stream_id: int) -> bytes:
    """What to send after ``h2`` raised ``exc`` (``out``: what it queued, GOAWAY last).

    h2 calls an undecodable header block PROTOCOL_ERROR; RFC 9113 section 4.3 says
    COMPRESSION_ERROR, so that GOAWAY is replaced. (An oversized list stays
    ENHANCE_YOUR_CALM.)"""
    cause = exc.__cause__
    if (
        type(exc) is h2.exceptions.ProtocolError
        and isinstance(cause, hpack.HPACKError)
        and not isinstance(cause, hpack.OversizedHeaderListError)
        and len(out) >= _GOAWAY_SIZE
        and out[-_GOAWAY_SIZE:][:5] == b"\x00\x00\x08\x07\x00"
    ):
        frame = GoAwayFrame(
            0, last_stream_id=last_stream_id, error_code=ErrorCodes.COMPRESSION_ERROR
        )
        return out[:-_GOAWAY_SIZE] + frame.serialize()
    return out
