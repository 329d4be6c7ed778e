"""Invalidation after unsafe requests (RFC 9111 §4.4). Pure.

A cache MUST invalidate the target URI when a non-error (2xx or 3xx) response to an unsafe
request passes through it, and MUST invalidate the URIs in Location and Content-Location when
they are on the same host as the target URI (the "same host" rule keeps one origin from
purging another's objects). Methods whose safety is unknown count as unsafe; an error response
(4xx, 5xx) invalidates nothing.

Location and Content-Location are resolved against the origin URL the edge fetched. "Same
host" is either that origin or the authority the client addressed (its Host field); a URI on
the origin is mapped to the edge path that caches it by the caller's ``to_edge`` (the pure
:meth:`pkgedge.edge.rewrite.Rewriter.to_edge`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urljoin, urlsplit

from pkgedge.cache.keys import cache_path

__all__ = ["SAFE_METHODS", "invalidated_paths"]

#: RFC 9110 §9.2.1.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

#: (url, base) → (edge URL, foreign origin or None): the shape of ``Rewriter.to_edge``.
ToEdge = Callable[[str, str], tuple[str, "str | None"]]


def _edge_path(value: str, base: str, host: str | None, to_edge: ToEdge) -> str | None:
    value = value.strip()
    if not value:
        return None
    absolute = urljoin(base, value)
    p = urlsplit(absolute)
    if p.scheme not in ("http", "https") or not p.netloc:
        return None
    if host and p.netloc.lower() == host.strip().lower():
        return (p.path or "/") + (("?" + p.query) if p.query else "")
    mapped, foreign = to_edge(absolute, base)
    if foreign is not None or not mapped.startswith("/"):
        return None  # another host: RFC 9111 §4.4 forbids invalidating on its word
    return mapped.partition("#")[0]


def invalidated_paths(
    method: str,
    status: int,
    target: str,
    resp: Mapping[str, str],
    *,
    base: str,
    host: str | None,
    to_edge: ToEdge,
) -> list[str]:
    """Cache paths (:func:`~pkgedge.cache.keys.cache_path`) to invalidate after ``method``
    on the edge ``target`` was answered ``status`` with response fields ``resp``.

    ``base`` is the origin URL the request went to, ``host`` the client's Host field.
    """
    if method.upper() in SAFE_METHODS or not 200 <= status < 400:
        return []
    paths = [cache_path(target)]
    for name in ("location", "content-location"):
        value = resp.get(name)
        if value is None:
            continue
        path = _edge_path(value, base, host, to_edge)
        if path is not None:
            path = cache_path(path)
            if path not in paths:
                paths.append(path)
    return paths
