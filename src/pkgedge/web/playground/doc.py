"""A playground document: the draft configuration and the requests to send through it.

The same shape is what the page edits, what ``POST /playground/run`` takes, what Save stores
and what Export writes for ``pkgedge playground test``::

    {"config": "sub recv { ... }",
     "origin": "test",                      # or "upstream" (the edge's configured one)
     "requests": [{"method": "GET", "path": "/status=200/cache=60",
                   "headers": {"accept": "text/html"}, "body": "",
                   "client": "192.0.2.7",  # optional: the client's address
                   "assert": ["client.status == 200", "cache.state == \\"miss\\""]}]}

:func:`parse_doc` checks every field and raises :class:`PlaygroundError` naming the first
problem (``requests[2].headers``: ...); JSON and TOML files are both read.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pkgedge.errors import PkgedgeError

MAX_CONFIG = 1 << 20
MAX_REQUESTS = 50
MAX_HEADERS = 64
MAX_ASSERTS = 32
MAX_BODY = 64 << 10
MAX_PATH = 8192
ORIGINS = ("test", "upstream")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class PlaygroundError(PkgedgeError):
    """A playground document that cannot be used; the message names the field."""

    status = 400


@dataclass
class PlayRequest:
    method: str = "GET"
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str = ""
    client: str = "127.0.0.1"
    asserts: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "headers": dict(self.headers),
            "assert": list(self.asserts),
        }
        if self.body:
            out["body"] = self.body
        if self.client != "127.0.0.1":
            out["client"] = self.client
        return out


@dataclass
class Doc:
    config: str
    requests: list[PlayRequest]
    origin: str = "test"

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "origin": self.origin,
            "requests": [r.as_json() for r in self.requests],
        }


def _str(value: Any, where: str, limit: int) -> str:
    if not isinstance(value, str):
        raise PlaygroundError(f"{where} must be a string")
    if len(value) > limit:
        raise PlaygroundError(f"{where} is longer than {limit} characters")
    return value


def _headers(value: Any, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        items = [(p[0], p[1]) for p in value]
    else:
        raise PlaygroundError(f"{where} must be an object of name: value (or [name, value] pairs)")
    if len(items) > MAX_HEADERS:
        raise PlaygroundError(f"{where}: at most {MAX_HEADERS} fields")
    out = []
    for name, raw in items:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise PlaygroundError(f"{where}: {name!r} is not a field name")
        v = _str(raw, f"{where}[{name!r}]", 8192)
        if any(c in v for c in "\r\n\0"):
            raise PlaygroundError(f"{where}[{name!r}]: a value may not hold CR, LF or NUL")
        out.append((name.lower(), v.strip()))
    return out


def _request(raw: Any, i: int) -> PlayRequest:
    where = f"requests[{i}]"
    if not isinstance(raw, dict):
        raise PlaygroundError(f"{where} must be an object with method, path, headers, assert")
    unknown = set(raw) - {"method", "path", "headers", "body", "client", "assert"}
    if unknown:
        raise PlaygroundError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    method = _str(raw.get("method", "GET"), f"{where}.method", 32).upper()
    if not _TOKEN.match(method):
        raise PlaygroundError(f"{where}.method: {method!r} is not a method")
    path = _str(raw.get("path", "/"), f"{where}.path", MAX_PATH)
    if not path.startswith("/") or any(c in path for c in " \t\r\n\0"):
        raise PlaygroundError(f"{where}.path must start with / and hold no spaces")
    client = _str(raw.get("client", "127.0.0.1"), f"{where}.client", 64)
    try:
        ipaddress.ip_address(client)
    except ValueError:
        raise PlaygroundError(f"{where}.client: {client!r} is not an IP address") from None
    asserts = raw.get("assert", [])
    if isinstance(asserts, str):
        asserts = [asserts]
    if not isinstance(asserts, list) or len(asserts) > MAX_ASSERTS:
        raise PlaygroundError(f"{where}.assert must be a list of at most {MAX_ASSERTS} strings")
    return PlayRequest(
        method=method,
        path=path,
        headers=_headers(raw.get("headers"), f"{where}.headers"),
        body=_str(raw.get("body", ""), f"{where}.body", MAX_BODY),
        client=client,
        asserts=[_str(a, f"{where}.assert[{j}]", 1000) for j, a in enumerate(asserts) if a != ""],
    )


def parse_doc(data: Any) -> Doc:
    """A :class:`Doc` from decoded JSON/TOML (:class:`PlaygroundError` if it does not fit)."""
    if not isinstance(data, dict):
        raise PlaygroundError("a playground is an object with config and requests")
    unknown = set(data) - {"config", "origin", "requests", "id", "saved"}
    if unknown:
        raise PlaygroundError(f"unknown field {sorted(unknown)[0]!r}")
    config = _str(data.get("config", ""), "config", MAX_CONFIG)
    origin = _str(data.get("origin", "test"), "origin", 16)
    if origin not in ORIGINS:
        raise PlaygroundError(f"origin must be one of {', '.join(ORIGINS)}")
    reqs = data.get("requests", [])
    if not isinstance(reqs, list):
        raise PlaygroundError("requests must be a list")
    if len(reqs) > MAX_REQUESTS:
        raise PlaygroundError(f"at most {MAX_REQUESTS} requests per run")
    return Doc(config, [_request(r, i) for i, r in enumerate(reqs)], origin)


def loads(text: str | bytes, name: str = "") -> Doc:
    """Parse a document from JSON, or TOML when ``name`` ends in ``.toml``."""
    try:
        if name.endswith(".toml"):
            raw = text.decode() if isinstance(text, bytes) else text
            data: Any = tomllib.loads(raw)
        else:
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if name.endswith(".toml") else "JSON"
        raise PlaygroundError(f"not valid {kind}: {exc}") from None
    return parse_doc(data)
