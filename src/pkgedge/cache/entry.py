"""A cached object's metadata: what the disk tier's index stores for each key."""

from __future__ import annotations

import marshal
from typing import Any

from pkgedge.http.headers import Headers

_VERSION = 1


class Entry:
    """Metadata of one stored response. The body lives in a file named by ``objid``."""

    __slots__ = (
        "headers",
        "initial_age",
        "keys",
        "lifetime",
        "must_revalidate",
        "no_cache",
        "objid",
        "response_time",
        "sie",
        "size",
        "soft_purged",
        "status",
        "swr",
    )

    def __init__(
        self,
        objid: str,
        status: int,
        headers: Headers,
        *,
        response_time: float,
        initial_age: float,
        lifetime: float,
        swr: float = 0.0,
        sie: float = 0.0,
        must_revalidate: bool = False,
        no_cache: bool = False,
        size: int = 0,
        soft_purged: bool = False,
        keys: list[str] | None = None,
    ) -> None:
        self.objid = objid
        self.status = status
        self.headers = headers
        self.response_time = response_time
        self.initial_age = initial_age
        self.lifetime = lifetime
        self.swr = swr
        self.sie = sie
        self.must_revalidate = must_revalidate
        self.no_cache = no_cache
        self.size = size
        self.soft_purged = soft_purged
        self.keys = keys or []

    def age(self, now: float) -> float:
        """RFC 9111 §4.2.3 current_age."""
        return self.initial_age + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left (negative when stale; soft-purged objects are stale)."""
        if self.soft_purged:
            return -1.0
        return self.lifetime - self.age(now)

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def to_bytes(self) -> bytes:
        return marshal.dumps(
            (
                _VERSION,
                self.objid,
                self.status,
                self.headers,
                self.response_time,
                self.initial_age,
                self.lifetime,
                self.swr,
                self.sie,
                self.must_revalidate,
                self.no_cache,
                self.size,
                self.soft_purged,
                self.keys,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        t: tuple[Any, ...] = marshal.loads(data)
        if t[0] != _VERSION:
            raise ValueError("unknown entry version")
        e = cls.__new__(cls)
        (
            _,
            e.objid,
            e.status,
            e.headers,
            e.response_time,
            e.initial_age,
            e.lifetime,
            e.swr,
            e.sie,
            e.must_revalidate,
            e.no_cache,
            e.size,
            e.soft_purged,
            e.keys,
        ) = t
        return e

    def __repr__(self) -> str:
        return (
            f"<Entry {self.objid} status={self.status} size={self.size} "
            f"lifetime={self.lifetime:.0f} soft_purged={self.soft_purged}>"
        )
