"""Live stats: a ring of per-second samples of every worker's counters, merged on read.

Requests cost nothing here: they bump the cumulative counters of their worker's row
(:class:`~pkgedge.stats.counters.Counters`) as before. Once a second, just after the second
ends, each worker copies its row into slot ``second % SLOTS`` of its part of the ring (one
``memoryview`` slice assignment) and stamps it with the second. A reader (any worker, for
``/stats/live``) takes, per row, the differences between consecutive samples: the counts of
each second. The current, unfinished second is the live row minus the last sample, so the
sum of a window is exact (what the counters say) even if a worker's tick ran late; a tick
that skipped a second puts two seconds' counts on the next one.

The map is created by the parent before it forks (with the counters), so every worker sees
every other worker's samples. It also holds ``written``: the totals the rollup writer has
already stored (see :mod:`pkgedge.stats.rollup`), so a replaced worker continues where the
old one stopped instead of writing the same counts twice.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Sequence

#: Seconds kept (10 minutes).
SLOTS = 600
_HEADER = 4  # started (unix s), spare


class Ring:
    """``rows`` x :data:`SLOTS` samples of ``width`` int64 columns, each with its second."""

    def __init__(self, rows: int, width: int) -> None:
        self.rows, self.width = rows, width
        self._stride = width + 1
        self._written_at = _HEADER
        self._rows_at = _HEADER + width
        size = self._rows_at + rows * SLOTS * self._stride
        self._map = mmap.mmap(-1, 8 * size)
        self._q = memoryview(self._map).cast("q")
        self._q[0] = int(time.time())

    @property
    def started(self) -> int:
        """When the edge (the parent) created the ring, in unix seconds."""
        return int(self._q[0])

    def put(self, row: int, second: int, values: memoryview) -> None:
        off = self._rows_at + (row * SLOTS + second % SLOTS) * self._stride
        q = self._q
        q[off] = 0  # a reader sees no half-written sample as valid
        q[off + 1 : off + self._stride] = values
        q[off] = second

    def get(self, row: int, second: int) -> list[int] | None:
        """The sample of ``row`` taken at the end of ``second``, or None."""
        off = self._rows_at + (row * SLOTS + second % SLOTS) * self._stride
        q = self._q
        if q[off] != second:
            return None
        values = q[off + 1 : off + self._stride].tolist()
        return values if q[off] == second else None

    # -- the rollup writer's baseline ----------------------------------------------------
    def written(self) -> list[int]:
        return self._q[self._written_at : self._written_at + self.width].tolist()

    def set_written(self, values: Sequence[int]) -> None:
        for i, v in enumerate(values):
            self._q[self._written_at + i] = v


def window(
    ring: Ring, live_rows: Sequence[Sequence[int]], now: float, seconds: int = SLOTS
) -> list[list[int]]:
    """Counts per second, summed over the rows: ``seconds`` lists of ``width`` ints, oldest
    first, the last being the current second so far.

    ``live_rows`` are the rows' cumulative values now. A row whose earliest sample in the
    window has no earlier one to subtract counts from zero when the edge started inside the
    window, else that sample only serves as the baseline.
    """
    seconds = max(1, min(seconds, SLOTS))
    now_s = int(now)
    first = now_s - seconds + 1  # the oldest second reported
    width = ring.width
    out = [[0] * width for _ in range(seconds)]
    from_zero = ring.started >= first - 1
    for row, live in enumerate(live_rows):
        prev: list[int] | None = [0] * width if from_zero else ring.get(row, first - 1)
        for s in range(first, now_s):
            cur = ring.get(row, s)
            if cur is None:
                continue
            if prev is not None:
                acc = out[s - first]
                for i in range(width):
                    acc[i] += cur[i] - prev[i]
            prev = cur
        if prev is None:  # no sample for 10 minutes: this row's counts cannot be placed
            continue
        acc = out[-1]
        for i in range(width):
            acc[i] += live[i] - prev[i]
    return out


def quantile(buckets: Sequence[int], bounds: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram of per-bucket counts, interpolated linearly
    inside its bucket (as Prometheus' histogram_quantile); the +Inf bucket answers the last
    finite bound. None when the histogram is empty."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    running = 0
    lower = 0.0
    for n, upper in zip(buckets, bounds, strict=True):
        if n and running + n >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - running) / n
        running += n
        if upper != float("inf"):
            lower = upper
    return lower
