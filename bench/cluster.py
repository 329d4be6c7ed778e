"""Many nodes: hit ratio and origin fetches for a Zipf trace over 1 edge, 3 edges and 3 edges
behind a shield; purge latency across the nodes of a cluster sharing Redis.

Run with ``.venv/bin/python bench/cluster.py`` (``--objects``, ``--requests``, ``--alpha``,
``--purges`` to change the sizes). It needs ``redis-server`` (Debian package
``redis-server``). The origin is the tests' upstream index (``tests/support/upstream.py``),
whose generated ``/big/N`` bodies are the catalogue (object i is ``/big/(1000 + i)``) and
which counts the requests that reach it; the nodes are real ``pkgedge edge`` processes, each
on its own 127.0.0.x address, one worker each.

* ``1 edge``: the trace against one edge in front of the origin.
* ``3 edges``: the trace spread round-robin over three independent edges (no shield).
* ``3 edges + shield``: the same three edges sending their misses to a shield.

Hit ratio is the share of requests the edge answered from its own cache (``Cache-Status``
``hit``); origin fetches are the requests the origin saw. Purge latency is the time a
``POST /purge`` on one edge takes to return, which is when every live node (the shield, then
the three edges) has applied it; the page is fetched on every node before each purge.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from support.edge import EdgeProcess  # noqa: E402
from support.redis import RedisServer  # noqa: E402
from support.upstream import UpstreamIndex, populate_default  # noqa: E402


def zipf_trace(objects: int, requests: int, alpha: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, objects + 1)]
    order = list(range(objects))
    rng.shuffle(order)  # popularity independent of the object's number
    return [order[i] for i in rng.choices(range(objects), weights=weights, k=requests)]


def _edge(tmp: Path, name: str, host: str, upstream: str, extra: Sequence[str] = ()) -> EdgeProcess:
    return EdgeProcess(
        upstream,
        tmp / name,
        listen=f"{host}:0",
        admin=f"{host}:0",
        extra_args=["--node-name", name, "--protection", "off", *extra],
    )


@contextmanager
def topology(
    tmp: Path, origin: UpstreamIndex, kind: str, redis: str | None = None
) -> Iterator[list[EdgeProcess]]:
    """Start the nodes of ``kind`` ("1", "3", "3+shield"); yield the client-facing edges."""
    with ExitStack() as stack:
        shared = ["--redis", redis] if redis else []
        upstream = origin.index_url
        extra: list[str] = [*shared]
        if kind == "3+shield":
            shield = _edge(
                tmp, "shield", "127.0.0.5", upstream, [*shared, "--trusted-edges", "127.0.0.0/8"]
            )
            stack.enter_context(shield)
            upstream = shield.url + "/simple/"
            extra += ["--shield", shield.url + "/"]
        count = 1 if kind == "1" else 3
        edges = [
            stack.enter_context(_edge(tmp, f"edge{i}", f"127.0.0.{i + 2}", upstream, extra))
            for i in range(count)
        ]
        yield edges


def run_trace(
    edges: list[EdgeProcess], origin: UpstreamIndex, trace: list[int]
) -> tuple[float, int]:
    origin.reset_log()
    clients = [httpx.Client(base_url=e.url, timeout=30) for e in edges]
    hits = 0
    try:
        for n, obj in enumerate(trace):
            r = clients[n % len(clients)].get(f"/big/{1000 + obj}")
            r.raise_for_status()
            own = r.headers.get("cache-status", "").split(",")[-1].strip()
            hits += own.startswith("pkgedge; hit")  # the edge's own member (the last one)
    finally:
        for c in clients:
            c.close()
    return hits / len(trace), origin.count("/big/")


def purge_latency(edges: list[EdgeProcess], purges: int, nodes: int) -> list[float]:
    """Seconds each purge call took (it returns when every node has applied it)."""
    out = []
    for _ in range(purges):
        for e in edges:
            e.get("/simple/alpha/").raise_for_status()
        started = time.perf_counter()
        result = edges[0].purge(urls=["/simple/alpha/"])
        out.append(time.perf_counter() - started)
        if nodes > 1 and (result["missing"] or len(result["nodes"]) != nodes):
            raise RuntimeError(f"purge not acknowledged by every node: {result}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=300)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--purges", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--purge-only", action="store_true", help="skip the Zipf trace")
    args = ap.parse_args()
    trace = zipf_trace(args.objects, args.requests, args.alpha, args.seed)
    distinct = len(set(trace))
    print(
        f"Zipf trace: {args.requests} requests over {args.objects} objects (alpha {args.alpha},"
        f" {distinct} distinct); one worker per node"
    )
    print(f"{'topology':<18} {'edge hit ratio':>15} {'origin fetches':>15}")
    with tempfile.TemporaryDirectory(prefix="pkgedge-bench-cluster-") as raw:
        tmp = Path(raw)
        origin = populate_default(UpstreamIndex(tmp / "origin")).start()
        alone: list[float] = []
        try:
            for kind, label in (
                ("1", "1 edge"),
                ("3", "3 edges"),
                ("3+shield", "3 edges + shield"),
            ):
                if args.purge_only and kind != "1":
                    continue
                with topology(tmp / kind, origin, kind) as edges:
                    if not args.purge_only:
                        ratio, fetches = run_trace(edges, origin, trace)
                    if kind == "1":  # the reference: a purge on one node, no Redis
                        alone = purge_latency(edges, args.purges, nodes=1)
                if not args.purge_only:
                    print(f"{label:<18} {ratio:>15.3f} {fetches:>15d}")
            redis = RedisServer(tmp / "redis-data")
            (tmp / "redis-data").mkdir()
            redis.start()
            try:
                with topology(tmp / "purge", origin, "3+shield", redis.url) as edges:
                    lat = purge_latency(edges, args.purges, nodes=4)
            finally:
                redis.stop()
        finally:
            origin.stop()
    for label, values in (
        ("one node, no Redis (reference)", alone),
        ("through Redis, acknowledged by 4 nodes (shield first)", lat),
    ):
        values.sort()
        p50 = statistics.median(values) * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        print(
            f"purge {label}: {len(values)} purges, p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
            f" max {values[-1] * 1000:.1f} ms"
        )
    ratio = statistics.median(lat) / statistics.median(alone)
    print(f"ratio of the p50s (cluster / one node): {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
