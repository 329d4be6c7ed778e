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


class SharedStore(MemoryStore):
    """A :class:`MemoryStore` that keeps account of what must be told to the other nodes."""

    def __init__(self, max_keys: int = 100_000) -> None:
        super().__init__(max_keys)
        #: bucket key → (tokens spent since the last :meth:`drain`, its spec)
        self.spent: dict[str, tuple[float, BucketSpec]] = {}
        #: penalties given here since the last :meth:`drain_penalties`
        self.given: dict[str, Penalty] = {}
        self._quiet = False

    def take(self, key: str, cost: float, now: float, spec: BucketSpec) -> tuple[bool, float]:
        allowed, tokens = super().take(key, cost, now, spec)
        if allowed:
            was = self.spent.get(key)
            self.spent[key] = ((was[0] if was is not None else 0.0) + cost, spec)
        return allowed, tokens

    def drain(self) -> dict[str, tuple[float, BucketSpec]]:
        """The spending to send (and a fresh account for what follows)."""
        spent, self.spent = self.spent, {}
        return spent

    def settle(self, key: str, shared: float, when: float, now: float, spec: BucketSpec) -> None:
        """The shared bucket held ``shared`` tokens at ``when`` (this node's spending up to then
        included): the local bucket becomes that, refilled to ``now``, minus what was spent
        here since."""
        tokens = min(spec.burst, shared + max(0.0, now - when) * spec.rate)
        since = self.spent.get(key)
        if since is not None:
            tokens -= since[0]
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
