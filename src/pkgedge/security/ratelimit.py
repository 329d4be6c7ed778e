"""Token buckets and a penalty box over a pluggable :class:`Store`.

A bucket holds up to ``burst`` tokens and gains ``rate`` per second; a request takes ``cost``
tokens (the caller prices it: a cache hit 1, a miss that reaches the origin 10). A request
costing more than ``burst`` could never pass, so it passes when the bucket is full and leaves
it in debt (negative), which refill pays back before anything else passes. A new key starts
with a full bucket. ``retry_after`` is exact: taking again at ``now + retry_after`` passes.

The math lives in :func:`refill` and :func:`take_tokens` so that any store does the same (a
Redis store runs it in one script). :class:`MemoryStore`, the in-process store, keeps at most
``max_keys`` buckets and ``max_keys`` penalties. To make room it drops a full bucket (it holds
nothing a new bucket would not) among the least recently used ones, and only when there is
none the least recently used bucket (which lets that client start over: counted in
``evicted_active``). Penalties are dropped when expired, else the oldest first.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType
from typing import Protocol

from pkgedge.errors import ConfigError

__all__ = [
    "BucketSpec",
    "Decision",
    "MemoryStore",
    "Penalty",
    "PenaltyBox",
    "RateLimiter",
    "Store",
    "refill",
    "take_tokens",
]

#: Float slack so that waiting exactly ``retry_after`` always suffices.
_EPSILON = 1e-9
#: How many least recently used buckets are examined for a full one before evicting.
_SCAN = 16


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """``rate`` tokens per second, at most ``burst`` tokens (both finite and > 0)."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        for name in ("rate", "burst"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"bucket {name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """``reason`` is ``"allowed"``, ``"allowed-debt"`` (cost above burst, bucket was full) or
    ``"limited"``; ``retry_after`` is 0 when allowed."""

    allowed: bool
    retry_after: float
    remaining: float
    reason: str
    spec: str = ""


@dataclass(frozen=True, slots=True)
class Penalty:
    """Refuse the key until ``until`` (exclusive), for ``reason``."""

    until: float
    reason: str


def refill(tokens: float, last: float, now: float, spec: BucketSpec) -> float:
    """Tokens at ``now`` of a bucket that held ``tokens`` at ``last`` (time never runs back)."""
    return min(spec.burst, tokens + max(0.0, now - last) * spec.rate)


def take_tokens(tokens: float, cost: float, now: float, spec: BucketSpec) -> tuple[bool, float]:
    """(allowed, tokens after) for taking ``cost`` at ``now`` from a bucket holding ``tokens``.

    The slack covers the rounding of ``now + retry_after - last`` (a few ulps of ``now``, times
    the rate), so that a caller coming back exactly at ``retry_after`` always passes."""
    slack = _EPSILON + 4 * math.ulp(now) * spec.rate
    if tokens + slack >= min(cost, spec.burst):
        return True, tokens - cost
    return False, tokens


class Store(Protocol):
    """Where buckets and penalties live. Each call is atomic for its key."""

    def take(self, key: str, cost: float, now: float, spec: BucketSpec) -> tuple[bool, float]:
        """Refill ``key``'s bucket (full if new) to ``now`` and :func:`take_tokens` from it;
        return (allowed, tokens after)."""
        ...

    def put_penalty(self, key: str, penalty: Penalty, now: float) -> Penalty:
        """Keep the later-ending of ``penalty`` and the current one; return the kept one."""
        ...

    def get_penalty(self, key: str, now: float) -> Penalty | None:
        """The penalty on ``key`` still running at ``now``, or None."""
        ...


class MemoryStore:
    """The in-process :class:`Store`: two LRU-ordered dicts of at most ``max_keys`` each."""

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ConfigError(f"max_keys must be >= 1, got {max_keys}")
        self.max_keys = max_keys
        # key → (tokens, last, time it is full again)
        self._buckets: OrderedDict[str, tuple[float, float, float]] = OrderedDict()
        self._penalties: OrderedDict[str, Penalty] = OrderedDict()
        self.evicted_idle = 0
        self.evicted_active = 0
        self.evicted_penalties = 0

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def penalties(self) -> int:
        return len(self._penalties)

    def take(self, key: str, cost: float, now: float, spec: BucketSpec) -> tuple[bool, float]:
        # refill() and take_tokens() inlined (the same arithmetic, in the same order): this
        # runs on every request, and the slack (math.ulp) is only needed when it decides
        buckets = self._buckets
        entry = buckets.get(key)
        burst = spec.burst
        if entry is None:
            if len(buckets) >= self.max_keys:
                self._evict_bucket(now)
            tokens, last = burst, now
        else:
            tokens, last = entry[0], entry[1]
            if now > last:
                tokens += (now - last) * spec.rate
                if tokens > burst:  # noqa: PLR1730 (min() costs a call per request)
                    tokens = burst
                last = now
        need = burst if burst < cost else cost
        allowed = tokens >= need or tokens + (_EPSILON + 4 * math.ulp(now) * spec.rate) >= need
        if allowed:
            tokens -= cost
        buckets[key] = (tokens, last, last + (burst - tokens) / spec.rate)
        buckets.move_to_end(key)
        return allowed, tokens

    def _evict_bucket(self, now: float) -> None:
        for key, (_, _, full_at) in islice(self._buckets.items(), _SCAN):
            if full_at <= now:
                del self._buckets[key]
                self.evicted_idle += 1
                return
        self._buckets.popitem(last=False)
        self.evicted_active += 1

    def put_penalty(self, key: str, penalty: Penalty, now: float) -> Penalty:
        current = self.get_penalty(key, now)
        if current is not None and current.until >= penalty.until:
            return current
        if current is None and len(self._penalties) >= self.max_keys:
            self._evict_penalty(now)
        self._penalties[key] = penalty
        self._penalties.move_to_end(key)
        return penalty

    def _evict_penalty(self, now: float) -> None:
        for key, penalty in islice(self._penalties.items(), _SCAN):
            if penalty.until <= now:
                del self._penalties[key]
                return
        self._penalties.popitem(last=False)
        self.evicted_penalties += 1

    def get_penalty(self, key: str, now: float) -> Penalty | None:
        penalty = self._penalties.get(key)
        if penalty is not None and penalty.until <= now:
            del self._penalties[key]
            return None
        return penalty

    def __repr__(self) -> str:
        return (
            f"<MemoryStore buckets={len(self._buckets)} penalties={len(self._penalties)}"
            f" max_keys={self.max_keys}>"
        )


class RateLimiter:
    """Named bucket specs (``{"client": BucketSpec(10, 100), "throttled": ...}``) applied to
    keys; a key has one independent bucket per spec it is taken under."""

    def __init__(
        self,
        specs: Mapping[str, BucketSpec],
        *,
        max_keys: int = 100_000,
        store: Store | None = None,
    ) -> None:
        if not specs:
            raise ConfigError("a rate limiter needs at least one bucket spec")
        self.specs: Mapping[str, BucketSpec] = MappingProxyType(dict(specs))
        self.store: Store = store if store is not None else MemoryStore(max_keys)

    def take(self, key: str, cost: float, now: float, spec: str) -> Decision:
        """Charge ``cost`` (negative and NaN count as 0, infinity as ``burst``) to ``key``'s
        ``spec`` bucket. An unknown ``spec`` is a caller bug: :class:`ConfigError`."""
        bucket = self.specs.get(spec)
        if bucket is None:
            raise ConfigError(f"unknown bucket spec {spec!r}; known: {sorted(self.specs)}")
        cost = self.price(cost, bucket)
        allowed, tokens = self.store.take(self.bucket_key(key, spec), cost, now, bucket)
        if allowed:
            reason = "allowed-debt" if cost > bucket.burst else "allowed"
            return Decision(True, 0.0, max(0.0, tokens), reason, spec)
        need = min(cost, bucket.burst)
        return Decision(False, (need - tokens) / bucket.rate, max(0.0, tokens), "limited", spec)

    @staticmethod
    def price(cost: float, bucket: BucketSpec) -> float:
        """``cost`` as :meth:`take` charges it: negative and NaN are 0, infinity ``burst``."""
        if not cost >= 0:
            return 0.0
        if cost == math.inf:
            return bucket.burst
        return cost

    @staticmethod
    def bucket_key(key: str, spec: str) -> str:
        """The store key of ``key``'s ``spec`` bucket (for :meth:`charge`)."""
        return f"{spec}\x1f{key}"

    def charge(self, bucket_key: str, cost: float, now: float, bucket: BucketSpec) -> float:
        """:meth:`take` for callers on a hot path that name and price their buckets once:
        ``bucket_key`` from :meth:`bucket_key`, ``cost`` from :meth:`price`, ``bucket`` the
        spec's :class:`BucketSpec`. Returns 0.0 when allowed, else ``retry_after`` (> 0),
        the same as :meth:`take` would; no :class:`Decision` is built."""
        allowed, tokens = self.store.take(bucket_key, cost, now, bucket)
        if allowed:
            return 0.0
        return (min(cost, bucket.burst) - tokens) / bucket.rate

    def __repr__(self) -> str:
        return f"<RateLimiter specs={sorted(self.specs)} store={self.store!r}>"


class PenaltyBox:
    """Keys refused outright for a while (``default_duration`` seconds unless told)."""

    def __init__(
        self, default_duration: float, max_keys: int = 100_000, *, store: Store | None = None
    ) -> None:
        if not (math.isfinite(default_duration) and default_duration > 0):
            raise ConfigError(f"penalty duration must be > 0, got {default_duration!r}")
        self.default_duration = default_duration
        self.store: Store = store if store is not None else MemoryStore(max_keys)
        #: key → a time from which the key surely has no penalty (None with a given store,
        #: which others may write): :meth:`check` can only find a penalty on a key while
        #: ``expires.get(key, -inf) > now``, so a caller may skip it otherwise (one dict get).
        self.expires: dict[str, float] | None = {} if store is None else None
        self._expires_cap = 2 * max_keys

    def penalize(
        self, key: str, now: float, duration: float | None = None, reason: str = "penalized"
    ) -> Penalty:
        """Refuse ``key`` until ``now + duration``; a longer running penalty is kept instead.
        Returns the penalty in force."""
        length = self.default_duration if duration is None else duration
        if not length >= 0:
            length = 0.0
        kept = self.store.put_penalty(key, Penalty(now + length, reason), now)
        expires = self.expires
        if expires is not None:
            if kept.until > expires.get(key, -math.inf):
                expires[key] = kept.until
            if len(expires) > self._expires_cap:
                # keep the keys the store still holds a penalty for (at most its max_keys)
                live = [(k, t) for k, t in expires.items() if t > now]
                expires.clear()  # in place: callers may hold the dict
                expires.update(
                    (k, t) for k, t in live if self.store.get_penalty(k, now) is not None
                )
        return kept

    def check(self, key: str, now: float) -> Penalty | None:
        """The penalty on ``key`` at ``now``, or None once it has expired."""
        return self.store.get_penalty(key, now)

    def __repr__(self) -> str:
        return f"<PenaltyBox default_duration={self.default_duration} store={self.store!r}>"
