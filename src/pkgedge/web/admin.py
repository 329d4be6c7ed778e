"""The admin API, on its own listener, behind a bearer token.

``POST /purge`` with a JSON body ``{"urls": [...], "keys": [...], "all": false, "soft": false}``
purges by URL, by surrogate keys (at most 256 per call) or everything; ``soft`` marks objects
stale instead of removing them. The purge is committed to the shared index before the call
returns, so every worker sees it. ``GET /stats`` (JSON), ``GET /metrics`` (Prometheus text) and
``GET /healthz`` (no token needed) complete it. With ``--redis`` a purge goes to every node
(:attr:`AdminHandler.purge_via`, :mod:`pkgedge.cluster.purges`), and the answer also has
``nodes`` (name → objects purged) and ``missing``.

Other modules add endpoints with :meth:`AdminHandler.route` (exact path, or a prefix ending in
``/``); the composition root (:mod:`pkgedge.app`) registers them. A route's handler gets the
request and the client after the token was checked and answers with :meth:`AdminHandler.reply`
(or writes a stream itself).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from pkgedge.cache.keys import cache_path
from pkgedge.cache.store import Store
from pkgedge.edge.context import Client
from pkgedge.http.response import error_response, response_head
from pkgedge.stats.counters import Counters, prometheus

if TYPE_CHECKING:
    from pkgedge.cache.memory import MemoryTier
    from pkgedge.http.request import Request

MAX_KEYS = 256

#: An admin endpoint: called with the request and the client once the token is checked.
Route = Callable[["Request", Client], Awaitable[None]]


class AdminHandler:
    def __init__(self, token: str, store: Store, counters: Counters, memory: MemoryTier) -> None:
        self.token = token
        self.store = store
        self.counters = counters
        self.memory = memory
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []
        self._open: set[str] = {"/healthz"}
        #: more Prometheus text for /metrics, each made from the counters' totals
        self.metric_sources: list[Callable[[dict[str, int]], str]] = []
        #: told every purge: {"purged", "urls", "keys", "all", "soft"}
        self.on_purge: list[Callable[[dict[str, Any]], None]] = []
        #: set by the composition root when purges go through Redis to every node
        self.purge_via: Callable[[bytes], Awaitable[tuple[int, bytes]]] | None = None

    def route(self, path: str, handler: Route, *, public: bool = False) -> None:
        """Serve ``path`` (a prefix when it ends with ``/``) with ``handler``; ``public``
        endpoints need no token (pages that ask for it themselves)."""
        if path.endswith("/"):
            self._prefixes.append((path, handler))
            self._prefixes.sort(key=lambda item: -len(item[0]))
        else:
            self._exact[path] = handler
        if public:
            self._open.add(path)

    def _find(self, path: str) -> tuple[str, Route] | None:
        if (handler := self._exact.get(path)) is not None:
            return path, handler
        for prefix, handler in self._prefixes:
            if path.startswith(prefix):
                return prefix, handler
        return None

    def reply(
        self,
        client: Client,
        req: Request,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        """Answer an admin request (errors: plain text with the reason)."""
        if status >= 400 and not extra and ctype == "application/json":
            client.write(error_response(status, body.decode(), close=not req.keep_alive))
            return
        self._send(client, req, status, body, ctype, extra)

    def try_hit(self, req: Request, client: Client) -> bool:
        return False

    def stats(self) -> dict[str, Any]:
        snap = self.counters.snapshot()
        objects, used = self.store.usage()
        snap["disk_objects"] = objects
        snap["disk_bytes"] = used
        return snap

    def _send(
        self,
        client: Client,
        req: Request,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        head = response_head(
            status,
            [("content-type", ctype), ("cache-control", "no-store"), *(extra or [])],
            length=len(body),
            age=None,
            cache_status="pkgedge; fwd=bypass",
            close=not req.keep_alive,
        )
        client.write(head + (b"" if req.method == "HEAD" else body))

    async def handle(self, req: Request, client: Client) -> None:
        path = req.target.partition("?")[0]
        close = not req.keep_alive
        if path == "/healthz":
            self._send(client, req, 200, b"ok\n", "text/plain; charset=utf-8")
            return
        found = self._find(path)
        if found is not None and found[0] in self._open:
            await found[1](req, client)
            return
        auth = req.map.get("authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            client.write(
                error_response(
                    401,
                    "admin token missing or wrong",
                    close=close,
                    extra=[("www-authenticate", "Bearer")],
                )
            )
            return
        if path == "/stats" and req.method in ("GET", "HEAD"):
            self._send(client, req, 200, json.dumps(self.stats(), indent=1).encode())
        elif path == "/metrics" and req.method in ("GET", "HEAD"):
            snap = self.stats()
            extra = {"disk_objects": snap.pop("disk_objects"), "disk_bytes": snap.pop("disk_bytes")}
            text = prometheus(snap, extra) + "".join(f(snap) for f in self.metric_sources)
            self._send(client, req, 200, text.encode(), "text/plain; version=0.0.4")
        elif path == "/purge":
            if req.method != "POST":
                client.write(
                    error_response(405, "use POST", close=close, extra=[("allow", "POST")])
                )
                return
            if self.purge_via is not None:  # through Redis to every node (pkgedge.cluster)
                status, body = await self.purge_via(req.body)
            else:
                status, body = self.purge(req.body)
            if status != 200:
                client.write(error_response(status, body.decode(), close=close))
                return
            self._send(client, req, 200, body)
        elif found is not None:
            await found[1](req, client)
        else:
            client.write(error_response(404, "no such admin endpoint", close=close))

    def check_purge(self, raw: bytes) -> tuple[int, bytes] | None:
        """The error :meth:`purge` would answer for ``raw`` (nothing purged), or None."""
        parsed = parse_purge(raw)
        return parsed if not isinstance(parsed, PurgeBody) else None

    def purge(self, raw: bytes) -> tuple[int, bytes]:
        parsed = parse_purge(raw)
        if not isinstance(parsed, PurgeBody):
            return parsed
        urls, keys, soft, everything = parsed
        count = 0
        if everything:
            count += self.store.purge_all(soft=soft)
        else:
            if urls:
                paths = []
                for u in urls:
                    p = urlsplit(u)
                    target = (p.path or "/") + ("?" + p.query if p.query else "")
                    paths.append(cache_path(target).encode())
                count += self.store.purge_keys(paths, soft=soft)
            if keys:
                count += self.store.purge_surrogate(keys, soft=soft)
        if everything and not soft:
            self.memory.clear()
        self.counters.add("purges", count)
        for hook in self.on_purge:
            hook({"purged": count, "urls": urls, "keys": keys, "all": everything, "soft": soft})
        return 200, json.dumps({"purged": count, "soft": soft}).encode()


class PurgeBody(NamedTuple):
    urls: list[str]
    keys: list[str]
    soft: bool
    everything: bool


def parse_purge(raw: bytes) -> PurgeBody | tuple[int, bytes]:
    """A purge request's body, or (400, the reason)."""
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return 400, b'body must be JSON: {"urls": [...], "keys": [...], "all": false}'
    if not isinstance(data, dict):
        return 400, b"body must be a JSON object"
    urls, keys = data.get("urls") or [], data.get("keys") or []
    soft, everything = bool(data.get("soft")), bool(data.get("all"))
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        return 400, b"urls must be a list of strings"
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return 400, b"keys must be a list of strings"
    if len(keys) > MAX_KEYS or len(urls) > MAX_KEYS:
        return 400, f"at most {MAX_KEYS} keys or urls per call".encode()
    if not (urls or keys or everything):
        return 400, b"nothing to purge: give urls, keys or all"
    return PurgeBody(urls, keys, soft, everything)
