"""Per-worker limits on client connections: sizes, deadlines, connection caps.

The numbers come from settings (the defaults are those of trusted proxies: 8 KiB request
target, 64 KiB of head in 100 fields, a 10 s head deadline against slowloris). Deadlines are
enforced by one sweep per second over the worker's connections (:meth:`HttpProtocol.check`),
not by a timer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from pkgedge.stats.counters import Counters


@dataclass
class Limits:
    max_request_line: int = 8192
    max_header_size: int = 65536
    max_headers: int = 100
    max_body_size: int = 110 * 1024 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0
    idle_timeout: float = 75.0
    max_connections: int = 10_000
    max_connections_per_client: int = 256
    open: int = 0
    per_client: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    #: bytes of a whole GET/HEAD request (keep-alive, no body) → its parse (method, target,
    #: headers, fields), shared by the connections these limits apply to (see
    #: ``HttpProtocol.data_received``)
    parsed: dict[bytes, tuple[str, str, list[tuple[str, str]], dict[str, str]]] = field(
        default_factory=dict
    )

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            max_request_line=settings.max_request_line,
            max_header_size=settings.max_header_size,
            max_headers=settings.max_headers,
            max_body_size=settings.max_body_size,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            send_timeout=settings.send_timeout,
            idle_timeout=settings.idle_timeout,
            max_connections=settings.max_connections,
            max_connections_per_client=settings.max_connections_per_client,
        )

    def admit(self, client: str) -> bool:
        """Count a new connection; False (and nothing counted) when a cap is reached."""
        held = self.per_client.get(client, 0)
        if self.open >= self.max_connections or held >= self.max_connections_per_client:
            self.refused += 1
            return False
        self.open += 1
        self.per_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        held = self.per_client.get(client, 0) - 1
        if held > 0:
            self.per_client[client] = held
        else:
            self.per_client.pop(client, None)

    def __repr__(self) -> str:
        return (
            f"<Limits open={self.open}/{self.max_connections} clients="
            f"{len(self.per_client)} refused={self.refused}>"
        )


class Connection(Protocol):
    """What the worker needs from every client connection, whichever protocol it speaks."""

    @property
    def busy(self) -> bool: ...

    #: ``close()`` lets in-flight requests finish (HTTP/2: GOAWAY); the worker's graceful stop
    #: may call it on busy connections too. Else it only closes idle ones.
    graceful: bool

    def check(self, now: float) -> None: ...
    def close(self) -> None: ...


def admit_connection(
    transport: asyncio.Transport, client: str, limits: Limits, counters: Counters
) -> bool:
    """A new client connection: TCP_NODELAY, then the connection caps. Over a cap the
    connection is aborted at once (so accept keeps working for others) and False returned."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if limits.admit(client):
        return True
    counters.add("connections_refused")
    transport.abort()
    return False
