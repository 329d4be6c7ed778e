"""Hit ratio of S3-FIFO against LRU on synthetic package-index traces.

Run with ``.venv/bin/python bench/eviction_trace.py`` (``--quick`` for a smaller run).

The catalogue holds N objects (default 100k): most are index pages (log-normal sizes around
10 KB), the rest distribution files (log-normal around 300 KB, capped at 64 MB). Popularity
is Zipf(alpha) over a random permutation of the catalogue, independent of size. Two traces
are generated from a seed:

* ``zipf``: independent Zipf requests;
* ``zipf+scan``: the same requests with a mirror crawl spliced in periodically: each crawl
  fetches the next slice of the catalogue, in name order, exactly once.

Every trace is replayed against each policy with a cache of 1%, 5% and 10% of the trace's
working set (the bytes of the distinct objects it requests); a miss stores the object. With
``--repeat`` > 1 each cell (and each S3/LRU ratio, taken per seed) is the median over that
many seeds. One seed takes ~25 s on a 2-core machine, ``--quick`` ~3 s.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pkgedge.cache.eviction import LRU, S3FIFO

CACHE_FRACTIONS = (0.01, 0.05, 0.10)
PAGE_SHARE = 0.85  # index pages; the rest are wheels / sdists
PAGE_MEDIAN, PAGE_SIGMA = 10_000, 0.8
FILE_MEDIAN, FILE_SIGMA, FILE_MAX = 300_000, 1.3, 64 << 20


class Cache(Protocol):
    def get(self, key: int) -> int | None: ...
    def put(self, key: int, value: int, size: int) -> bool: ...


@dataclass(frozen=True)
class Trace:
    name: str
    keys: list[int]
    working_set: int  # bytes of the distinct objects requested


@dataclass(frozen=True)
class Result:
    object_hit: float
    byte_hit: float


def make_sizes(rng: random.Random, n: int) -> list[int]:
    sizes = []
    for _ in range(n):
        if rng.random() < PAGE_SHARE:
            size = rng.lognormvariate(math.log(PAGE_MEDIAN), PAGE_SIGMA)
        else:
            size = min(rng.lognormvariate(math.log(FILE_MEDIAN), FILE_SIGMA), FILE_MAX)
        sizes.append(max(200, int(size)))
    return sizes


def zipf_requests(rng: random.Random, n_objects: int, n_requests: int, alpha: float) -> list[int]:
    by_rank = list(range(n_objects))
    rng.shuffle(by_rank)  # popularity is unrelated to object id (and so to size and name)
    cum_weights = list(itertools.accumulate(1.0 / (r**alpha) for r in range(1, n_objects + 1)))
    return rng.choices(by_rank, cum_weights=cum_weights, k=n_requests)


def with_scans(
    rng: random.Random, base: Sequence[int], n_objects: int, every: int, length: int
) -> list[int]:
    crawl_order = list(range(n_objects))
    rng.shuffle(crawl_order)  # "name order", unrelated to popularity
    out: list[int] = []
    pos = 0
    for start in range(0, len(base), every):
        out.extend(base[start : start + every])
        for _ in range(length):
            out.append(crawl_order[pos])
            pos = (pos + 1) % n_objects
    return out


def make_traces(
    seed: int, n_objects: int, n_requests: int, alpha: float
) -> tuple[list[int], list[Trace]]:
    rng = random.Random(seed)
    sizes = make_sizes(rng, n_objects)
    base = zipf_requests(rng, n_objects, n_requests, alpha)
    # ~20% of the requests come from the crawler, 10 crawls over the trace.
    every = max(1, n_requests // 10)
    scanned = with_scans(rng, base, n_objects, every, every // 4)
    traces = []
    for name, keys in (("zipf", base), ("zipf+scan", scanned)):
        working_set = sum(sizes[k] for k in set(keys))
        traces.append(Trace(name, keys, working_set))
    return sizes, traces


def replay(cache: Cache, keys: Sequence[int], sizes: Sequence[int]) -> Result:
    get, put = cache.get, cache.put
    hits = hit_bytes = total_bytes = 0
    for key in keys:
        size = sizes[key]
        total_bytes += size
        if get(key) is None:
            put(key, key, size)
        else:
            hits += 1
            hit_bytes += size
    return Result(hits / len(keys), hit_bytes / total_bytes)


POLICIES: dict[str, Callable[[int], Cache]] = {"S3FIFO": S3FIFO, "LRU": LRU}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20k objects, 200k requests")
    parser.add_argument("--objects", type=int, help="catalogue size (default 100000)")
    parser.add_argument("--requests", type=int, help="Zipf requests per trace (default 1000000)")
    parser.add_argument("--alpha", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    parser.add_argument("--repeat", type=int, default=1, help="seeds per cell, median printed")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    args = parser.parse_args(argv)
    n_objects = args.objects or (20_000 if args.quick else 100_000)
    n_requests = args.requests or (200_000 if args.quick else 1_000_000)

    started = time.perf_counter()
    # (trace, fraction, policy) -> results over seeds
    cells: dict[tuple[str, float, str], list[Result]] = {}
    working_sets: dict[str, list[int]] = {}
    lengths: dict[str, int] = {}
    for seed in range(args.seed, args.seed + args.repeat):
        sizes, traces = make_traces(seed, n_objects, n_requests, args.alpha)
        for trace in traces:
            working_sets.setdefault(trace.name, []).append(trace.working_set)
            lengths[trace.name] = len(trace.keys)
            for fraction in CACHE_FRACTIONS:
                capacity = int(trace.working_set * fraction)
                for policy, factory in POLICIES.items():
                    result = replay(factory(capacity), trace.keys, sizes)
                    cells.setdefault((trace.name, fraction, policy), []).append(result)
    elapsed = time.perf_counter() - started

    print(
        f"{n_objects} objects, Zipf alpha={args.alpha}, {n_requests} Zipf requests/trace, "
        f"seeds {args.seed}..{args.seed + args.repeat - 1}"
        + (" (medians)" if args.repeat > 1 else "")
    )
    for name, ws in working_sets.items():
        gigabytes = statistics.median(ws) / 1e9
        print(f"  {name:<10} {lengths[name]} requests, working set {gigabytes:.2f} GB")
    header = (
        f"{'trace':<10} {'cache':>5} | {'object hit S3FIFO':>17} {'LRU':>6} {'S3/LRU':>6}"
        f" | {'byte hit S3FIFO':>15} {'LRU':>6} {'S3/LRU':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in working_sets:
        for fraction in CACHE_FRACTIONS:
            s3 = cells[(name, fraction, "S3FIFO")]
            lru = cells[(name, fraction, "LRU")]
            s3_obj = statistics.median(r.object_hit for r in s3)
            lru_obj = statistics.median(r.object_hit for r in lru)
            obj_gain = statistics.median(
                a.object_hit / b.object_hit for a, b in zip(s3, lru, strict=True)
            )
            s3_byte = statistics.median(r.byte_hit for r in s3)
            lru_byte = statistics.median(r.byte_hit for r in lru)
            byte_gain = statistics.median(
                a.byte_hit / b.byte_hit for a, b in zip(s3, lru, strict=True)
            )
            print(
                f"{name:<10} {fraction:>5.0%} | {s3_obj:>17.4f} {lru_obj:>6.4f} {obj_gain:>6.3f}"
                f" | {s3_byte:>15.4f} {lru_byte:>6.4f} {byte_gain:>6.3f}"
            )
    print(f"elapsed {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
