"""Behaviour signals: patterns of requests that no well-behaved installer produces.

Each detector is fed by the caller (which decides what is a file, a project page, ...) and
returns a :class:`SignalHit` for every observation made while its condition holds (``first``
marks the one that crossed the limit: log that one, count all). A hit is a *symptom*;
:class:`SignalPolicy` turns it into an action: ``observe`` (log and count), ``throttle`` (the
caller takes a stricter bucket for ``duration``) or ``block`` (the caller penalty-boxes).

Windows, and why a hit is never premature:

* Counts (:class:`RepeatDownloads`, :class:`NotFoundRatio`) use a window anchored at a key's
  first event: the count restarts once ``window`` seconds have passed since that event. A hit
  therefore always means the limit was really exceeded within ``window`` seconds (a burst
  straddling two windows may be seen late, never early).
* Distinct counts (:class:`Enumeration`, :class:`CacheBusting`) slide: an item counts while it
  was last seen less than ``window`` seconds ago.

Memory is bounded by ``max_entries`` per detector (LRU): dropping an entry only ever lowers a
count, so under pressure a detector misses, it does not accuse. Items are kept as 64-bit hashes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, cast, get_args

from pkgedge.errors import ConfigError

__all__ = [
    "ACTIONS",
    "Action",
    "CacheBusting",
    "CountSettings",
    "Enumeration",
    "NotFoundRatio",
    "RatioSettings",
    "RepeatDownloads",
    "SignalAction",
    "SignalHit",
    "SignalPolicy",
]

Action = Literal["observe", "throttle", "block"]
ACTIONS: tuple[str, ...] = get_args(Action)


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{owner}.{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class CountSettings:
    """More than ``limit`` events (or distinct items) within ``window`` seconds."""

    limit: int
    window: float
    max_entries: int = 100_000

    def __post_init__(self) -> None:
        _positive("CountSettings", window=self.window, max_entries=self.max_entries)
        if not self.limit >= 0:
            raise ConfigError(f"CountSettings.limit must be >= 0, got {self.limit!r}")


@dataclass(frozen=True, slots=True)
class RatioSettings:
    """A share of ``statuses`` above ``ratio`` once a client made ``min_requests``."""

    ratio: float = 0.5
    min_requests: int = 50
    window: float = 300.0
    max_entries: int = 50_000
    statuses: frozenset[int] = frozenset({404})

    def __post_init__(self) -> None:
        _positive("RatioSettings", min_requests=self.min_requests, window=self.window)
        _positive("RatioSettings", max_entries=self.max_entries)
        if not 0 <= self.ratio < 1:
            raise ConfigError(f"RatioSettings.ratio must be within [0, 1), got {self.ratio!r}")


@dataclass(frozen=True, slots=True)
class SignalHit:
    """``client`` showed ``reason``: ``value`` (a count or a ratio) is above ``limit``."""

    reason: str
    client: str
    value: float
    limit: float
    first: bool


def _due(last: float, window: float) -> float:
    """A time a little before ``last + window``: before it, ``now - last < window`` surely
    holds (the margin, ~1e-12 relative, is far above the rounding of either form)."""
    return last + window - (abs(last) + window) * 1e-12


class _Expiring:
    """Entries ordered by last-seen time (index 1 of the value), dropped from the front once
    ``window`` has passed since then. While ``now`` never runs back the front is the oldest
    entry, so the time it expires is remembered (``_next``) instead of looked at on every
    call; once ``now`` runs back the order is unknown and every call looks at the front, as
    all calls did before, until the table is empty again."""

    def __init__(self, window: float) -> None:
        self._window = window
        self._next = math.inf  # no entry has expired before this time
        self._latest = -math.inf  # the latest ``now`` seen
        self._ordered = True

    def _clock(self, now: float) -> None:
        """Call first with every ``now``; prunes the front when it may have expired."""
        if now >= self._latest:
            self._latest = now
        else:
            self._ordered = False
            self._next = -math.inf
        if not now < self._next:
            self._prune(now)

    def _front(self) -> tuple[object, float] | None:
        raise NotImplementedError

    def _drop_front(self) -> None:
        raise NotImplementedError

    def _prune(self, now: float) -> None:
        window = self._window
        while (front := self._front()) is not None:
            if now - front[1] < window:
                if self._ordered:
                    self._next = _due(front[1], window)
                return
            self._drop_front()
        # empty: what comes next is ordered if it is not older than this call
        self._ordered, self._next, self._latest = True, math.inf, now

    def _added(self, now: float) -> None:
        """Call after adding an entry last seen at ``now``."""
        if self._ordered:
            self._next = min(self._next, _due(now, self._window))


class _Windows(_Expiring):
    """Counters per key over a window anchored at the key's first event, LRU-bounded.

    An entry is ``[start, last, counter...]``; entries are ordered by ``last``, so the ones
    whose window has surely ended (``last`` a window ago) are dropped from the front."""

    def __init__(self, window: float, cap: int, width: int) -> None:
        super().__init__(window)
        self._cap, self._width = cap, width
        self._entries: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _front(self) -> tuple[object, float] | None:
        entries = self._entries
        if not entries:
            return None
        entry = next(iter(entries.values()))
        return None, entry[1]

    def _drop_front(self) -> None:
        self._entries.popitem(last=False)

    def touch(self, key: Hashable, now: float) -> list[float]:
        if now < self._next and now >= self._latest:  # _clock(), inlined: every request
            self._latest = now
        else:
            self._clock(now)
        entries = self._entries
        entry = entries.get(key)
        if entry is None or now - entry[0] >= self._window:
            if entry is None and len(entries) >= self._cap:
                entries.popitem(last=False)
            entry = entries[key] = [now, now] + [0.0] * self._width
            self._added(now)
        elif now > entry[1]:
            entry[1] = now
        entries.move_to_end(key)
        return entry


class _Distinct(_Expiring):
    """Distinct items per client, each counted while seen less than ``window`` ago."""

    def __init__(self, window: float, cap: int) -> None:
        super().__init__(window)
        self._cap = cap
        self._seen: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def _front(self) -> tuple[object, float] | None:
        seen = self._seen
        return next(iter(seen.values())) if seen else None

    def _drop_front(self) -> None:
        _, (client, _) = self._seen.popitem(last=False)
        left = self._counts[client] - 1
        if left:
            self._counts[client] = left
        else:
            del self._counts[client]

    def add(self, client: str, item: str, now: float) -> tuple[int, bool]:
        """(distinct count for ``client``, whether ``item`` was new to the window)."""
        if now < self._next and now >= self._latest:  # _clock(), inlined: every request
            self._latest = now
        else:
            self._clock(now)
        seen = self._seen
        h = hash((client, item))
        entry = seen.get(h)
        if entry is not None:
            if now > entry[1]:
                seen[h] = (entry[0], now)
            seen.move_to_end(h)
            return self._counts.get(client, 0), False
        if len(seen) >= self._cap:
            self._drop_front()
        seen[h] = (client, now)
        self._added(now)
        count = self._counts[client] = self._counts.get(client, 0) + 1
        return count, True


class RepeatDownloads:
    """The same file fetched more than ``limit`` times by one client within ``window``: a CI
    job downloading its dependencies afresh every run. Feed it successful file downloads."""

    REASON = "ci-loop-without-cache"
    DEFAULTS = CountSettings(limit=30, window=3600.0)

    def __init__(self, settings: CountSettings | None = None) -> None:
        self.settings = settings or self.DEFAULTS
        s = self.settings
        self._windows = _Windows(s.window, s.max_entries, 1)

    def __len__(self) -> int:
        return len(self._windows)

    def observe(self, client: str, path: str, now: float) -> SignalHit | None:
        entry = self._windows.touch(hash((client, path)), now)
        count = entry[2] = entry[2] + 1
        limit = self.settings.limit
        if count <= limit:
            return None
        return SignalHit(self.REASON, client, count, limit, count == limit + 1)


class NotFoundRatio:
    """More than ``ratio`` of a client's requests answered 404 (``statuses``), once it made at
    least ``min_requests`` within ``window``: a scanner or a typo-squatting prober. Feed it
    every request with its final status."""

    REASON = "high-404-ratio"
    DEFAULTS = RatioSettings()

    def __init__(self, settings: RatioSettings | None = None) -> None:
        self.settings = settings or self.DEFAULTS
        s = self.settings
        self._windows = _Windows(s.window, s.max_entries, 2)
        self._statuses = s.statuses

    def __len__(self) -> int:
        return len(self._windows)

    def _over(self, requests: float, missing: float) -> bool:
        s = self.settings
        return requests >= s.min_requests and missing > s.ratio * requests

    def observe(self, client: str, status: int, now: float) -> SignalHit | None:
        entry = self._windows.touch(client, now)
        requests, missing = entry[2], entry[3]
        entry[2] = requests + 1
        if status in self._statuses:
            entry[3] = missing + 1
        if not entry[3]:  # no miss in the window: never over (ratio >= 0)
            return None
        if not self._over(entry[2], entry[3]):
            return None
        before = self._over(requests, missing)
        return SignalHit(self.REASON, client, entry[3] / entry[2], self.settings.ratio, not before)


class _DistinctSignal:
    REASON = ""
    DEFAULTS = CountSettings(limit=1, window=1.0)

    def __init__(self, settings: CountSettings | None = None) -> None:
        self.settings = settings or self.DEFAULTS
        self._distinct = _Distinct(self.settings.window, self.settings.max_entries)

    def __len__(self) -> int:
        return len(self._distinct)

    def _add(self, client: str, item: str, now: float) -> SignalHit | None:
        count, new = self._distinct.add(client, item, now)
        if count <= self.settings.limit:
            return None
        return self._add_hit(count, new, client)

    def _add_hit(self, count: int, new: bool, client: str) -> SignalHit:
        limit = self.settings.limit
        return SignalHit(self.REASON, client, count, limit, new and count == limit + 1)


class Enumeration(_DistinctSignal):
    """More than ``limit`` distinct projects' pages (JSON API or simple index) within
    ``window``: walking the index. A large resolve touches a few hundred projects; mirrors
    enumerate on purpose (exempt them by ACL). Feed it the normalized project name."""

    REASON = "enumeration"
    DEFAULTS = CountSettings(limit=1000, window=600.0, max_entries=200_000)

    def observe(self, client: str, page: str, now: float) -> SignalHit | None:
        count, new = self._distinct.add(client, page, now)
        if count <= self.settings.limit:  # _add(), inlined: every index page
            return None
        return self._add_hit(count, new, client)


class CacheBusting(_DistinctSignal):
    """More than ``limit`` distinct ``path?query`` with a non-empty query on file and simple
    routes within ``window``: defeating the cache to reach the origin. Installers send none."""

    REASON = "cache-busting"
    DEFAULTS = CountSettings(limit=50, window=600.0)

    def observe(self, client: str, path: str, query: str, now: float) -> SignalHit | None:
        """An empty query is not counted (and returns None)."""
        if not query:
            return None
        return self._add(client, f"{path}?{query}", now)


_DEFAULT_ACTIONS: dict[str, Action] = {
    RepeatDownloads.REASON: "throttle",
    Enumeration.REASON: "throttle",
    NotFoundRatio.REASON: "observe",
    CacheBusting.REASON: "block",
}


@dataclass(frozen=True, slots=True)
class SignalAction:
    """What to do about ``hit``: ``action`` for ``duration`` seconds (0 for observe)."""

    action: Action
    duration: float
    reason: str
    hit: SignalHit


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    """Hit reason → action. ``actions`` given are merged over the defaults (repeat downloads
    and enumeration throttle, 404 ratio observes, cache busting blocks); reasons not listed
    get ``default``."""

    actions: Mapping[str, str] = field(default_factory=dict)
    default: str = "observe"
    throttle_duration: float = 300.0
    block_duration: float = 900.0

    def __post_init__(self) -> None:
        merged = {**_DEFAULT_ACTIONS, **self.actions}
        for reason, action in [*merged.items(), ("default", self.default)]:
            if action not in ACTIONS:
                raise ConfigError(f"signal action for {reason!r} must be one of {ACTIONS}")
        _positive("SignalPolicy", throttle=self.throttle_duration, block=self.block_duration)
        object.__setattr__(self, "actions", MappingProxyType(merged))

    def action_for(self, reason: str) -> Action:
        return cast(Action, self.actions.get(reason, self.default))  # validated above

    def decide(self, hit: SignalHit) -> SignalAction:
        action = self.action_for(hit.reason)
        duration = {"observe": 0.0, "throttle": self.throttle_duration}.get(
            action, self.block_duration
        )
        return SignalAction(action, duration, hit.reason, hit)
