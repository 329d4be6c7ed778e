"""How cache-hit throughput scales from 1 to 2 workers: pkgedge against nginx ``proxy_cache``.

Run with ``.venv/bin/python bench/workers_scaling.py`` (``--quick`` for a short smoke run).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* an origin nginx serving ``--pages`` (default 200) distinct 10 KB simple pages,
  ``/simple/p000/`` ... with ``Cache-Control: max-age=3600, public``;
* ``pkgedge edge --workers 1`` and ``pkgedge edge --workers 2`` in front of it (512 MB memory
  tier in all, so 256 MB per worker with 2; protection on with limits no benchmark reaches,
  access log off);
* nginx ``proxy_cache`` with ``worker_processes 1`` and ``worker_processes 2`` (``listen ...
  reuseport``, so that the kernel spreads wrk's connections over both workers): the reference
  for how far 2 workers can scale on this machine with wrk sharing its cores.

Every server is warmed through its own port: each page is requested until the cache answers a
hit, then short wrk runs over all pages (not measured) let every worker touch every page
(with 2 pkgedge workers, each worker fills its own share of the memory tier from the shared
disk tier; the edges are loaded until the number of objects in their memory tier stops
growing). Then ``wrk -t1`` (50 connections; a Lua ``request()`` walks the pages round-robin,
the same script for every server) loads nginx 1w, nginx 2w, pkgedge 1w, pkgedge 2w in turn,
``--repeat`` rounds. The table shows median req/s, the scaling ratio 2w/1w of each server and
pkgedge's scaling relative to nginx's. pkgedge's ``/stats`` (admin port, bearer token) is read
around every run: hits vs misses and origin fetches; a run that was not all hits is flagged.

With 2 cores, wrk (1 thread) and the workers compete for CPU: 2 workers cannot reach 2x; the
nginx ratio, measured alternately under the same conditions, shows what is reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _common as c
from _common import KB, Case, Run

PAGE_SIZE = 10 * KB
CONNECTIONS = 50
UNLIMITED = "1000000000/1000000000"

#: walks the pages round-robin; the done() reporter is appended
LUA_REQUEST = """\
local paths = {{{paths}}}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
"""


def page_path(i: int) -> str:
    return f"/simple/p{i:03d}/"


def make_origin(root: Path, pages: int) -> None:
    for i in range(pages):
        d = root / "simple" / f"p{i:03d}"
        d.mkdir(parents=True)
        (d / "index.html").write_text(c.simple_page(f"p{i:03d}", [], PAGE_SIZE, "/files/"))


def warm_pages(name: str, port: int, paths: list[str], is_hit: Any) -> list[str]:
    notes = []
    for path in paths:
        for attempt in range(1, 6):
            status, hdrs, _ = c.fetch(port, path)
            if status == 200 and int(hdrs["x-body-length"]) != PAGE_SIZE:
                notes.append(f"{name} {path}: {hdrs['x-body-length']} B")
            if status == 200 and is_hit(hdrs):
                break
            time.sleep(0.05 * attempt)
        else:
            raise RuntimeError(f"{name} never answered a hit for {path}: {status} {hdrs}")
    return notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 round")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 3)")
    p.add_argument("--repeat", type=int, help="rounds (default 3, quick 1)")
    p.add_argument("--pages", type=int, default=200, help="distinct 10 KB pages (default 200)")
    p.add_argument("--json", type=Path, help="save the results as JSON")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 5.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.duration <= 0 or args.repeat < 1 or not 1 <= args.pages <= 1000:
        p.error("--duration and --repeat must be positive, --pages 1..1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not c.require(("nginx", "wrk")):
        return 2
    return c.run_main("pkgedge-scaling-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: c.Processes, tmp: Path) -> int:
    cores = os.cpu_count() or 1
    servers = ("nginx-1w", "nginx-2w", "pkgedge-1w", "pkgedge-2w")
    total = len(servers) * args.repeat * args.duration
    print(
        f"worker scaling on 10 KB page hits over {args.pages} pages: pkgedge and nginx "
        f"proxy_cache with 1 and 2 workers, wrk -t1 -c{CONNECTIONS}, {args.duration:g} s x "
        f"{args.repeat} round(s) (~{total / 60:.1f} min of load)"
    )
    print(f"note: {cores} cores shared by wrk and the workers; compare the ratios")
    print(f"load average before the run: {c.load_average()}")
    print(f"pkgedge source fingerprint: {c.source_fingerprint()}", flush=True)

    origin_root = tmp / "origin"
    make_origin(origin_root, args.pages)
    _, origin_port = c.start_origin_nginx(procs, tmp / "nginx-origin", origin_root)
    nginx = {
        w: c.start_cache_nginx(
            procs, tmp / f"nginx-{w}w", origin_port, w, f"cache {w}w", reuseport=True
        )
        for w in (1, 2)
    }
    protect = ("--rate-limit", UNLIMITED, "--throttled-rate-limit", UNLIMITED)
    edges = {
        w: c.start_edge(procs, tmp / f"edge-{w}w", origin_port, w, protect, f"pkgedge {w}w")
        for w in (1, 2)
    }
    ports = {f"nginx-{w}w": nginx[w][1] for w in (1, 2)}
    ports.update({f"pkgedge-{w}w": edges[w].port for w in (1, 2)})
    print(
        f"origin nginx :{origin_port}; " + ", ".join(f"{k} :{p}" for k, p in ports.items()),
        flush=True,
    )

    paths = [page_path(i) for i in range(args.pages)]
    lua = tmp / "pages.lua"
    lua.write_text(LUA_REQUEST.format(paths=", ".join(json.dumps(p) for p in paths)) + c.WRK_LUA)
    case = Case("10 KB page hits", paths[0], PAGE_SIZE, CONNECTIONS, "rps", 0.0)

    notes: list[str] = []
    for w in (1, 2):
        notes += warm_pages(f"nginx-{w}w", nginx[w][1], paths, c.is_nginx_hit)
        notes += warm_pages(f"pkgedge-{w}w", edges[w].port, paths, c.is_edge_hit)
    # every worker touches every page: nginx once; each edge until its memory tier stops
    # growing (with a memory tier per worker, each worker keeps its own copy of a page)
    for w in (1, 2):
        c.run_wrk(procs, lua, nginx[w][1], paths[0], CONNECTIONS, 1.0)
    for w, edge in edges.items():
        objects = -1
        for _ in range(6):
            c.run_wrk(procs, lua, edge.port, paths[0], CONNECTIONS, 1.0)
            now = c.edge_stats(edge).get("memory_objects", 0)
            if now == objects:
                break
            objects = now
        else:
            notes.append(f"pkgedge-{w}w: memory tier still growing after the warm-up")
    warmed = {w: c.edge_stats(e) for w, e in edges.items()}
    print(
        "warmed: "
        + "; ".join(
            f"pkgedge-{w}w hits={s.get('hits', 0)} misses={s.get('misses', 0)} "
            f"origin_fetches={s.get('origin_fetches', 0)} memory_objects="
            f"{s.get('memory_objects', 0)}"
            for w, s in warmed.items()
        ),
        flush=True,
    )
    for w, s in warmed.items():
        if s.get("origin_fetches", 0) != args.pages:
            notes.append(f"pkgedge-{w}w: {s.get('origin_fetches')} origin fetches in warm-up")
    for note in notes:
        print(f"  ! {note}")

    def workers_of(server: str) -> list[int]:
        kind, w = server.split("-")
        if kind == "nginx":
            return c.nginx_workers(nginx[int(w[0])][0])
        return edges[int(w[0])].workers()

    runs: list[Run] = []
    for rep in range(1, args.repeat + 1):
        for server in servers:
            edge = edges[int(server[-2])] if server.startswith("pkgedge") else None
            pids = workers_of(server)
            run = c.measure(procs, lua, server, ports[server], case, rep, args.duration, pids, edge)
            if workers_of(server) != pids:
                run.notes.append(f"workers changed: {pids} -> {workers_of(server)}")
            if len(run.cpu_split) > 1 and min(run.cpu_split) < 0.25 * max(run.cpu_split):
                run.notes.append("uneven: one worker did much less work than the other")
            runs.append(run)
            hits = (
                f"  hits {run.stats['hits']}/{run.stats['requests']} misses {run.stats['misses']}"
                if edge
                else ""
            )
            print(
                f"  {server:10} #{rep}: {run.rps:9.1f} req/s  p50 {run.p50_ms:6.2f} ms  p99 "
                f"{run.p99_ms:6.2f} ms  {c.worker_cpu_line(run)}{hits}",
                flush=True,
            )
            for note in run.notes:
                print(f"      ! {note}", flush=True)
            time.sleep(0.5)

    rps = {s: c.median(r.rps for r in runs if r.server == s) for s in servers}
    us = {
        s: c.median(r.cpu_s / r.requests * 1e6 for r in runs if r.server == s and r.requests)
        for s in servers
    }

    def round_ratio(kind: str) -> float:
        by = {(r.server, r.repeat): r.rps for r in runs}
        return c.median(
            by[f"{kind}-2w", k] / by[f"{kind}-1w", k]
            for k in range(1, args.repeat + 1)
            if by.get((f"{kind}-1w", k))
        )

    scale = {
        k: rps[f"{k}-2w"] / rps[f"{k}-1w"] if rps[f"{k}-1w"] else 0.0 for k in ("nginx", "pkgedge")
    }
    rounds = {k: round_ratio(k) for k in ("nginx", "pkgedge")}
    print(
        f"\nmedians of {args.repeat} round(s) of {args.duration:g} s; wrk -t1 -c{CONNECTIONS} "
        f"over {args.pages} pages on the same {cores}-core machine"
    )
    head = (
        f"{'server':8} {'1 worker':>12} {'2 workers':>12} {'2w/1w':>7} {'rounds':>7}  "
        f"{'us/req 1w':>9} {'us/req 2w':>9}"
    )
    print(head)
    print("-" * len(head))
    for kind in ("nginx", "pkgedge"):
        print(
            f"{kind:8} {rps[kind + '-1w']:8.1f} r/s {rps[kind + '-2w']:8.1f} r/s "
            f"{scale[kind]:7.2f} {rounds[kind]:7.2f}  {us[kind + '-1w']:9.1f} "
            f"{us[kind + '-2w']:9.1f}"
        )
    rel = scale["pkgedge"] / scale["nginx"] if scale["nginx"] else 0.0
    print(
        f"pkgedge scaling / nginx scaling: {rel:.2f} (2w/1w: ratio of the medians; rounds: "
        "median of the ratios within each round; us/req: the workers' CPU per request)"
    )

    print("\npkgedge /stats during the measured runs (sum over rounds):")
    flagged = 0
    for w in (1, 2):
        rs = [r for r in runs if r.server == f"pkgedge-{w}w"]
        tot = {k: sum(r.stats.get(k, 0) for r in rs) for k in c.RUN_STATS}
        bad = [r for r in rs if any(n.startswith("not all hits") for n in r.notes)]
        flagged += len(bad)
        print(
            f"  pkgedge-{w}w: requests={tot['requests']} hits={tot['hits']} "
            f"misses={tot['misses']} origin_fetches={tot['origin_fetches']} "
            f"stale={tot['stale']} passes={tot['passes']}"
            + (f"  ! {len(bad)} run(s) NOT ALL HITS" if bad else "  (all hits)")
        )
    for w, e in edges.items():
        final = c.edge_stats(e)
        print(
            f"  pkgedge-{w}w at the end: memory_objects={final.get('memory_objects', 0)} "
            f"memory_bytes={c.fmt_bytes(final.get('memory_bytes', 0))} (mapped, summed over "
            "workers)"
        )
        for pid in e.workers():
            m = c.smaps(pid)
            print(
                f"    worker {pid}: Rss {c.fmt_bytes(m.get('Rss', 0))}, Pss "
                f"{c.fmt_bytes(m.get('Pss', 0))}, Shared_Clean "
                f"{c.fmt_bytes(m.get('Shared_Clean', 0))} (body pages mapped by both workers "
                "are shared: counted once in the sum of Pss)"
            )
        err = e.stderr.read_text(errors="replace").strip()
        if err:
            print(f"  pkgedge-{w}w stderr (last 10 lines):")
            for line in err.splitlines()[-10:]:
                print(f"    {line}")
    if flagged:
        print(f"! {flagged} pkgedge run(s) were not all hits: their req/s are not hit figures")

    if args.json:
        result = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cores": cores,
            "source_fingerprint": c.source_fingerprint(),
            "runs": [asdict(r) for r in runs],
            "rps": rps,
            "us_per_req": us,
            "scaling": scale,
            "scaling_rounds": rounds,
            "warmup_notes": notes,
        }
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nresults saved to {args.json}")
    return 1 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
