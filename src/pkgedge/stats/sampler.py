"""Each worker's once-a-second job for the live view: copy its counters' row into the ring
just after every second ends; worker 0 also writes the rollups once a minute."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable

from pkgedge.stats.counters import Counters
from pkgedge.stats.rollup import Rollups, flush


async def run(
    counters: Counters, rollups: Rollups | None, before: Callable[[], None] | None = None
) -> None:
    """Sample until cancelled. ``rollups``: this worker writes them (one worker does);
    ``before``: called before each sample (counts kept locally are added to the row)."""
    minute = int(time.time()) // 60
    while True:
        now = time.time()
        await asyncio.sleep(1.0 - now % 1.0 + 0.002)  # just after the next second begins
        second = int(time.time()) - 1
        if before is not None:
            before()
        counters.sample(second)
        if rollups is not None and (second + 1) // 60 != minute:
            written_for = minute * 60
            minute = (second + 1) // 60
            try:
                await asyncio.to_thread(flush, counters, rollups, written_for)
            except Exception as exc:  # a full disk must not stop the sampling
                print(f"pkgedge: stats rollup not written: {exc}", file=sys.stderr)
