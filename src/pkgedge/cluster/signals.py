"""Behaviour signals shared by every node through Redis.

Each worker's guard runs the shared twins of its detectors
(:mod:`pkgedge.security.sharedsignals`), which decide on the hit path with local tables.
Every :data:`INTERVAL` seconds :class:`SignalSync` drains what they observed since the last
sync and sends it to Redis, one atomic Lua script call per detector (and per
:data:`CHUNK` keys), all on one pipeline (one round trip), then hands the cluster's figures
the scripts return back to the detectors, whose next decisions use them:

* counts (repeat downloads per client and file, requests and 404s per client): a hash
  ``pkgedge:sig:REASON:KEY`` (``first``, ``last``, ``n``, ``m``). :data:`COUNT` adds a batch
  (the first and last time of its events, their counts) to the record only when all of the
  record's events and the batch's stay within less than ``window`` seconds; a batch that
  would stretch it further starts a new record if it is later (the window moved on, as the
  local windows restart) and is dropped if it is older. So a record never holds more events
  than happened within one window: it may miss some, it never counts one too many.
* distinct counts (project pages, cache-busting queries per client): a sorted set
  ``pkgedge:sig:REASON:CLIENT`` of 8-byte item hashes scored by the time last seen
  (``ZADD GT``). :data:`DISTINCT` adds the items, drops those last seen ``window`` or more
  ago, keeps at most ``2 * limit + 16`` (the oldest go) and returns the count and the oldest
  time: the exact count over the local detectors' sliding window. The module docstring of
  :mod:`pkgedge.security.sharedsignals` says why not a HyperLogLog.

Both scripts remove a millisecond more than the window asks (an item or an event at the
window's very edge is dropped rather than counted on a rounding). Redis down: a warning, the
cluster's figures dropped (local counts only), and syncing resumes when it answers; what was
observed meanwhile is not sent (the shared counts miss it). Clocks must agree (NTP).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any

from redis.exceptions import NoScriptError

from pkgedge.cluster.link import PREFIX, Client, repeat
from pkgedge.security.sharedsignals import (
    CountRecord,
    DistinctFigure,
    SharedSignals,
    count_key,
    distinct_cap,
    item_hash,
)

INTERVAL = 0.1
SIG = PREFIX + "sig:"
#: keys (or clients) per script call
CHUNK = 500

#: KEYS: records; ARGV: now, window, then first, last, events, misses per key
#: → events, misses, first of each record afterwards
COUNT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2]) - 0.001
local function fmt(x) return string.format('%.17g', x) end
local out = {}
for i, key in ipairs(KEYS) do
  local j = 4 * i - 1
  local f, l = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  local n, m = tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3])
  local r = redis.call('HMGET', key, 'first', 'last', 'n', 'm')
  local rf, rl = tonumber(r[1]), tonumber(r[2])
  local rn, rm = tonumber(r[3]) or 0, tonumber(r[4]) or 0
  if l - f < window then
    local take = true
    if rf == nil or rl == nil then
      rf, rl, rn, rm = f, l, n, m
    elseif math.max(rl, l) - math.min(rf, f) < window then
      rf, rl, rn, rm = math.min(rf, f), math.max(rl, l), rn + n, rm + m
    elseif f > rf then
      rf, rl, rn, rm = f, l, n, m
    else
      take = false
    end
    if take then
      redis.call('HSET', key, 'first', fmt(rf), 'last', fmt(rl), 'n', fmt(rn), 'm', fmt(rm))
      redis.call('PEXPIRE', key, math.max(1000, math.ceil((rf + window - now) * 1000) + 1000))
    end
  end
  out[3 * i - 2] = fmt(rn)
  out[3 * i - 1] = fmt(rm)
  out[3 * i] = fmt(rf or 0)
end
return out
"""

#: KEYS: one sorted set per client; ARGV: now, window, cap, then per key the number of
#: items and that many (last seen, hash) pairs → distinct count, oldest time per key
DISTINCT = """
local now, window, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function fmt(x) return string.format('%.17g', x) end
local out = {}
local j = 4
for i, key in ipairs(KEYS) do
  local k = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, k do
    redis.call('ZADD', key, 'GT', ARGV[j], ARGV[j + 1])
    j = j + 2
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - window + 0.001))
  local card = redis.call('ZCARD', key)
  if card > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, card - cap - 1)
    card = cap
  end
  local oldest = now
  if card > 0 then
    oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
    redis.call('PEXPIRE', key, math.ceil(window * 1000) + 1000)
  end
  out[2 * i - 1] = fmt(card)
  out[2 * i] = fmt(oldest)
end
return out
"""


#: one script call on the pipeline: (script's SHA1, keys, args, what takes its answer)
_Call = tuple[str, list[str], list[Any], Callable[[list[Any]], None]]


class SignalSync:
    """One per worker: share its guard's behaviour signals."""

    def __init__(self, client: Client, shared: SharedSignals) -> None:
        self.redis = client
        self.shared = shared
        self._scripts = (client.register_script(COUNT), client.register_script(DISTINCT))
        self.synced = 0

    def __repr__(self) -> str:
        return f"<SignalSync synced={self.synced}>"

    async def run(self) -> None:
        await repeat(
            self.sync, INTERVAL, "behaviour signals stay local", on_down=self.shared.forget
        )

    async def sync(self) -> None:
        """Send what every detector observed since the last sync; take the cluster's
        figures back: every detector's script calls on one pipeline (one round trip).
        (Everything is drained first: what a failed call held is not sent.)"""
        when = time.time()
        calls: list[_Call] = []
        settles: list[Callable[[float], None]] = []
        for det in self.shared.counts:
            batch = det.drain()
            if batch:
                records: dict[Hashable, CountRecord] = {}
                calls += self._count_calls(det.REASON, det.window, when, batch, records)
                settles.append(partial(det.settle, records))
        for ddet in self.shared.distinct:
            items = ddet.drain()
            if items:
                figures: dict[str, DistinctFigure] = {}
                cap = distinct_cap(ddet.settings.limit)
                calls += self._distinct_calls(ddet.REASON, ddet.window, cap, when, items, figures)
                settles.append(partial(ddet.settle, figures))
        if not calls:
            return
        await self._execute(calls)
        now = time.time()
        for settle in settles:
            settle(now)

    async def counts(
        self, reason: str, window: float, when: float, batch: dict[Hashable, list[float]]
    ) -> dict[Hashable, CountRecord]:
        """Add ``batch`` (key → first, last, events, misses) to the shared records."""
        out: dict[Hashable, CountRecord] = {}
        await self._execute(self._count_calls(reason, window, when, batch, out))
        return out

    async def distinct(
        self, reason: str, window: float, cap: int, when: float, batch: dict[str, dict[str, float]]
    ) -> dict[str, DistinctFigure]:
        """Add ``batch`` (client → item → last seen) to the shared sets."""
        out: dict[str, DistinctFigure] = {}
        await self._execute(self._distinct_calls(reason, window, cap, when, batch, out))
        return out

    def _count_calls(
        self,
        reason: str,
        window: float,
        when: float,
        batch: dict[Hashable, list[float]],
        out: dict[Hashable, CountRecord],
    ) -> list[_Call]:
        keys = list(batch)
        calls: list[_Call] = []
        for start in range(0, len(keys), CHUNK):
            part = keys[start : start + CHUNK]
            args: list[Any] = [when, window]
            for k in part:
                args += batch[k]

            def take(got: list[Any], part: list[Hashable] = part) -> None:
                self.synced += len(part)
                for i, k in enumerate(part):
                    events = float(got[3 * i])
                    if events:
                        out[k] = (events, float(got[3 * i + 1]), float(got[3 * i + 2]))

            names = [f"{SIG}{reason}:{count_key(k)}" for k in part]
            calls.append((self._scripts[0].sha, names, args, take))
        return calls

    def _distinct_calls(
        self,
        reason: str,
        window: float,
        cap: int,
        when: float,
        batch: dict[str, dict[str, float]],
        out: dict[str, DistinctFigure],
    ) -> list[_Call]:
        clients = list(batch)
        calls: list[_Call] = []
        for start in range(0, len(clients), CHUNK):
            part = clients[start : start + CHUNK]
            args: list[Any] = [when, window, cap]
            for c in part:
                items = batch[c]
                args.append(len(items))
                for item, seen in items.items():
                    args += [seen, item_hash(item)]

            def take(got: list[Any], part: list[str] = part) -> None:
                self.synced += len(part)
                for i, c in enumerate(part):
                    out[c] = (float(got[2 * i]), float(got[2 * i + 1]))

            calls.append((self._scripts[1].sha, [f"{SIG}{reason}:{c}" for c in part], args, take))
        return calls

    async def _execute(self, calls: list[_Call]) -> None:
        """Run ``calls`` on one pipeline and give each its answer. A Redis that lost the
        scripts (restarted) answers NOSCRIPT: they are loaded and only those calls sent
        again (a call that ran must not run twice: it adds its counts)."""
        results = await self._pipeline(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for script in self._scripts:
                await self.redis.script_load(script.script)
            again = await self._pipeline([calls[i] for i in missing])
            for i, r in zip(missing, again, strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        for call, got in zip(calls, results, strict=True):
            call[3](got)

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for sha, keys, args, _ in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results
