"""Cache-hit throughput of the pkgedge edge against nginx and Varnish, on the same origin.

Run with ``.venv/bin/python bench/edge_vs_nginx.py`` (``--quick`` for a ~1 min smoke run).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* an origin tree: a 10 KB simple page (``/simple/bench/index.html``), a 1 MB and a 100 MB file
  of random bytes, served by an *origin* nginx that adds ``Cache-Control: max-age=3600,
  public`` so every cache considers everything fresh for the whole run;
* ``pkgedge edge`` in front of it (``--workers N``, default 1; 512 MB memory tier, 2 MB
  memory-object limit, access log off, protection on with limits no benchmark reaches);
* the same edge with ``--protection off`` (the 10 KB case only: what protection costs);
* a reference nginx with ``proxy_cache`` in front of the same origin (``worker_processes N``,
  keep-alive upstream, sendfile, access log off, ``keepalive_requests`` raised so that neither
  server closes the benchmark's connections);
* a reference Varnish serving from RAM (``varnishd -s malloc,512m``, ``-p thread_pools=N``,
  its own ``-n`` working directory in the temp dir, a VCL with the origin nginx as backend and
  ``beresp.ttl`` of a day). Varnish is threaded: its CPU is not bounded by ``--workers``.

Cases and references:

* ``10 KB page hit`` (50 connections): pkgedge, and pkgedge with protection off, against
  nginx ``proxy_cache``, in req/s. Minimum 0.8 (goal 1.0) with protection on, 1.0 off;
* ``1 MB file hit`` (16 connections): pkgedge against Varnish from RAM, in MB/s; 0.8;
* ``100 MB file hit`` (4 connections): pkgedge against nginx (both sendfile), in MB/s; 1.0.

Every cache is warmed until it answers hits (and file bodies are checked against the origin
files), then each case is loaded with ``wrk`` against its reference and then each pkgedge,
alternating, ``--repeat`` times. The table shows medians, the ratio pkgedge/reference (MB =
10^6 bytes) and the goals. pkgedge's ``/stats`` is sampled around every run so that a run
which was not all hits is flagged, and the workers' peak RSS (VmHWM) and CPU time are reported.

The load generator runs on the same machine as the servers: with 2 cores, wrk (1 thread) and
the server's workers compete for CPU, so absolute numbers are low and noisy; the ratio between
the servers, measured alternately under the same conditions, is what matters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _common as c
from _common import HOST, KB, MB, Case, Run

PAGE_PATH = "/simple/bench/"
FILE_1M = "/packages/bench/bench-1.0-1mb.tar.gz"
FILE_100M = "/packages/bench/bench-1.0-100mb.tar.gz"

FINAL_STATS = (
    "requests",
    "hits",
    "misses",
    "origin_fetches",
    "collapsed",
    "stale",
    "origin_errors",
    "client_errors",
    "connections",
    "memory_objects",
)

CASES = (
    Case("10 KB page hit", PAGE_PATH, 10 * KB, 50, "rps", 0.8),
    Case("1 MB file hit", FILE_1M, 1 * MB, 16, "mbps", 0.8),
    Case("100 MB file hit", FILE_100M, 100 * MB, 4, "mbps", 1.0),
)

#: server key → how the tables name it
LABELS = {
    "nginx": "nginx proxy_cache",
    "varnish": "Varnish (malloc)",
    "pkgedge": "pkgedge",
    "pkgedge-off": "pkgedge (protection off)",
}


@dataclass(frozen=True)
class Compare:
    """One row of the result table: ``server`` against ``reference`` on ``case``."""

    case: str
    server: str
    reference: str
    minimum: float
    goal: float


COMPARES = (
    Compare("10 KB page hit", "pkgedge", "nginx", 0.8, 1.0),
    Compare("10 KB page hit", "pkgedge-off", "nginx", 1.0, 1.0),
    Compare("1 MB file hit", "pkgedge", "varnish", 0.8, 0.8),
    Compare("100 MB file hit", "pkgedge", "nginx", 1.0, 1.0),
)


def servers_of(case: Case) -> list[str]:
    """The servers loaded in ``case``, reference first."""
    rows = [r for r in COMPARES if r.case == case.name]
    return [rows[0].reference, *(r.server for r in rows)]


# -- origin and servers ------------------------------------------------------------------------
def make_origin(root: Path) -> dict[str, str]:
    """Write the origin tree; return path → sha256 of the file bodies."""
    page_dir = root / "simple" / "bench"
    files_dir = root / "packages" / "bench"
    page_dir.mkdir(parents=True)
    files_dir.mkdir(parents=True)
    digests = {}
    for path, size in ((FILE_1M, 1 * MB), (FILE_100M, 100 * MB)):
        h = hashlib.sha256()
        with open(root / path.lstrip("/"), "wb") as fh:
            left = size
            while left:
                chunk = os.urandom(min(left, 4 * MB))
                h.update(chunk)
                fh.write(chunk)
                left -= len(chunk)
        digests[path] = h.hexdigest()
    links = [
        f'<a href="../../packages/bench/{path.rpartition("/")[2]}'
        f'#sha256={digests[path]}">{path.rpartition("/")[2]}</a><br/>\n'
        for path in (FILE_1M, FILE_100M)
    ]
    page = c.simple_page("bench", links, 10 * KB, "../../packages/bench/")
    (page_dir / "index.html").write_text(page)
    return digests


VCL = """\
vcl 4.1;

backend origin {{
    .host = "{host}";
    .port = "{port}";
}}

sub vcl_backend_response {{
    set beresp.ttl = 1d;
    set beresp.grace = 1h;
}}

sub vcl_deliver {{
    if (obj.hits > 0) {{
        set resp.http.X-Cache = "HIT";
    }} else {{
        set resp.http.X-Cache = "MISS";
    }}
}}
"""


def start_varnish(
    procs: c.Processes, d: Path, origin_port: int, pools: int
) -> tuple[subprocess.Popen[bytes], int]:
    """varnishd in the foreground, RAM storage, working dir ``d/work``; return it and its port."""
    d.mkdir(parents=True)
    vcl = d / "bench.vcl"
    vcl.write_text(VCL.format(host=HOST, port=origin_port))
    port = c.free_port()
    argv = [
        "varnishd", "-F",
        "-j", "none",  # no privilege separation: the temp dir is private to us
        "-n", str(d / "work"),
        "-a", f"{HOST}:{port}",
        "-T", "none",
        "-f", str(vcl),
        "-s", "malloc,512m",
        "-p", f"thread_pools={pools}",
    ]  # fmt: skip
    log = open(d / "stderr.log", "wb")  # noqa: SIM115 - closed with the temp dir
    proc = procs.start("varnish", argv, signal.SIGTERM, stdout=log, stderr=log)
    c.wait_port(port, proc, "varnishd", timeout=60)  # it compiles the VCL first
    return proc, port


def varnish_workers(master: subprocess.Popen[bytes]) -> list[int]:
    """The cache process (all worker threads) under the manager."""
    return c.children(master.pid)


# -- reporting ---------------------------------------------------------------------------------
def print_run(run: Run) -> None:
    line = (
        f"  {LABELS[run.server]:24} {run.case:15} #{run.repeat}: {run.rps:9.1f} req/s "
        f"{run.mbps:8.1f} MB/s  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  "
        + c.worker_cpu_line(run)
    )
    print(line, flush=True)
    for note in run.notes:
        print(f"      ! {note}", flush=True)


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    def med(case: str, server: str, key: str) -> float:
        rs = [r for r in runs if r.case == case and r.server == server]
        if key == "cpu_us_per_req":
            return c.median(r.cpu_s / r.requests * 1e6 for r in rs if r.requests)
        if key == "cpu_s_per_gb":
            return c.median(r.cpu_s / r.bytes * 1e9 for r in rs if r.bytes)
        return c.median(getattr(r, key) for r in rs)

    rows = []
    for cmp in COMPARES:
        case = next(k for k in CASES if k.name == cmp.case)
        row: dict[str, Any] = {**asdict(cmp), "metric": case.metric}
        for side, server in (("ref", cmp.reference), ("edge", cmp.server)):
            for key in ("rps", "mbps", "cpu_us_per_req", "cpu_s_per_gb"):
                row[f"{side}_{key}"] = med(cmp.case, server, key)
        # the ratio of medians, and the median of the ratios of each round (same conditions)
        ref_runs = {r.repeat: r for r in runs if r.case == cmp.case and r.server == cmp.reference}
        ratios = [
            getattr(r, case.metric) / getattr(ref_runs[r.repeat], case.metric)
            for r in runs
            if r.case == cmp.case and r.server == cmp.server and r.repeat in ref_runs
            if getattr(ref_runs[r.repeat], case.metric)
        ]
        base = row[f"ref_{case.metric}"]
        row["ratio"] = row[f"edge_{case.metric}"] / base if base else 0.0
        row["ratio_of_rounds"] = c.median(ratios)
        row["verdict"] = (
            "GOAL" if row["ratio"] >= cmp.goal else "ok" if row["ratio"] >= cmp.minimum else "MISS"
        )
        rows.append(row)
    return rows


def goal_text(row: dict[str, Any]) -> str:
    if row["goal"] > row["minimum"]:
        return f">={row['minimum']:.1f} (goal {row['goal']:.1f})"
    return f">={row['minimum']:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'case':16} {'server':24} {'reference':18} {'reference':>12} {'pkgedge':>12} "
        f"{'ratio':>11} {'rounds':>6}  {'minimum (goal)':16} verdict"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = "req/s" if r["metric"] == "rps" else "MB/s"
        print(
            f"{r['case']:16} {LABELS[r['server']]:24} {LABELS[r['reference']]:18} "
            f"{r['ref_' + r['metric']]:12.1f} {r['edge_' + r['metric']]:12.1f} "
            f"{r['ratio']:5.2f} {unit:5} {r['ratio_of_rounds']:6.2f}  {goal_text(r):16} "
            f"{r['verdict']}"
        )
    print(
        "(ratio: of the medians; rounds: median of the ratios within each round; verdict: GOAL "
        "= at or above the goal, ok = at or above the minimum, MISS = below it)"
    )
    print("\nserver CPU per request and per GB sent (medians; lower is better):")
    head = f"{'case':16} {'server':24} {'reference':>22} {'pkgedge':>22} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for r in rows:
        per_req = r["metric"] == "rps"
        key, unit = ("cpu_us_per_req", "us/req") if per_req else ("cpu_s_per_gb", "CPU-s/GB")
        a, b = r[f"ref_{key}"], r[f"edge_{key}"]
        print(
            f"{r['case']:16} {LABELS[r['server']]:24} {a:13.3g} {unit:>8} {b:13.3g} {unit:>8} "
            f"{(b / a if a else 0.0):6.2f}"
        )


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 repeat")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 8, quick 3)")
    p.add_argument("--repeat", type=int, help="runs per server and case (default 3, quick 1)")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes of each server (default 1)"
    )
    p.add_argument("--json", type=Path, help="save the results as JSON")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 8.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.duration <= 0 or args.repeat < 1 or args.workers < 1:
        p.error("--duration, --repeat and --workers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not c.require(("nginx", "varnishd", "wrk"), "apt-get install -y nginx varnish wrk"):
        return 2
    return c.run_main("pkgedge-bench-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: c.Processes, tmp: Path) -> int:
    cores = os.cpu_count() or 1
    n = args.workers
    total = sum(len(servers_of(case)) for case in CASES) * args.repeat * args.duration
    print(
        f"pkgedge vs nginx proxy_cache and Varnish: {n} worker(s) each, wrk 1 thread, "
        f"{args.duration:g} s x {args.repeat} per server and case (~{total / 60:.1f} min of load)"
    )
    print(
        f"note: this machine has {cores} cores shared by wrk and the servers' workers; "
        "absolute numbers are CPU-bound and noisy, compare the ratios"
    )
    print(f"load average before the run: {c.load_average()}")
    fingerprint = c.source_fingerprint()
    print(f"pkgedge source fingerprint (sha256 of src/pkgedge/**/*.py): {fingerprint}")
    t0 = time.monotonic()
    origin_root = tmp / "origin"
    digests = make_origin(origin_root)
    print(f"origin tree written in {time.monotonic() - t0:.1f} s ({tmp})", flush=True)

    _, origin_port = c.start_origin_nginx(procs, tmp / "nginx-origin", origin_root)
    nginx, cache_port = c.start_cache_nginx(procs, tmp / "nginx-cache", origin_port, n)
    varnish, varnish_port = start_varnish(procs, tmp / "varnish", origin_port, n)
    unlimited = "1000000000/1000000000"
    edges = {
        # protection stays on (its checks are part of the hit path) but wrk, one client,
        # must not be rate limited: bench/protection_cost.py measures what protection costs.
        # One client fetching one file thousands of times is what the repeat-download signal
        # exists to throttle: keep that throttle from refusing the benchmark
        "pkgedge": c.start_edge(
            procs, tmp / "edge", origin_port, n,
            ("--rate-limit", unlimited, "--throttled-rate-limit", unlimited),
        ),
        "pkgedge-off": c.start_edge(
            procs, tmp / "edge-off", origin_port, n, ("--protection", "off"), "pkgedge-off"
        ),
    }  # fmt: skip
    ports = {"nginx": cache_port, "varnish": varnish_port}
    ports.update({k: e.port for k, e in edges.items()})
    print(
        f"origin nginx :{origin_port}, caching nginx :{cache_port}, varnish :{varnish_port}, "
        + ", ".join(f"{k} :{e.port} (admin :{e.admin_port})" for k, e in edges.items()),
        flush=True,
    )

    # sanity: the origin serves what we think it does
    status, hdrs, _ = c.fetch(origin_port, PAGE_PATH)
    if status != 200 or not hdrs.get("content-type", "").startswith("text/html"):
        raise RuntimeError(f"origin page: {status} {hdrs}")
    if "max-age=3600" not in hdrs.get("cache-control", ""):
        raise RuntimeError(f"origin does not send Cache-Control: {hdrs}")

    is_hit = {
        "nginx": c.is_nginx_hit,
        "varnish": lambda h: h.get("x-cache") == "HIT",
        "pkgedge": c.is_edge_hit,
        "pkgedge-off": c.is_edge_hit,
    }
    notes: list[str] = []
    for case in CASES:
        for server in servers_of(case):
            notes += c.warm(server, ports[server], case, digests, is_hit[server])
    warm_stats = {k: c.edge_stats(e) for k, e in edges.items()}
    print(
        "warmed: "
        + "; ".join(
            f"{k} " + ", ".join(f"{s}={st.get(s, 0)}" for s in ("hits", "misses", "origin_fetches"))
            for k, st in warm_stats.items()
        ),
        flush=True,
    )
    for note in notes:
        print(f"  ! {note}")

    def workers_of(server: str) -> list[int]:
        if server == "nginx":
            return c.nginx_workers(nginx)
        if server == "varnish":
            return varnish_workers(varnish)
        return edges[server].workers()

    lua = tmp / "done.lua"
    lua.write_text(c.WRK_LUA)
    pids0 = {s: workers_of(s) for s in LABELS}
    runs: list[Run] = []
    rss_timeline: list[dict[str, Any]] = []
    for case in CASES:
        print(f"\n{case.name}: {case.path}, {case.connections} connections", flush=True)
        for rep in range(1, args.repeat + 1):
            for server in servers_of(case):
                edge = edges.get(server)
                run = c.measure(
                    procs, lua, server, ports[server], case, rep, args.duration,
                    workers_of(server), edge,
                )  # fmt: skip
                if workers_of(server) != pids0[server]:
                    run.notes.append(
                        f"{server} workers changed: {pids0[server]} -> {workers_of(server)}"
                    )
                    pids0[server] = workers_of(server)
                if edge is not None:
                    rss = [c.proc_status(p).get("VmRSS", 0) for p in edge.workers()]
                    rss_timeline.append({"after": f"{server} {case.name} #{rep}", "rss": rss})
                runs.append(run)
                print_run(run)
                time.sleep(0.5)

    rows = summarize(runs)
    print(
        f"\nmedians of {args.repeat} run(s) of {args.duration:g} s; {n} worker(s) per server; "
        f"wrk -t1 on the same {cores}-core machine; MB = 10^6 bytes; "
        "ratio = pkgedge / reference"
    )
    print_table(rows)

    final = {k: c.edge_stats(e) for k, e in edges.items()}
    for key, st in final.items():
        shown = ", ".join(f"{k}={st.get(k, 0)}" for k in FINAL_STATS)
        print(f"\n{key} /stats: {shown}, memory_bytes={c.fmt_bytes(st.get('memory_bytes', 0))}")
        expected = sum(1 for case in CASES if key in servers_of(case))
        if st.get("origin_fetches", 0) > expected:
            print(f"  ! {st['origin_fetches']} origin fetches, expected {expected}")

    mem = {
        "pkgedge_parent": c.memory_of([edges["pkgedge"].proc.pid]),
        "pkgedge_workers": c.memory_of(edges["pkgedge"].workers()),
        "pkgedge-off_workers": c.memory_of(edges["pkgedge-off"].workers()),
        "nginx_master": c.memory_of([nginx.pid]),
        "nginx_workers": c.memory_of(c.nginx_workers(nginx)),
        "varnish_cache": c.memory_of(varnish_workers(varnish)),
    }
    print("\npeak RSS (VmHWM) / current RSS of the worker processes:")
    for key in ("pkgedge_workers", "pkgedge-off_workers", "nginx_workers", "varnish_cache"):
        desc = ", ".join(
            f"pid {m['pid']}: {c.fmt_bytes(m.get('VmHWM', 0))} / {c.fmt_bytes(m.get('VmRSS', 0))}"
            for m in mem[key]
        )
        print(f"  {key.replace('_', ' '):20} {desc}")
    parent = mem["pkgedge_parent"][0]
    print(f"  pkgedge parent       {c.fmt_bytes(parent.get('VmHWM', 0))} peak")
    if rss_timeline:
        print("  pkgedge worker RSS after each pkgedge run (MiB):")
        for point in rss_timeline:
            vals = " ".join(f"{r / MB:7.1f}" for r in point["rss"])
            print(f"    {point['after']:40} {vals}")

    for key, edge in edges.items():
        err_text = edge.stderr.read_text(errors="replace").strip()
        if err_text:
            lines = err_text.splitlines()
            print(f"\n{key} stderr ({len(lines)} lines, last 20):")
            for line in lines[-20:]:
                print(f"  {line}")
    nginx_err = (tmp / "nginx-cache" / "error.log").read_text(errors="replace").strip()
    if nginx_err:
        print("\ncaching nginx error.log (last 10 lines):")
        for line in nginx_err.splitlines()[-10:]:
            print(f"  {line}")

    if args.json:
        result = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cores": cores,
            "source_fingerprint": fingerprint,
            "cases": [asdict(k) for k in CASES],
            "runs": [asdict(r) for r in runs],
            "summary": rows,
            "pkgedge_stats": final,
            "memory": mem,
            "pkgedge_rss_timeline": rss_timeline,
            "warmup_notes": notes,
        }
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nresults saved to {args.json}")
    return 0


if __name__ == "__main__":
    if shutil.which("varnishd") is None and Path("/usr/sbin/varnishd").exists():
        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    sys.exit(main())
