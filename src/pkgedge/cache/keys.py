"""Cache keys: normalised request paths, and secondary keys for Vary (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
SIMPLE_JSON_LATEST = "application/vnd.pypi.simple.latest+json"
SIMPLE_HTML_LATEST = "application/vnd.pypi.simple.latest+html"

#: Vary field names that the edge folds away entirely: it stores identity bodies and
#: compresses itself, so Accept-Encoding never splits the cache.
_IGNORED_VARY = frozenset({"accept-encoding"})


_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
#: Characters a path segment may hold literally (RFC 3986 pchar minus "%"): decoding them
#: never changes the path's structure, and clients differ in which of them they encode
#: (pip writes ``+`` as ``%2B``), so the key uses the decoded form.
_UNRESERVED = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)


def _pct_fix(m: re.Match[str]) -> str:
    ch = chr(int(m.group(1), 16))
    return ch if ch in _UNRESERVED else "%" + m.group(1).upper()


def normalize_path(target: str) -> str:
    """Remove dot segments and decode percent-encoded characters a path may hold literally.

    ``/simple/./foo/../bar/`` → ``/simple/bar/``; ``/simple/%66oo/`` → ``/simple/foo/``;
    ``/%2Bf/`` → ``/+f/``; ``%2F`` stays encoded.
    The query, if any, is kept as given.
    """
    path, sep, query = target.partition("?")
    if "%" in path:
        path = _PCT.sub(_pct_fix, path)
    if "/." in path:
        segments: list[str] = []
        parts = path.split("/")
        for seg in parts[1:]:
            if seg == ".":
                continue
            if seg == "..":
                if segments:
                    segments.pop()
                continue
            segments.append(seg)
        trailing = parts[-1] in (".", "..")
        path = "/" + "/".join(segments) + ("/" if trailing and segments else "")
    return path + sep + query


def simple_variant(accept: str | None) -> str:
    """Fold an Accept header to the simple API's two real variants: ``json`` or ``html``.

    pip and uv send different Accept headers that mean the same thing; folding them lets
    both share cached objects. JSON wins when its q-value is at least that of HTML.
    """
    if not accept:
        return "html"
    best_json = -1.0
    best_html = -1.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if media in (SIMPLE_JSON, SIMPLE_JSON_LATEST):
            best_json = max(best_json, q)
        elif media in (SIMPLE_HTML, SIMPLE_HTML_LATEST, "text/html"):
            best_html = max(best_html, q)
        elif media in ("*/*", "application/*") and best_html < 0:
            best_html = max(best_html, q * 0.5)
    if best_json > 0 and best_json >= best_html:
        return "json"
    return "html"


_LIST_OWS = re.compile(r"[ \t]*,[ \t]*")


def vary_value(name: str, req: Mapping[str, str], path: str) -> str:
    """A selecting field's value, normalised as RFC 9111 §4.1 allows: outer whitespace and
    whitespace around commas removed, so ``a,b``, ``a , b`` and two lines ``a`` and ``b``
    (joined ``a, b``) match."""
    if name == "accept" and path.startswith("/simple"):
        return simple_variant(req.get("accept"))
    value = req.get(name, "").strip(" \t")
    return _LIST_OWS.sub(",", value) if "," in value else value


def secondary_key(
    primary: bytes, names: tuple[str, ...], req: Mapping[str, str], path: str
) -> bytes:
    """The key of one Vary variant of ``primary``."""
    values = "\x1f".join(vary_value(n, req, path) for n in names)
    return primary + b"\x00" + values.encode("utf-8", "surrogateescape")


def vary_names(vary_header: str | None) -> tuple[str, ...]:
    if not vary_header:
        return ()
    names = sorted({n.strip().lower() for n in vary_header.split(",") if n.strip()})
    return tuple(n for n in names if n not in _IGNORED_VARY)


#: Routes whose answers never depend on a query string: a random one must not bust the cache
#: (nor reach the origin).
FILE_ROUTES = ("/files/", "/+f/", "/packages/")
_NO_QUERY = FILE_ROUTES


def cache_path(target: str) -> str:
    """The request target as the cache and the origin see it: normalised, with the query
    dropped on file routes and reduced to ``format=`` on the simple API (PEP 691's only
    query parameter)."""
    path = normalize_path(target)
    base, sep, query = path.partition("?")
    if not sep:
        return path
    if base.startswith(_NO_QUERY):
        return base
    if base.startswith("/simple"):
        kept = [p for p in query.split("&") if p.startswith("format=")]
        return base + ("?" + kept[0] if kept else "")
    return path
