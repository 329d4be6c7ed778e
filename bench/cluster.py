"""Many nodes: hit ratio and origin fetches for a Zipf trace over 1 edge, 3 edges and 3 edges
behind a shield; purge latency across the nodes of a cluster sharing Redis.

Run with ``.venv/bin/python bench/cluster.py`` (``--objects``, ``--requests``, ``--alpha``,
``--purges`` to change the sizes; ``--purge-only`` skips the Zipf trace). It needs
``redis-server`` (Debian package ``redis-server``). The origin is the tests' upstream index
(``tests/support/upstream.py``), whose generated ``/big/N`` bodies are the catalogue (object
i is ``/big/(1000 + i)``) and which counts the requests that reach it; the nodes are real
``pkgedge edge`` processes, each on its own 127.0.0.x address, one worker each.

* ``1 edge``: the trace against one edge in front of the origin.
* ``3 edges``: the trace spread round-robin over three independent edges (no shield).
* ``3 edges + shield``: the same three edges sending their misses to a shield.
* ``3 edges, peers``: three edges sharing objects by rendezvous hashing (``--peers redis``):
  each miss is fetched by the object's owner among them, and both keep a copy.

Hit ratio is the share of requests the edge answered from its own cache (``Cache-Status``
``hit``); origin fetches are the requests the origin saw; offload is the share of requests
that did not reach the origin (answered by some node's cache). Purge latency is the time a
``POST /purge`` on one edge takes to return, which is when every live node (the shield, then
the three edges) has applied it; the page is fetched on every node before each purge (a
first purge, which opens the connections, is not counted: it was the p99 of 100). Right
after each call returns, the purged page is asked of every node at once (``only-if-cached``:
a 504 is a miss, nothing is refilled); the bench counts the looks that still found it and,
for those, how long after the return it stayed visible (0: the call returns after every
node acknowledged). Each purge line ends with the load average (1 min) of the machine, read
when its purges are done: the figures are only comparable at similar loads.

Redis runs with ``--appendonly yes``, as the README runs it, whose ``appendfsync`` is
``everysec``; ``--fsync always`` (what the tests use, so that a killed Redis keeps every
write) puts an fsync of the append-only file in front of every write's reply (the
publication and every acknowledgement), which costs 0.4 ms each on a quiet machine and
several ms on a loaded one.

Measured (one machine, 2 cores shared with other work, ``--purge-only``, medians of 2 runs,
load average 3.5-8): before (the registry asked by the publisher and again by every edge,
the acknowledgements in a hash and a list, the edges polling the hash every 5 ms, a final
``HGETALL``, the cursor written after every entry) p50 18.1 ms, p99 39.4 ms; after (one Lua
call to publish, the acknowledgements in a stream per purge that the publisher and the
edges read with a blocking ``XREAD``, the cursor written when idle) p50 11.1 ms, p99 22.2 ms
(at load 2: p50 19.3 → 8.0 ms). With ``--fsync always``: p50 35.7 → 28.1 ms, p99 67.6 →
54.9 ms (three fsyncs in a row remain: the publication and the two tiers' acknowledgements).
A purge on one node without Redis: p50 1.4-1.9 ms. No look at any node found a purged page
after the call returned.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
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
    tmp: Path,
    origin: UpstreamIndex,
    kind: str,
    redis: str | None = None,
    every: list[EdgeProcess] | None = None,
) -> Iterator[list[EdgeProcess]]:
    """Start the nodes of ``kind`` ("1", "3", "3+shield"); yield the client-facing edges
    (``every`` gets all nodes, the shield first)."""
    every = [] if every is None else every
    with ExitStack() as stack:
        shared = ["--redis", redis] if redis else []
        upstream = origin.index_url
        extra: list[str] = [*shared]
        if kind == "3+shield":
            shield = _edge(
                tmp, "shield", "127.0.0.5", upstream, [*shared, "--trusted-edges", "127.0.0.0/8"]
            )
            every.append(stack.enter_context(shield))
            upstream = shield.url + "/simple/"
            extra += ["--shield", shield.url + "/"]
        if kind == "3+peers":
            if redis is None:
                raise ValueError("peers take their node list from Redis")
            extra += ["--peers", "redis", "--trusted-edges", "127.0.0.0/8"]
        count = 1 if kind == "1" else 3
        edges = [
            stack.enter_context(_edge(tmp, f"edge{i}", f"127.0.0.{i + 2}", upstream, extra))
            for i in range(count)
        ]
        every.extend(edges)
        if kind == "3+peers":
            _wait_for_peers(edges)
        yield edges


def _wait_for_peers(edges: list[EdgeProcess]) -> None:
    """Until every edge's node list (read from Redis once a second) holds all of them."""
    deadline = time.monotonic() + 15
    for e in edges:
        while len(e.admin_request("GET", "/peers").json()["nodes"]) < len(edges):
            if time.monotonic() > deadline:
                raise RuntimeError("the peers did not find each other in Redis")
            time.sleep(0.1)


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


ONLY_CACHED = {"Cache-Control": "only-if-cached"}
PAGE = "/simple/alpha/"


@dataclass
class Purges:
    took: list[float] = field(default_factory=list)  # seconds each call took
    looks: int = 0  # looks at a node right after a call returned
    late: int = 0  # ... that still found the purged page
    worst: float = 0.0  # the longest it stayed visible after a call returned (s)
    load: float = 0.0  # load average (1 min) when the purges were done


def _cached(client: httpx.Client) -> bool:
    status = client.get(PAGE, headers=ONLY_CACHED).status_code
    if status not in (200, 504):
        raise RuntimeError(f"only-if-cached look answered {status}")
    return status == 200


def _visible_for(client: httpx.Client, returned: float) -> float | None:
    """None if a look finds the page gone; else how long after ``returned`` it stayed."""
    if not _cached(client):
        return None
    while _cached(client):
        if time.perf_counter() - returned > 10:
            raise RuntimeError("the purged page still cached 10 s after the call returned")
    return time.perf_counter() - returned


def purge_latency(
    edges: list[EdgeProcess], every: list[EdgeProcess], purges: int, nodes: int
) -> Purges:
    """Purge the page ``purges`` times through ``edges[0]`` (each call returns when every
    node has applied it), then look at ``every`` node at once. A first purge is not counted:
    it opens the connections (and loads the Lua script) and took 35-60 ms on every node."""
    out = Purges()
    edges[0].purge(urls=[PAGE])
    clients = [httpx.Client(base_url=n.url, timeout=30) for n in every]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            for _ in range(purges):
                for e in edges:
                    e.get(PAGE).raise_for_status()
                started = time.perf_counter()
                result = edges[0].purge(urls=[PAGE])
                returned = time.perf_counter()
                out.took.append(returned - started)
                looks = list(pool.map(_visible_for, clients, [returned] * len(clients)))
                out.looks += len(looks)
                late = [v for v in looks if v is not None]
                out.late += len(late)
                out.worst = max([out.worst, *late])
                if nodes > 1 and (result["missing"] or len(result["nodes"]) != nodes):
                    raise RuntimeError(f"purge not acknowledged by every node: {result}")
    finally:
        for c in clients:
            c.close()
    out.load = os.getloadavg()[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--objects", type=int, default=300)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--purges", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--purge-only", action="store_true", help="skip the Zipf trace")
    ap.add_argument(
        "--fsync",
        choices=("everysec", "always"),
        default="everysec",
        help="Redis's appendfsync (default everysec: what --appendonly yes gives)",
    )
    args = ap.parse_args()
    trace = zipf_trace(args.objects, args.requests, args.alpha, args.seed)
    distinct = len(set(trace))
    if not args.purge_only:
        print(
            f"Zipf trace: {args.requests} requests over {args.objects} objects"
            f" (alpha {args.alpha}, {distinct} distinct); one worker per node"
        )
        print(f"{'topology':<18} {'edge hit ratio':>15} {'origin fetches':>15} {'offload':>8}")
    with tempfile.TemporaryDirectory(prefix="pkgedge-bench-cluster-") as raw:
        tmp = Path(raw)
        origin = populate_default(UpstreamIndex(tmp / "origin")).start()
        alone = Purges()
        redis = RedisServer(tmp / "redis-data", appendfsync=args.fsync)
        (tmp / "redis-data").mkdir()
        redis.start()
        try:
            try:
                for kind, label in (
                    ("1", "1 edge"),
                    ("3", "3 edges"),
                    ("3+shield", "3 edges + shield"),
                    ("3+peers", "3 edges, peers"),
                ):
                    if args.purge_only and kind != "1":
                        continue
                    shared = redis.url if kind == "3+peers" else None  # (its node list)
                    every: list[EdgeProcess] = []
                    with topology(tmp / kind, origin, kind, shared, every) as edges:
                        if not args.purge_only:
                            ratio, fetches = run_trace(edges, origin, trace)
                        if kind == "1":  # the reference: a purge on one node, no Redis
                            alone = purge_latency(edges, every, args.purges, nodes=1)
                    if not args.purge_only:
                        offload = 1 - fetches / len(trace)
                        print(f"{label:<18} {ratio:>15.3f} {fetches:>15d} {offload:>8.3f}")
                every = []
                with topology(tmp / "purge", origin, "3+shield", redis.url, every) as edges:
                    cluster = purge_latency(edges, every, args.purges, nodes=4)
            finally:
                redis.stop()
        finally:
            origin.stop()
    through = f"through Redis (appendfsync {args.fsync}), acknowledged by 4 nodes (shield first)"
    for label, run in (("one node, no Redis (reference)", alone), (through, cluster)):
        values = sorted(run.took)
        p50 = statistics.median(values) * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        print(
            f"purge {label}: {len(values)} purges, p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
            f" max {values[-1] * 1000:.1f} ms (load average {run.load:.2f})"
        )
    print(
        f"visible after the call returned: {cluster.late} of {cluster.looks} looks (every node"
        f" at once, right after each call) still found the purged page; worst"
        f" {cluster.worst * 1000:.1f} ms after the return"
    )
    ratio = statistics.median(cluster.took) / statistics.median(alone.took)
    print(f"ratio of the p50s (cluster / one node): {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
