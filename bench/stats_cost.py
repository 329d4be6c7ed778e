"""What live stats and download analytics cost on cache hits: req/s with stats on vs off.

Run with ``.venv/bin/python bench/stats_cost.py`` (``--quick``: one 3 s round).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* an origin nginx (as ``bench/protection_cost.py``: a 10 KB simple page and a 1 MB file, here
  as ``/files/bench/bench-1.0.tar.gz``, ``Cache-Control: max-age=3600, public``);
* two ``pkgedge edge`` processes on that origin (``--workers N``, default 1; 512 MB memory
  tier, access log off, protection off so that only stats differ):

  - **A** ``--stats false``: no sampler, no rollups, no download recorder, no client tally;
  - **B** ``--stats true`` (the default): every worker samples its counters into the ring once
    a second, worker 0 writes the rollups once a minute, and two log hooks see every request:
    the download recorder (a hit of the 1 MB ``bench-1.0.tar.gz`` *is* a download: one record, a
    JSON line and an aggregate count each) and the top-clients tally.

wrk sends pip 24's User-Agent (linehaul JSON) to both. Each edge is warmed until it answers a
hit, then each case is loaded with ``wrk -t1`` on A and B in turn, ``--repeat`` rounds. Cases:
``10 KB page hit`` (50 connections) and ``1 MB file download hit`` (16 connections).

The table shows medians of req/s and the edges' worker CPU per request, and B/A (the goal:
B/A >= 0.95 on req/s). After the runs, B's download aggregates must hold exactly the file
hits wrk made (checked, printed), so the cost measured is that of recording every one.

With 2 cores, wrk (1 thread) and the edge's workers compete for CPU: absolute numbers are
low and noisy; compare the ratios, measured alternately under the same conditions.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as base
import protection_cost as pc

KB, MB = base.KB, base.MB
#: the 1 MB file under a name that parses as a distribution (bench 1.0, an sdist)
DIST = "/files/bench/bench-1.0.tar.gz"
CASES = (
    base.Case("10 KB page hit", pc.PAGE_PATH, 10 * KB, 50, "rps", 0.95),
    base.Case("1 MB download hit", DIST, 1 * MB, 16, "rps", 0.95),
)
SPECS = (
    pc.EdgeSpec("A", "stats off", ("--protection", "off", "--stats", "false")),
    pc.EdgeSpec("B", "stats on", ("--protection", "off", "--stats", "true")),
)


def downloads_total(edge: base.Edge, project: str = "bench") -> int:
    conn = http.client.HTTPConnection(base.HOST, edge.admin_port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {base.ADMIN_TOKEN}"}
        conn.request("GET", f"/stats/downloads/{project}?days=1", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/stats/downloads answered {resp.status}: {body[:200]!r}")
        return int(json.loads(body)["total"])
    finally:
        conn.close()


def in_process_costs(tmp: Path, n: int = 200_000) -> dict[str, float]:
    """µs per request of exactly what stats add to a fast-path hit, timed in this process
    (less noisy than req/s on a shared machine): the ``stats_hit`` closure, for a page hit and
    for a download hit; and per download, the work of the once-a-second flush (record, JSON
    line, aggregate key, database upsert per batch of 1000)."""
    from collections import Counter

    from pkgedge.analytics import hooks
    from pkgedge.analytics.recorder import Recorder
    from pkgedge.config import build_edge_settings
    from pkgedge.http.request import Request
    from pkgedge.stats.clients import ClientTally
    from pkgedge.stats.counters import Counters

    settings = build_edge_settings(
        {"upstream": f"http://{base.HOST}:9/simple/", "cache_dir": str(tmp / "inproc")}
    )
    recorder = Recorder(settings, Counters(1))
    on_hit, _, _ = hooks.make(recorder, ClientTally(tmp / "inproc", 0))
    fields = {"user-agent": pc.PIP_UA}
    page = Request("GET", pc.PAGE_PATH, list(fields.items()), True, "127.0.0.1", fields)
    dist = Request("GET", DIST, list(fields.items()), True, "127.0.0.1", fields)

    def per_call(fn: Any, arg: Any) -> float:
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(n):
                fn(arg)
            best = min(best, time.perf_counter() - t)
        return best / n * 1e6

    def nothing(req: Request) -> None:
        pass

    def stats(req: Request) -> None:
        on_hit(req, 10_000)

    empty = per_call(nothing, page)
    out = {"page hit": per_call(stats, page) - empty}
    out["download hit"] = per_call(stats, dist) - empty
    recorder._seen.clear()
    recorder.db.add(Counter())  # SQLAlchemy imported and the engine made: not timed
    recorder.saw(DIST, pc.PIP_UA, "127.0.0.1")
    recorder.db.add(Counter(recorder._take() and recorder._pending))  # the table made
    recorder._pending.clear()
    # the flush's work per download, in batches of 1000 (about what a busy second sees)
    t = time.perf_counter()
    batches = 5
    for _ in range(batches):
        for _ in range(1000):
            recorder.saw(DIST, pc.PIP_UA, "127.0.0.1")
        lines = recorder._take()  # the flush's steps, synchronously
        assert recorder.log is not None
        recorder.log.write_lines(lines)
        recorder.db.add(recorder._pending)
        recorder._pending.clear()
    out["flush per download"] = (time.perf_counter() - t) / (batches * 1000) * 1e6
    recorder.close()
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one round of 3 s runs")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 6, quick 3)")
    p.add_argument("--repeat", type=int, help="rounds of A, B per case (default 5, quick 1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes of each edge")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 6.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.duration <= 0 or args.repeat < 1 or args.workers < 1:
        p.error("--duration, --repeat and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not base.require(("nginx", "wrk")):
        return 2
    return base.run_main("pkgedge-stats-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: base.Processes, tmp: Path) -> int:
    cores = os.cpu_count() or 1
    print(
        f"stats cost on cache hits: 2 edges x {args.workers} worker(s), wrk -t1, "
        f"{args.duration:g} s x {args.repeat} round(s) per edge and case"
    )
    for s in SPECS:
        print(f"  {s.label}: {s.name:10} {' '.join(s.args)}")
    print(f"load average before the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"pkgedge source fingerprint: {base.source_fingerprint()}", flush=True)

    digests = pc.make_origin(tmp / "origin")
    files = tmp / "origin" / "files" / "bench"
    os.link(files / pc.FILE_NAME, files / DIST.rsplit("/", 1)[1])
    digests[DIST] = digests[pc.FILE_FILES]
    _, origin_port = base.start_origin_nginx(procs, tmp / "nginx-origin", tmp / "origin")
    edges = {s.label: pc.start_edge(procs, tmp, s, origin_port, args.workers) for s in SPECS}
    notes: list[str] = []
    for case in CASES:
        for label, edge in edges.items():
            notes += pc.warm(label, edge, case, digests)
    for note in notes:
        print(f"  ! {note}")
    time.sleep(1.5)  # the warm-up's downloads are flushed
    before = downloads_total(edges["B"])

    lua = tmp / "bench.lua"
    pc.wrk_script(lua)
    results: list[pc.Measured] = []
    for case in CASES:
        print(f"\n{case.name}: {case.path}, {case.connections} connections", flush=True)
        for rep in range(1, args.repeat + 1):
            for spec in SPECS:
                m = pc.measure(procs, lua, spec, edges[spec.label], case, rep, args.duration)
                results.append(m)
                pc.print_measured(m)
                time.sleep(0.5)

    rows: list[dict[str, Any]] = []
    for case in CASES:
        row: dict[str, Any] = {"case": case.name}
        for spec in SPECS:
            ms = [m for m in results if m.case == case.name and m.edge == spec.label]
            row[f"{spec.label}_rps"] = base.median([m.run.rps for m in ms])
            row[f"{spec.label}_us"] = base.median(
                [m.run.cpu_s / m.run.requests * 1e6 for m in ms if m.run.requests]
            )
        row["ratio"] = row["B_rps"] / row["A_rps"] if row["A_rps"] else 0.0
        row["us_ratio"] = row["B_us"] / row["A_us"] if row["A_us"] else 0.0
        rows.append(row)
    print(
        f"\nmedians of {args.repeat} round(s) of {args.duration:g} s; wrk -t1 on the same "
        f"{cores}-core machine; B/A = stats on / stats off (goal: >= 0.95 req/s)"
    )
    head = (
        f"{'case':20} {'A req/s':>10} {'B req/s':>10} {'B/A':>6}  {'A us/req':>9} {'B us/req':>9}"
    )
    print(head + f" {'B/A':>6}")
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:20} {r['A_rps']:10.1f} {r['B_rps']:10.1f} {r['ratio']:6.3f}  "
            f"{r['A_us']:9.1f} {r['B_us']:9.1f} {r['us_ratio']:6.3f}"
        )

    costs = in_process_costs(tmp)
    print("\nin-process cost of the stats' per-request work (best of 3, this machine, now):")
    for name, us in costs.items():
        print(f"  {name:20} {us:6.2f} us")
    for r, case in zip(rows, CASES, strict=True):
        added = (
            costs["page hit"]
            if "page" in case.name
            else (costs["download hit"] + costs["flush per download"])
        )
        print(
            f"  {case.name}: {added:.2f} us on A's {r['A_us']:.1f} us of worker CPU per "
            f"request -> projected B/A {r['A_us'] / (r['A_us'] + added):.3f} (req/s, CPU-bound)"
        )

    time.sleep(2.0)  # the last second's downloads are flushed
    file_hits = sum(
        m.run.requests - m.run.non_2xx for m in results if m.edge == "B" and "download" in m.case
    )
    counted = downloads_total(edges["B"]) - before
    print(
        f"\nB recorded {counted} download(s) during the runs; wrk completed {file_hits} file "
        f"request(s) (wrk stops mid-response at the end of a run, so a few more may be counted)"
    )
    for label, edge in edges.items():
        err_text = edge.stderr.read_text(errors="replace").strip()
        if err_text:
            print(f"\npkgedge {label} stderr (last 10 lines):")
            for line in err_text.splitlines()[-10:]:
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
