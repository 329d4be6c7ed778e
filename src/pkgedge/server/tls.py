"""TLS for the client listener, and the choice of protocol by ALPN.

:func:`tls_context` offers ``h2`` and ``http/1.1`` by ALPN (``http/1.1`` only with
``--http2 false``); :func:`client_protocol` is the listener's protocol factory. With TLS and
HTTP/2 on, each connection starts as an :class:`AlpnSwitch`: asyncio calls its
``connection_made`` once the handshake is complete, so the negotiated protocol is known there;
it builds the HTTP/2 or the HTTP/1.1 protocol, hands it the transport
(``transport.set_protocol``) and steps aside. A client that negotiates nothing gets HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol

from pkgedge.errors import ConfigError
from pkgedge.http.request import Request
from pkgedge.server.h2 import H2Protocol
from pkgedge.server.h2stream import H2Stream
from pkgedge.server.limits import Connection, Limits
from pkgedge.server.protocol import HttpProtocol
from pkgedge.stats.counters import Counters


class Handler(Protocol):
    """A handler for both protocols (the edge's pipeline takes any ``Client``)."""

    def try_hit(self, req: Request, client: HttpProtocol | H2Stream) -> bool: ...
    async def handle(self, req: Request, client: HttpProtocol | H2Stream) -> None: ...


def tls_context(cert: str | None, key: str | None, *, http2: bool = True) -> ssl.SSLContext | None:
    """A server context for ``cert``/``key`` (PEM) offering ``h2`` (if ``http2``) and
    ``http/1.1`` by ALPN; ``None`` without a certificate (plain HTTP)."""
    if not cert or not key:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} and key {key}: {exc}") from None
    if http2:
        # RFC 9113 section 9.2: TLS 1.2 or later, no renegotiation, no compression
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return ctx


class AlpnSwitch(asyncio.Protocol):
    """Chooses HTTP/2 or HTTP/1.1 by the protocol the TLS handshake negotiated."""

    def __init__(
        self, http1: Callable[[], asyncio.Protocol], http2: Callable[[], asyncio.Protocol]
    ) -> None:
        self._http1 = http1
        self._http2 = http2

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol = self._http2() if alpn == "h2" else self._http1()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


def client_protocol(
    handler: Handler,
    counters: Counters,
    connections: set[Connection],
    limits: Limits,
    ctx: ssl.SSLContext | None,
    *,
    http2: bool = True,
) -> Callable[[], asyncio.Protocol]:
    """The client listener's protocol factory: HTTP/1.1, or chosen by ALPN when TLS is on and
    ``http2`` (then ``ctx`` must come from :func:`tls_context` with the same ``http2``)."""
    tls = ctx is not None

    def make_h1() -> asyncio.Protocol:
        return HttpProtocol(handler, counters, connections, tls=tls, limits=limits)

    if not tls or not http2:
        return make_h1

    def make_h2() -> asyncio.Protocol:
        return H2Protocol(handler, counters, connections, limits=limits)

    return lambda: AlpnSwitch(make_h1, make_h2)
