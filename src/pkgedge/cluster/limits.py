"""Rate-limit buckets and penalties shared by every node through Redis.

Each worker's guard keeps its buckets and penalty boxes, and the rules' ``ratelimit``
counters their buckets, in :class:`~pkgedge.security.shared.SharedStore` objects, so the hit
path never waits for Redis.
Every :data:`INTERVAL` seconds :class:`LimitSync` sends what was spent per bucket to Redis in
one atomic Lua script call (refill, subtract, keep the bucket as a hash ``pkgedge:bucket:KEY``
with an expiry for when it is full again) and sets the local buckets to the shared levels it
returns; penalties given here go to the stream ``pkgedge:penalties`` and those given
elsewhere are read from it and put in the local boxes; all three on one pipeline (one round
trip). Redis down: a warning, local buckets
only, and syncing resumes when it answers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from pkgedge.cluster.link import PREFIX, Client, repeat
from pkgedge.security.ratelimit import PenaltyBox, Store
from pkgedge.security.shared import SharedStore

INTERVAL = 0.1
PENALTIES = PREFIX + "penalties"
_MAXLEN = 10_000

#: KEYS: bucket keys; ARGV: now, then cost, rate, burst per key → the tokens each holds now
SPEND = """
local now = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local b = redis.call('HMGET', key, 'tokens', 'last')
  local tokens = tonumber(b[1]) or burst
  local last = tonumber(b[2]) or now
  if now > last then
    tokens = math.min(burst, tokens + (now - last) * rate)
    last = now
  end
  tokens = tokens - cost
  redis.call('HSET', key, 'tokens', tostring(tokens), 'last', tostring(last))
  redis.call('PEXPIRE', key, math.ceil((burst - tokens) / rate * 1000) + 1000)
  out[i] = tostring(tokens)
end
return out
"""


class Limiter(Protocol):
    """What holds token buckets: the guard's ``RateLimiter``, the rules' counters
    (``edge/rulesrun.py``'s ``RuleLimiter``)."""

    store: Store


class LimitSync:
    """One per worker: share its guard's buckets and penalty boxes."""

    def __init__(
        self,
        client: Client,
        node: str,
        limiters: Sequence[Limiter],
        boxes: dict[str, PenaltyBox],
    ) -> None:
        self.redis = client
        self.node = node
        self.buckets = SharedStore()
        for limiter in limiters:  # one store: their keys differ, one script call syncs all
            limiter.store = self.buckets
        self.boxes = boxes
        self.stores: dict[str, SharedStore] = {}
        for name, box in boxes.items():
            self.stores[name] = box.store = SharedStore()
        self._spend = client.register_script(SPEND)
        self.last_penalty = "0-0"
        self.synced = 0

    def __repr__(self) -> str:
        return f"<LimitSync {self.node} synced={self.synced}>"

    async def run(self) -> None:
        await repeat(self.sync, INTERVAL, "rate limits stay local")

    async def sync(self) -> None:
        """Spend, publish this node's penalties and read the others': one pipeline (one
        round trip; a second only when Redis lost the script)."""
        when = time.time()
        spent = self.buckets.drain()
        keys = list(spent)
        names = [PREFIX + "bucket:" + k for k in keys]
        args: list[Any] = [when]
        for k in keys:
            cost, spec = spent[k]
            args += [cost, spec.rate, spec.burst]
        given = [(n, k, p) for n, s in self.stores.items() for k, p in s.drain_penalties().items()]
        pipe = self.redis.pipeline(transaction=False)
        if keys:
            pipe.evalsha(self._spend.sha, len(names), *names, *args)
        for box, key, p in given:
            fields = {"box": box, "key": key, "until": repr(p.until), "reason": p.reason}
            pipe.xadd(PENALTIES, {**fields, "node": self.node}, maxlen=_MAXLEN)
        pipe.xread({PENALTIES: self.last_penalty}, count=1000)
        results = await pipe.execute(raise_on_error=False)
        if keys:
            levels = results[0]
            if isinstance(levels, NoScriptError):  # a restarted Redis: the call loads it
                levels = await self._spend(keys=names, args=args)
            elif isinstance(levels, Exception):
                raise levels
            now = time.time()
            for k, level in zip(keys, levels, strict=True):
                self.buckets.settle(k, float(level), when, now, spent[k][1])
            self.synced += len(keys)
        for r in results[1 if keys else 0 :]:
            if isinstance(r, Exception):
                raise r
        self._take_penalties(results[-1])

    def _take_penalties(self, got: Any) -> None:
        """Put the penalties other nodes gave (an XREAD's answer) in the local boxes."""
        if not got:
            return
        now = time.time()
        for sid, f in got[0][1]:
            self.last_penalty = sid.decode()
            if f.get(b"node", b"").decode() == self.node:
                continue
            box = self.boxes.get(f[b"box"].decode())
            until = float(f[b"until"])
            if box is None or until <= now:
                continue
            store = self.stores[f[b"box"].decode()]
            store.quietly(True)
            try:
                box.penalize(f[b"key"].decode(), now, until - now, f[b"reason"].decode())
            finally:
                store.quietly(False)
