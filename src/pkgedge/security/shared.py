"""Buckets and penalties that several nodes share (pure: the I/O is :mod:`pkgedge.cluster`).

:class:`SharedStore` is the in-process :class:`~pkgedge.security.ratelimit.MemoryStore`
that also remembers what this process spent per bucket and which penalties it gave since
the last sync. The hit path stays local (one dict update more per take); a sync every
fraction of a second sends the spending to the shared buckets in one script call and
:meth:`SharedStore.settle` sets each local bucket to the shared level, so a client limited on
one node is limited on the others from the next sync on. When the shared store is down
nothing is settled and the local buckets go on alone.
"""

from __future__ import annotations

from pkgedge.security.ratelimit import BucketSpec, MemoryStore, Penalty

_take = MemoryStore.take


class SharedStore(MemoryStore):
    """A :class:`MemoryStore` that keeps account of what must be told to the other nodes."""

    def __init__(self, max_keys: int = 100_000) -> None:
        super().__init__(max_keys)
        self._spent: dict[str, float] = {}
        self._specs: dict[str, BucketSpec] = {}
        #: penalties given here since the last :meth:`drain_penalties`
        self.given: dict[str, Penalty] = {}
        self._quiet = False

    def take(self, key: str, cost: float, now: float, spec: BucketSpec) -> tuple[bool, float]:
        allowed, tokens = _take(self, key, cost, now, spec)
        if allowed:  # (runs on every hit: one dict get and set)
            spent = self._spent
            if key in spent:
                spent[key] += cost
            else:
                spent[key] = cost
                self._specs[key] = spec
        return allowed, tokens

    @property
    def spent(self) -> dict[str, tuple[float, BucketSpec]]:
        """Bucket key → (tokens spent here since the last :meth:`drain`, its spec)."""
        return {k: (c, self._specs[k]) for k, c in self._spent.items()}

    def drain(self) -> dict[str, tuple[float, BucketSpec]]:
        """The spending to send (and a fresh account for what follows)."""
        out = self.spent
        self._spent, self._specs = {}, {}
        return out

    def settle(self, key: str, shared: float, when: float, now: float, spec: BucketSpec) -> None:
        """The shared bucket held ``shared`` tokens at ``when`` (this node's spending up to then
        included): the local bucket becomes that, refilled to ``now``, minus what was spent
        here since."""
        tokens = min(spec.burst, shared + max(0.0, now - when) * spec.rate)
        tokens -= self._spent.get(key, 0.0)
        self._buckets[key] = (tokens, now, now + (spec.burst - tokens) / spec.rate)

    def put_penalty(self, key: str, penalty: Penalty, now: float) -> Penalty:
        kept = super().put_penalty(key, penalty, now)
        if kept is penalty and not self._quiet:
            self.given[key] = penalty
        return kept

    def drain_penalties(self) -> dict[str, Penalty]:
        given, self.given = self.given, {}
        return given

    def quietly(self, on: bool) -> None:
        """While on, penalties put here came from another node (not to be sent back)."""
        self._quiet = on
