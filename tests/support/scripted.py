"""A tiny HTTP/1.1 origin on 127.0.0.1 whose answers tests script field by field.

Unlike :class:`support.upstream.UpstreamIndex` (a real index), it adds nothing on its own: no
Date, no Server, no validators; repeated header lines go out as given. Any method is accepted.
Tests script ``(method, path)`` with :class:`Reply` values or callables of the
:class:`Seen` request; the last scripted answer repeats. Unscripted requests get 404 no-store.
Connections are kept alive (the edge's pool reuses them).

    origin = ScriptedOrigin().start()
    origin.script("GET", "/simple/a/", Reply(200, [("Cache-Control", "max-age=60")], b"a"))
    edge = edge_factory(upstream=origin.index_url)
"""

from __future__ import annotations

import email.utils
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from .edge import parse_cache_status

__all__ = ["Reply", "ScriptedOrigin", "Seen", "hit", "http_date"]


def hit(resp: httpx.Response) -> bool:
    """Whether the edge answered from cache without contacting the origin (RFC 9211)."""
    return parse_cache_status(resp.headers.get("cache-status")).get("hit") is True


def http_date(ts: float | None = None) -> str:
    return email.utils.formatdate(time.time() if ts is None else ts, usegmt=True)


@dataclass
class Seen:
    """A request as the origin received it (field names lower-cased, lines kept apart)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        return ", ".join(values) if values else None


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


Answer = Reply | Callable[[Seen], Reply]
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
}


class ScriptedOrigin:
    def __init__(self) -> None:
        self._scripts: dict[tuple[str, str], list[Answer]] = {}
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stopping = False

    @property
    def url(self) -> str:
        assert self._sock is not None
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    @property
    def index_url(self) -> str:
        """The upstream URL for an edge: ``/simple/`` paths map to themselves."""
        return self.url + "/simple/"

    def script(self, method: str, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts[(method, path)] = list(answers)

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for s in self.seen if s.method == method and s.path == path)

    def requests(self, method: str, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and s.path == path]

    def start(self) -> ScriptedOrigin:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self._sock = sock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _answer(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            answers = self._scripts.get((seen.method, seen.path))
            if not answers:
                return Reply(404, [("Cache-Control", "no-store")], b"not scripted\n")
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(seen) if callable(answer) else answer

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.append((name.strip().lower(), value.strip()))
                length = int(next((v for n, v in headers if n == "content-length"), "0"))
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                reply = self._answer(Seen(method, target, headers, body))
                conn.sendall(self._render(reply, head_only=method == "HEAD"))
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    @staticmethod
    def _render(reply: Reply, *, head_only: bool) -> bytes:
        reason = _REASONS.get(reply.status, "Whatever")
        out = [f"HTTP/1.1 {reply.status} {reason}\r\n"]
        out.extend(f"{n}: {v}\r\n" for n, v in reply.headers)
        bodyless = reply.status in (204, 304) or 100 <= reply.status < 200
        if not bodyless and not any(n.lower() == "content-length" for n, _ in reply.headers):
            out.append(f"Content-Length: {len(reply.body)}\r\n")
        out.append("\r\n")
        data = "".join(out).encode("latin-1")
        return data if head_only or bodyless else data + reply.body
