"""Rewriting index pages so that every file URL points back through the edge (pure).

An upstream index may link files on a separate file host (absolute URLs). Clients would then
bypass the edge for the heaviest objects, so links are rewritten: same-host URLs become edge
paths, other hosts become ``/+f/<scheme>/<host[:port]>/<path>``, a route the edge proxies for
hosts it has seen in the upstream's pages (and only those).
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

FILE_PREFIX = "/+f/"
_HTML_HREF = re.compile(rb'(\bhref\s*=\s*")([^"]*)(")', re.IGNORECASE)
_JSON_URL = re.compile(rb'("url"\s*:\s*")((?:[^"\\]|\\.)*)(")')
#: a link to a foreign file host in a page already in edge form: /+f/<scheme>/<host[:port]>/
_EDGE_FOREIGN = re.compile(rb'"/\+f/(https?)/([A-Za-z0-9.:\[\]_-]+)/')

REWRITABLE = (
    "text/html",
    "application/vnd.pypi.simple.v1+html",
    "application/vnd.pypi.simple.v1+json",
    "application/json",
)


def foreign_origins(body: bytes) -> set[str]:
    """The foreign origins an edge-form page links through ``/+f/`` (a peer's answer)."""
    return {
        f"{m.group(1).decode()}://{m.group(2).decode().lower()}"
        for m in _EDGE_FOREIGN.finditer(body)
    }


class Rewriter:
    """Maps upstream URLs to edge paths for one upstream index."""

    def __init__(self, index_url: str) -> None:
        parts = urlsplit(index_url)
        self.scheme = parts.scheme
        self.netloc = parts.netloc.lower()
        self.index_path = parts.path if parts.path.endswith("/") else parts.path + "/"

    def to_edge(self, url: str, base: str) -> tuple[str, str | None]:
        """(edge URL for ``url`` found on page ``base``, a foreign origin it needs, or None)."""
        absolute = urljoin(base, url)
        p = urlsplit(absolute)
        if p.scheme not in ("http", "https"):
            return url, None
        tail = (("?" + p.query) if p.query else "") + (("#" + p.fragment) if p.fragment else "")
        if p.netloc.lower() == self.netloc and p.scheme == self.scheme:
            if p.path.startswith(self.index_path):
                return "/simple/" + p.path[len(self.index_path) :] + tail, None
            return p.path + tail, None
        origin = f"{p.scheme}://{p.netloc.lower()}"
        return f"{FILE_PREFIX}{p.scheme}/{p.netloc.lower()}{p.path}{tail}", origin

    def rewrite_body(self, body: bytes, content_type: str, page_url: str) -> tuple[bytes, set[str]]:
        """Rewrite links in an HTML or JSON page; return the body and foreign origins seen."""
        origins: set[str] = set()
        pattern = _JSON_URL if "json" in content_type else _HTML_HREF

        def sub(m: re.Match[bytes]) -> bytes:
            raw = m.group(2).decode("utf-8", "surrogateescape")
            url = raw.replace("\\/", "/").replace("&amp;", "&")
            new, origin = self.to_edge(url, page_url)
            if origin:
                origins.add(origin)
            if new == url:
                return m.group(0)
            if "json" not in content_type:
                new = new.replace("&", "&amp;")
            return m.group(1) + new.encode("utf-8", "surrogateescape") + m.group(3)

        return pattern.sub(sub, body), origins

    def location(self, value: str, page_url: str) -> str:
        """Rewrite a redirect's Location so the client stays on the edge."""
        new, _ = self.to_edge(value, page_url)
        return new

    def upstream_url(self, edge_path: str) -> tuple[str, str] | None:
        """(origin, target) the edge fetches for a client path; None if not routable here."""
        if edge_path.startswith("/simple/") or edge_path == "/simple":
            rest = edge_path[len("/simple/") :] if edge_path != "/simple" else ""
            if edge_path == "/simple":
                return f"{self.scheme}://{self.netloc}", self.index_path.rstrip("/")
            return f"{self.scheme}://{self.netloc}", self.index_path + rest
        if edge_path.startswith(FILE_PREFIX):
            rest = edge_path[len(FILE_PREFIX) :]
            scheme, _, rest = rest.partition("/")
            netloc, _, path = rest.partition("/")
            if scheme not in ("http", "https") or not netloc:
                return None
            return f"{scheme}://{netloc}", "/" + path
        return f"{self.scheme}://{self.netloc}", edge_path
