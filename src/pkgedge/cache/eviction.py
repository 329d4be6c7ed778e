"""Byte-bounded eviction policies for the memory tier: S3-FIFO and an LRU reference.

:class:`S3FIFO` is the size-aware S3-FIFO of Yang et al., "FIFO queues are all you need for
cache eviction" (SOSP'23). New keys enter a small FIFO (10% of the capacity in bytes); a key
that is read again while there is promoted to the main FIFO (the other 90%) when it reaches the
head, otherwise it is evicted and remembered in a ghost FIFO (keys only, as many as main holds
when full). A key that comes back while it is still a ghost goes straight to main. Main is a
FIFO with "second chance": an entry read since it was last examined has its counter (capped at
3) decremented and is reinserted at the tail.

A hit is a dict lookup and a capped integer increment: no list is touched, so one-hit wonders
(a mirror crawling every project once) pass through the small queue without displacing the
working set. :class:`LRU` has the same interface and serves as the baseline.

Both classes are single-threaded (no locking) and do no I/O. ``on_evict`` is called for every
entry dropped to make room, never for :meth:`remove`, :meth:`clear` or a replaced value; it is
called after the cache is consistent again, so it may call back into the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

__all__ = ["LRU", "S3FIFO"]

_MAX_FREQ = 3
_SMALL_FRACTION = 0.10


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")


class _Bounded:
    """What both policies share: the byte budget and the lookup counters."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self._capacity = capacity
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def bytes_used(self) -> int:
        return self._bytes

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0


class _Entry(Generic[K, V]):
    __slots__ = ("freq", "in_main", "key", "size", "value")

    def __init__(self, key: K, value: V, size: int, freq: int, in_main: bool) -> None:
        self.key = key
        self.value = value
        self.size = size
        self.freq = freq
        self.in_main = in_main


class S3FIFO(_Bounded, Generic[K, V]):
    """Size-aware S3-FIFO cache bounded by ``capacity`` bytes."""

    def __init__(self, capacity: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        super().__init__(capacity)
        self._small_target = int(capacity * _SMALL_FRACTION)
        self._on_evict = on_evict
        self._entries: dict[K, _Entry[K, V]] = {}
        self._small: OrderedDict[K, _Entry[K, V]] = OrderedDict()  # head = first, tail = last
        self._main: OrderedDict[K, _Entry[K, V]] = OrderedDict()
        self._ghost: OrderedDict[K, None] = OrderedDict()
        self._small_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        """Return the value for ``key`` (``None`` if absent), counting a hit or a miss."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        if entry.freq < _MAX_FREQ:
            entry.freq += 1
        return entry.value

    def put(self, key: K, value: V, size: int) -> bool:
        """Store ``value`` under ``key``, evicting as needed.

        Returns False, and stores nothing, if ``size`` exceeds the capacity; a value already
        cached under ``key`` is then dropped too (without ``on_evict``) so it cannot go stale.
        """
        _check_size(size)
        old = self._entries.get(key)
        if size > self._capacity:
            if old is not None:  # never leave the stale value behind
                self._unlink(old)
            return False
        if old is not None:
            # Replacement keeps the entry's queue and frequency; it is taken out first so that
            # making room can never evict the entry being written.
            self._unlink(old)
            in_main, freq = old.in_main, old.freq
        else:
            in_main = key in self._ghost  # evicted from small recently: straight to main
            if in_main:
                del self._ghost[key]
            freq = 0
        evicted = self._make_room(size)
        entry = _Entry(key, value, size, freq, in_main)
        self._entries[key] = entry
        if in_main:
            self._main[key] = entry
        else:
            self._small[key] = entry
            self._small_bytes += size
        self._bytes += size
        self._notify(evicted)
        return True

    def remove(self, key: K) -> bool:
        """Drop ``key`` without calling ``on_evict``; False if it was not cached."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._unlink(entry)
        return True

    def clear(self) -> None:
        """Drop every entry and ghost without calling ``on_evict``; hit/miss counts are kept."""
        self._entries.clear()
        self._small.clear()
        self._main.clear()
        self._ghost.clear()
        self._small_bytes = 0
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"<S3FIFO capacity={self._capacity} used={self._bytes} items={len(self._entries)}"
            f" small={len(self._small)} main={len(self._main)} ghost={len(self._ghost)}"
            f" hit_ratio={self.hit_ratio:.2f}>"
        )

    # -- internals -------------------------------------------------------------------------

    def _unlink(self, entry: _Entry[K, V]) -> None:
        del self._entries[entry.key]
        if entry.in_main:
            del self._main[entry.key]
        else:
            del self._small[entry.key]
            self._small_bytes -= entry.size
        self._bytes -= entry.size
        self._trim_ghost()

    def _make_room(self, size: int) -> list[_Entry[K, V]]:
        evicted: list[_Entry[K, V]] = []
        limit = self._capacity - size
        while self._bytes > limit:
            if self._small and (self._small_bytes >= self._small_target or not self._main):
                victim = self._evict_small()
                if victim is None:  # everything in small was promoted
                    victim = self._evict_main()
            else:
                victim = self._evict_main()
            evicted.append(victim)
        return evicted

    def _evict_small(self) -> _Entry[K, V] | None:
        small, main = self._small, self._main
        while small:
            _, entry = small.popitem(last=False)
            self._small_bytes -= entry.size
            if entry.freq > 0:  # read again while in small: promote, the hit is spent
                entry.freq = 0
                entry.in_main = True
                main[entry.key] = entry
                continue
            del self._entries[entry.key]
            self._bytes -= entry.size
            self._remember(entry.key)
            return entry
        return None

    def _evict_main(self) -> _Entry[K, V]:
        main = self._main
        while True:
            key, entry = main.popitem(last=False)
            if entry.freq > 0:  # second chance: at most _MAX_FREQ laps per entry
                entry.freq -= 1
                main[key] = entry
                continue
            del self._entries[key]
            self._bytes -= entry.size
            self._trim_ghost()
            return entry

    def _remember(self, key: K) -> None:
        self._ghost[key] = None
        self._trim_ghost()

    def _trim_ghost(self) -> None:
        # As many keys as main holds, or would hold once the cache is full (90% of its entries
        # at the current mix of sizes): without that floor a cold or scanned cache whose main
        # is still empty could never remember anything and would never fill main.
        ghost = self._ghost
        bound = max(len(self._main), len(self._entries) * 9 // 10)
        while len(ghost) > bound:
            ghost.popitem(last=False)

    def _notify(self, evicted: list[_Entry[K, V]]) -> None:
        if self._on_evict is not None:
            for entry in evicted:
                self._on_evict(entry.key, entry.value)


class LRU(_Bounded, Generic[K, V]):
    """Least-recently-used cache bounded by ``capacity`` bytes (the reference policy)."""

    def __init__(self, capacity: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        super().__init__(capacity)
        self._on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()  # LRU first, MRU last

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        """Return the value for ``key`` (``None`` if absent), counting a hit or a miss."""
        item = self._entries.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Store ``value`` under ``key``, evicting as needed.

        Returns False, and stores nothing, if ``size`` exceeds the capacity; a value already
        cached under ``key`` is then dropped too (without ``on_evict``) so it cannot go stale.
        """
        _check_size(size)
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if size > self._capacity:
            return False
        evicted: list[tuple[K, V]] = []
        limit = self._capacity - size
        while self._bytes > limit:
            victim, (victim_value, victim_size) = entries.popitem(last=False)
            self._bytes -= victim_size
            evicted.append((victim, victim_value))
        entries[key] = (value, size)
        self._bytes += size
        if self._on_evict is not None:
            for victim, victim_value in evicted:
                self._on_evict(victim, victim_value)
        return True

    def remove(self, key: K) -> bool:
        """Drop ``key`` without calling ``on_evict``; False if it was not cached."""
        item = self._entries.pop(key, None)
        if item is None:
            return False
        self._bytes -= item[1]
        return True

    def clear(self) -> None:
        """Drop every entry without calling ``on_evict``; hit/miss counts are kept."""
        self._entries.clear()
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"<LRU capacity={self._capacity} used={self._bytes} items={len(self._entries)}"
            f" hit_ratio={self.hit_ratio:.2f}>"
        )
