"""Reason phrases that explain: twine prints the HTTP reason phrase of a refused upload and,
without ``--verbose``, nothing else, so the origin puts its one-line explanation there as the
public index does (``400 File already exists ...``), besides the plain-text body.

ASGI has no field for a reason phrase, so a response names its phrase in the
``pkgedge-reason`` field (:data:`pkgedge.http.headers.REASON_FIELD`, already sanitised) and
:class:`ReasonProtocol`, uvicorn's httptools protocol with one change, moves it into the
status line as the head is written. Under another ASGI server the field goes out as is, and
the edge (which carries a non-standard phrase it receives through to its clients) makes the
status line from it too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pkgedge.http.headers import REASON_FIELD

_FIELD = b"\r\n" + REASON_FIELD.encode() + b": "


def with_reason(head: bytes) -> bytes:
    """A response head whose ``pkgedge-reason`` field (uvicorn writes names lower-case)
    becomes the status line's reason phrase."""
    at = head.find(_FIELD)
    if at < 0 or not head.startswith(b"HTTP/1.1 "):
        return head
    end = head.index(b"\r\n", at + len(_FIELD))
    phrase = head[at + len(_FIELD) : end].strip()
    line_end = head.index(b"\r\n")
    status = head[9:line_end].split(b" ", 1)[0]
    return b"HTTP/1.1 " + status + b" " + phrase + head[line_end:at] + head[end:]


class _Transport:
    """The transport a request's cycle writes to: the response head (its first write after
    any ``100 Continue``) passes through :func:`with_reason`; body bytes never do."""

    def __init__(self, real: asyncio.Transport) -> None:
        self._real = real
        self._head = True

    def write(self, data: bytes) -> None:
        if self._head and not data.startswith(b"HTTP/1.1 100 "):
            self._head = False
            data = with_reason(data)
        self._real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class ReasonProtocol(HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _Transport(self.transport)  # type: ignore[assignment]
