"""Behaviour signals that several nodes share (pure: the I/O is :mod:`pkgedge.cluster.signals`).

Each detector of :mod:`pkgedge.security.signals` has a twin here that keeps the whole
decision on the hit path (no Redis wait per request) and adds two tables:

* ``pending``: what was observed here since the last sync. Counts (:class:`SharedRepeats`,
  :class:`SharedNotFound`): per key ``[first, last, events, misses]``, the times of the first
  and last event and how many there were. Distinct counts (:class:`SharedEnumeration`,
  :class:`SharedBusting`): per client the items that were new to the local window, with the
  time. The sync :meth:`drain` s it every fraction of a second.
* ``remote``: the cluster's figures the last sync brought back (:meth:`settle`): per key the
  shared record's ``[events, misses, first]``, per client ``[distinct, oldest]``; each with a
  flag, set once a hit came from it (so ``SignalHit.first`` is given once per figure).

A decision takes the larger of the local figure and the cluster's, never their sum: the
cluster's already holds this node's events up to the last sync (and a distinct item may have
been seen on several nodes), so a sum could count an event twice. Both figures count real
events within less than ``window`` seconds, so the rule of :mod:`.signals` holds across nodes:
a hit is never premature; under pressure (tables full, Redis down, a late sync) a detector
misses, it does not accuse. A cluster figure is used only while the current event is within
its window (a count's record began less than ``window`` ago; a distinct count's oldest item
was seen less than ``window`` ago), and all of them are dropped (:meth:`forget`) when a sync
fails: local counts only until Redis answers again.

Distinct items travel as 64-bit BLAKE2b hashes (:func:`item_hash`: stable across processes,
unlike ``hash()``), kept in Redis in one sorted set per client scored by last-seen time, so
the cluster's count is exact over the same sliding window as the local one (a hash collision
merges two items: one fewer, never one more). A HyperLogLog (PFADD/PFCOUNT) would be smaller
but its estimate can be above the true count (about 0.8 % standard error) and it cannot forget
an item after ``window`` seconds; neither fits "never overcount". The set is capped at a
little over twice the limit (the oldest items go first): the question is only whether the
count is above the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import TYPE_CHECKING

from pkgedge.security.signals import (
    CacheBusting,
    CountSettings,
    Enumeration,
    NotFoundRatio,
    RatioSettings,
    RepeatDownloads,
    SignalHit,
)

if TYPE_CHECKING:
    from pkgedge.security.signals import _Distinct

__all__ = [
    "PENDING_MAX",
    "CountRecord",
    "DistinctFigure",
    "SharedBusting",
    "SharedEnumeration",
    "SharedNotFound",
    "SharedRepeats",
    "SharedSignals",
    "count_key",
    "distinct_cap",
    "item_hash",
]

#: keys (or distinct items) one detector keeps for the next sync; beyond, they are not shared
PENDING_MAX = 50_000
#: (events, misses, first) of a shared record, as the sync returns it
CountRecord = tuple[float, float, float]
#: (distinct items, time the oldest of them was last seen), as the sync returns it
DistinctFigure = tuple[float, float]


def item_hash(item: str) -> bytes:
    """The 8 bytes a distinct item is known by in Redis (the same on every node)."""
    return hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def count_key(key: Hashable) -> str:
    """A count's key as Redis names it: the client, or ``client path-hash`` for a
    (client, path) pair (a path can be long)."""
    if isinstance(key, tuple):
        client, path = key
        return f"{client} {item_hash(str(path)).hex()}"
    return str(key)


def distinct_cap(limit: int) -> int:
    """How many items the shared set of one client keeps (oldest dropped beyond)."""
    return 2 * limit + 16


def _put(table: dict[Hashable, list[float]], key: Hashable, value: list[float], cap: int) -> None:
    """Insert ``value`` as the most recently updated entry, dropping the least recent one
    beyond ``cap`` (a dropped figure only means a miss)."""
    table.pop(key, None)
    table[key] = value
    if len(table) > cap:
        del table[next(iter(table))]


class _SharedCounts:
    """What the count detectors add: ``pending`` per key and the shared ``remote`` records."""

    window: float
    cap: int

    def _init_shared(self, window: float, cap: int) -> None:
        self.window, self.cap = window, cap
        self.pending: dict[Hashable, list[float]] = {}
        self.remote: dict[Hashable, list[float]] = {}  # [events, misses, first, fired]

    def _pend(self, key: Hashable, now: float, miss: float) -> None:
        p = self.pending.get(key)
        if p is None:
            if len(self.pending) < PENDING_MAX:
                self.pending[key] = [now, now, 1.0, miss]
            return
        if now > p[1]:
            p[1] = now
        elif now < p[0]:
            p[0] = now
        p[2] += 1.0
        p[3] += miss

    def drain(self) -> dict[Hashable, list[float]]:
        """Per key ``[first, last, events, misses]`` since the last drain (and a fresh
        account for what follows)."""
        out, self.pending = self.pending, {}
        return out

    def settle(self, records: dict[Hashable, CountRecord], now: float) -> None:
        """The shared records after this node's batch was added (its own events included)."""
        remote, window = self.remote, self.window
        for key, (events, misses, first) in records.items():
            old = remote.get(key)
            fired = 1.0 if old is not None and old[3] and old[2] == first else 0.0
            _put(remote, key, [events, misses, first, fired], self.cap)
        while remote:  # the least recently updated first: drop those that can no longer count
            front = next(iter(remote))
            if now - remote[front][2] < window:
                break
            del remote[front]

    def forget(self) -> None:
        """Redis is down: local counts only."""
        self.remote.clear()


class SharedRepeats(_SharedCounts, RepeatDownloads):
    """:class:`RepeatDownloads` with the cluster's count per (client, file)."""

    def __init__(self, settings: CountSettings | None = None) -> None:
        super().__init__(settings)
        self._init_shared(self.settings.window, self.settings.max_entries)

    def observe(self, client: str, path: str, now: float) -> SignalHit | None:
        key = (client, path)
        entry = self._windows.touch(hash(key), now)
        count = entry[2] = entry[2] + 1
        self._pend(key, now, 0.0)
        limit = self.settings.limit
        value, first = count, count == limit + 1
        r = self.remote.get(key)
        if r is not None and r[0] > count and now - r[2] < self.window:
            value, first = int(r[0]), not r[3]
        if value <= limit:
            return None
        if r is not None:
            r[3] = 1.0
        return SignalHit(self.REASON, client, value, limit, first)


class SharedNotFound(_SharedCounts, NotFoundRatio):
    """:class:`NotFoundRatio` with the cluster's (requests, 404s) per client."""

    def __init__(self, settings: RatioSettings | None = None) -> None:
        super().__init__(settings)
        self._init_shared(self.settings.window, self.settings.max_entries)

    def observe(self, client: str, status: int, now: float) -> SignalHit | None:
        entry = self._windows.touch(client, now)
        requests, missing = entry[2], entry[3]
        entry[2] = requests + 1
        miss = status in self._statuses
        if miss:
            entry[3] = missing + 1
        p = self.pending.get(client)  # _pend(), inlined: every request
        if p is None:
            self._pend(client, now, 1.0 if miss else 0.0)
        else:
            if now > p[1]:
                p[1] = now
            elif now < p[0]:
                p[0] = now
            p[2] += 1.0
            if miss:
                p[3] += 1.0
        r = self.remote.get(client)
        if r is not None and r[1]:  # the cluster saw misses from this client
            hit = self._remote(client, r, now)
            if hit is not None:
                return hit
        if not entry[3] or not self._over(entry[2], entry[3]):
            return None
        if r is not None:
            r[3] = 1.0
        first = not self._over(requests, missing)
        return SignalHit(self.REASON, client, entry[3] / entry[2], self.settings.ratio, first)

    def _remote(self, client: str, r: list[float], now: float) -> SignalHit | None:
        if now - r[2] >= self.window or not self._over(r[0], r[1]):
            return None
        first = not r[3]
        r[3] = 1.0
        return SignalHit(self.REASON, client, r[1] / r[0], self.settings.ratio, first)


class _SharedDistinct:
    """What the distinct detectors add: new items per client, the shared counts."""

    window: float
    cap: int
    settings: CountSettings
    REASON: str
    _distinct: _Distinct

    def _init_shared(self) -> None:
        self.window, self.cap = self.settings.window, self.settings.max_entries
        self.pending: dict[str, dict[str, float]] = {}
        self.remote: dict[Hashable, list[float]] = {}  # [distinct, oldest, fired]
        self._items = 0  # items in pending
        self._limit = self.settings.limit

    def _shared(
        self, client: str, item: str, count: int, new: bool, now: float
    ) -> SignalHit | None:
        """The decision, once the local window counted ``item``."""
        if new:
            self._pend(client, item, now)
        r = self.remote.get(client)
        if r is not None and r[0] > count and now - r[1] < self.window:
            return self._hit(client, int(r[0]), not r[2], r)
        if count <= self._limit:
            return None
        return self._hit(client, count, new and count == self._limit + 1, r)

    def _add(self, client: str, item: str, now: float) -> SignalHit | None:
        count, new = self._distinct.add(client, item, now)
        return self._shared(client, item, count, new, now)

    def _pend(self, client: str, item: str, now: float) -> None:
        if self._items < PENDING_MAX:
            p = self.pending.get(client)
            if p is None:
                p = self.pending[client] = {}
            p[item] = now
            self._items += 1

    def _hit(self, client: str, value: int, first: bool, r: list[float] | None) -> SignalHit | None:
        limit = self._limit
        if value <= limit:
            return None
        if r is not None:
            r[2] = 1.0
        return SignalHit(self.REASON, client, value, limit, first)

    def drain(self) -> dict[str, dict[str, float]]:
        """Per client the items new to the local window since the last drain → last seen."""
        out, self.pending, self._items = self.pending, {}, 0
        return out

    def settle(self, figures: dict[str, DistinctFigure], now: float) -> None:
        """The cluster's distinct count per client after this node's items were added."""
        remote, limit, window = self.remote, self._limit, self.window
        for client, (distinct, oldest) in figures.items():
            old = remote.get(client)
            fired = 1.0 if old is not None and old[2] and old[0] > limit else 0.0
            _put(remote, client, [distinct, oldest, fired], self.cap)
        while remote:
            front = next(iter(remote))
            if now - remote[front][1] < window:
                break
            del remote[front]

    def forget(self) -> None:
        """Redis is down: local counts only."""
        self.remote.clear()


class SharedEnumeration(_SharedDistinct, Enumeration):
    """:class:`Enumeration` with the cluster's distinct pages per client."""

    def __init__(self, settings: CountSettings | None = None) -> None:
        super().__init__(settings)
        self._init_shared()

    def observe(self, client: str, page: str, now: float) -> SignalHit | None:
        return self._add(client, page, now)


class SharedBusting(_SharedDistinct, CacheBusting):
    """:class:`CacheBusting` with the cluster's distinct queries per client."""

    def __init__(self, settings: CountSettings | None = None) -> None:
        super().__init__(settings)
        self._init_shared()


class SharedSignals:
    """The four shared detectors of one guard, built from the settings of its own."""

    def __init__(
        self,
        repeats: CountSettings,
        not_found: RatioSettings,
        enumeration: CountSettings,
        busting: CountSettings,
    ) -> None:
        self.repeats = SharedRepeats(repeats)
        self.not_found = SharedNotFound(not_found)
        self.enumeration = SharedEnumeration(enumeration)
        self.busting = SharedBusting(busting)

    def __repr__(self) -> str:
        return f"<SharedSignals remote={sum(len(d.remote) for d in self.all)}>"

    @property
    def counts(self) -> tuple[SharedRepeats, SharedNotFound]:
        return self.repeats, self.not_found

    @property
    def distinct(self) -> tuple[SharedEnumeration, SharedBusting]:
        return self.enumeration, self.busting

    @property
    def all(self) -> tuple[_SharedCounts | _SharedDistinct, ...]:
        return (*self.counts, *self.distinct)

    def forget(self) -> None:
        for d in self.all:
            d.forget()
