"""The signal windows remember when their oldest entry expires instead of looking at it on
every call. These properties compare them with the straightforward form (look at the front
every time), on random sequences where the clock also runs back and the caps are small."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.security.signals import _Distinct, _Windows


class RefWindows:
    def __init__(self, window: float, cap: int, width: int) -> None:
        self.window, self.cap, self.width = window, cap, width
        self.entries: OrderedDict[Hashable, list[float]] = OrderedDict()

    def touch(self, key: Hashable, now: float) -> list[float]:
        entries = self.entries
        while entries:
            if now - next(iter(entries.values()))[1] < self.window:
                break
            entries.popitem(last=False)
        entry = entries.get(key)
        if entry is None or now - entry[0] >= self.window:
            if entry is None and len(entries) >= self.cap:
                entries.popitem(last=False)
            entry = entries[key] = [now, now] + [0.0] * self.width
        entry[1] = max(entry[1], now)
        entries.move_to_end(key)
        return entry


class RefDistinct:
    def __init__(self, window: float, cap: int) -> None:
        self.window, self.cap = window, cap
        self.seen: OrderedDict[int, tuple[str, float]] = OrderedDict()
        self.counts: dict[str, int] = {}

    def drop(self) -> None:
        _, (client, _) = self.seen.popitem(last=False)
        self.counts[client] -= 1
        if not self.counts[client]:
            del self.counts[client]

    def add(self, client: str, item: str, now: float) -> tuple[int, bool]:
        seen = self.seen
        while seen and now - next(iter(seen.values()))[1] >= self.window:
            self.drop()
        h = hash((client, item))
        entry = seen.get(h)
        if entry is not None:
            seen[h] = (entry[0], max(entry[1], now))
            seen.move_to_end(h)
            return self.counts.get(client, 0), False
        if len(seen) >= self.cap:
            self.drop()
        seen[h] = (client, now)
        count = self.counts[client] = self.counts.get(client, 0) + 1
        return count, True


# (client, item, time step); most steps forward, some back, some far forward
steps = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 6),
        st.one_of(st.floats(0, 3), st.floats(-5, 0), st.sampled_from([0.0, 10.0, 10.5, 25.0])),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 8), st.sampled_from([1.0, 10.0, 0.1]))
def test_distinct_matches_the_reference(
    seq: list[tuple[int, int, float]], cap: int, window: float
) -> None:
    ours, ref = _Distinct(window, cap), RefDistinct(window, cap)
    now = 1_700_000_000.0
    for client, item, step in seq:
        now += step
        assert ours.add(f"c{client}", f"p{item}", now) == ref.add(f"c{client}", f"p{item}", now)
        assert len(ours) == len(ref.seen)
        assert ours._counts == ref.counts


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 8), st.sampled_from([1.0, 10.0, 0.1]))
def test_windows_match_the_reference(
    seq: list[tuple[int, int, float]], cap: int, window: float
) -> None:
    ours, ref = _Windows(window, cap, 1), RefWindows(window, cap, 1)
    now = 1_700_000_000.0
    for client, _, step in seq:
        now += step
        a, b = ours.touch(client, now), ref.touch(client, now)
        a[2] += 1
        b[2] += 1
        assert a == b
        assert list(ours._entries.items()) == list(ref.entries.items())
