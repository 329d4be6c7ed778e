"""Cache-hit throughput of the pkgedge edge against nginx over HTTP/2 (TLS, ALPN h2).

Run with ``.venv/bin/python bench/h2_vs_nginx.py`` (``--quick`` for a ~40 s smoke run). Needs
``h2load`` (Debian ``nghttp2-client``), ``nginx`` and ``openssl``; ``--profile S`` then samples
the pkgedge worker with py-spy for S s (``bench/_h2.py``).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* a self-signed certificate for 127.0.0.1 (``openssl req -x509``, EC P-256);
* an origin tree (a 10 KB simple page and a 1 MB file) served by an *origin* nginx over plain
  HTTP with ``Cache-Control: max-age=3600, public``, as in ``bench/edge_vs_nginx.py``;
* ``pkgedge edge --workers 1`` in front of it with ``--tls-cert``/``--tls-key`` (HTTP/2 is on
  by default there), protection on with rate limits no benchmark reaches, as in
  ``bench/edge_vs_nginx.py``;
* a reference nginx, 1 worker, ``listen ... ssl http2`` and ``proxy_cache`` in front of the
  same origin (the configuration of ``bench/edge_vs_nginx.py`` plus the certificate).

Both are warmed until an HTTP/2 request (the ``h2`` library) answers a hit with the origin's
body, and each ``h2load`` run must report ``Application protocol: h2``. Cases, ``h2load -t1``:

* ``10 KB page hit``, ``-c 10 -m 10``: 10 connections with 10 concurrent streams each;
* ``10 KB page hit``, ``-c 50 -m 1``: one stream at a time per connection (as wrk's 50);
* ``1 MB file hit``, ``-c 16 -m 1``, in MB/s (neither server can use sendfile under TLS);
* ``10 KB page hit, HTTP/1.1``, ``-c 50 -m 1 --h1``: the same TLS without HTTP/2 (h2load must
  report ``http/1.1``), to tell the cost of TLS from that of HTTP/2.

The servers are loaded alternately, ``--repeat`` times; the table shows medians, the ratio
pkgedge/nginx, and the worker's CPU per request from /proc. The load generator shares the
machine's cores with the servers: compare the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import _common as c
import _h2
from _common import HOST, KB, MB, Run

PAGE_PATH = "/simple/bench/"
FILE_1M = "/packages/bench/bench-1.0-1mb.tar.gz"
UNLIMITED = "1000000000/1000000000"
LABELS = {"nginx": "nginx proxy_cache", "pkgedge": "pkgedge"}
HINT = "apt-get install -y nghttp2-client nginx openssl"

#: the certificate for the client listener, at the http level (one server block)
TLS_HTTP = """\
    ssl_certificate {cert};
    ssl_certificate_key {key};
"""


@dataclass(frozen=True)
class H2Case:
    name: str
    path: str
    size: int
    clients: int  # h2load -c: connections
    streams: int  # h2load -m: concurrent streams per connection
    metric: str  # "rps" or "mbps"
    proto: str = "h2"  # or "http/1.1": h2load --h1, the same TLS without HTTP/2

    @property
    def label(self) -> str:
        h1 = ", HTTP/1.1" if self.proto != "h2" else ""
        return f"{self.name}{h1} -c{self.clients} -m{self.streams}"


CASES = (
    H2Case("10 KB page hit", PAGE_PATH, 10 * KB, 10, 10, "rps"),
    H2Case("10 KB page hit", PAGE_PATH, 10 * KB, 50, 1, "rps"),
    H2Case("1 MB file hit", FILE_1M, 1 * MB, 16, 1, "mbps"),
    H2Case("10 KB page hit", PAGE_PATH, 10 * KB, 50, 1, "rps", "http/1.1"),
)


@dataclass
class H2Run(Run):
    mean_ms: float = 0.0  # h2load's mean "time for request" (it gives no percentiles)


# -- setup -------------------------------------------------------------------------------------
def make_origin(root: Path) -> dict[str, str]:
    """Write the 10 KB page and the 1 MB file; return path → sha256 of the file (the edge
    rewrites the page, so its body is not compared)."""
    (root / "simple" / "bench").mkdir(parents=True)
    (root / "packages" / "bench").mkdir(parents=True)
    data = os.urandom(1 * MB)
    (root / FILE_1M.lstrip("/")).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    name = FILE_1M.rpartition("/")[2]
    link = f'<a href="../../packages/bench/{name}#sha256={digest}">{name}</a><br/>\n'
    page = c.simple_page("bench", [link], 10 * KB, "../../packages/bench/")
    (root / "simple" / "bench" / "index.html").write_text(page)
    return {FILE_1M: digest}


def start_h2_nginx(
    procs: c.Processes, d: Path, origin_port: int, cert: Path, key: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """nginx proxy_cache (1 worker) listening with ``ssl http2``; return it and its port."""
    port = c.free_port()
    block = TLS_HTTP.format(cert=cert, key=key) + c.CACHE_HTTP.format(
        host=HOST, port=port, origin=origin_port, d=d, listen_opts=" ssl http2"
    )
    proc = c.start_nginx(procs, d, "cache", 1, block)
    c.wait_port(port, proc, "caching nginx")
    return proc, port


def warm(server: str, port: int, path: str, digest: str | None, cafile: Path) -> None:
    """Request ``path`` over h2 until it is a hit with the origin's body; raise if never."""
    is_hit = c.is_nginx_hit if server == "nginx" else c.is_edge_hit
    headers: dict[str, str] = {}
    for attempt in range(1, 6):
        status, headers, got = _h2.h2_get(port, path, cafile)
        if status == 200 and digest and got != digest:
            raise RuntimeError(f"{server} {path}: the body differs from the origin's")
        if status == 200 and is_hit(headers):
            return
        time.sleep(0.2 * attempt)
    raise RuntimeError(f"{server} never answered an h2 hit for {path}: last headers {headers}")


def start_h2load(
    procs: c.Processes, port: int, case: H2Case, duration: float
) -> subprocess.Popen[bytes]:
    """``h2load -t1`` on ``case`` for ``duration`` s, in the background."""
    argv = [
        "h2load", "-t1", f"-c{case.clients}", f"-m{case.streams}", "-D", f"{duration:g}",
        *(["--h1"] if case.proto == "http/1.1" else []), f"https://{HOST}:{port}{case.path}",
    ]  # fmt: skip
    out = subprocess.PIPE
    return procs.start("h2load", argv, signal.SIGINT, stdout=out, stderr=subprocess.STDOUT)


def finish_h2load(
    procs: c.Processes, proc: subprocess.Popen[bytes], port: int, case: H2Case, duration: float
) -> dict[str, float]:
    """Wait for h2load; its parsed figures. Raises unless it says it spoke ``case.proto``."""
    try:
        raw, _ = proc.communicate(timeout=duration + 60)
    finally:
        procs.stop(proc, timeout=5)
    text = raw.decode(errors="replace")
    if f"Application protocol: {case.proto}\n" not in text:
        raise RuntimeError(f"h2load did not speak {case.proto} with :{port}:\n{text}")
    parsed = _h2.parse_h2load(text)
    if not {"secs", "done", "data_bytes", "mean_ms"} <= parsed.keys():
        raise RuntimeError(f"could not parse h2load's output:\n{text}")
    return parsed


def measure(
    procs: c.Processes,
    server: str,
    port: int,
    case: H2Case,
    repeat: int,
    duration: float,
    workers: list[int],
    edge: c.Edge | None,
) -> H2Run:
    """One h2load run with the CPU of ``workers`` and of h2load, and the edge's /stats deltas."""
    before = c.edge_stats(edge) if edge else {}
    cpu0 = [c.cpu_seconds([p]) for p in workers]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = c.machine_busy_seconds()
    got = finish_h2load(procs, start_h2load(procs, port, case, duration), port, case, duration)
    busy = c.machine_busy_seconds() - busy0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    split = [c.cpu_seconds([p]) - t for p, t in zip(workers, cpu0, strict=True)]
    tool_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    secs, done = got["secs"], int(got["done"])
    errors = {k: int(got.get(k, 0)) for k in ("failed", "errored")}
    run = H2Run(
        server=server, case=case.label, repeat=repeat,
        rps=done / secs, mbps=got["data_bytes"] / secs / 1e6,
        requests=done, bytes=int(got["data_bytes"]), duration=secs,
        p50_ms=0.0, p99_ms=0.0, max_ms=got["max_ms"], mean_ms=got["mean_ms"],
        errors=errors, non_2xx=int(got.get("non_2xx", 0)),
        cpu_s=sum(split), cpu_split=split, wrk_cpu_s=tool_cpu,
        other_cpu_s=max(0.0, busy - sum(split) - tool_cpu),
    )  # fmt: skip
    if any(errors.values()) or run.non_2xx:
        run.notes.append(f"h2load errors {errors}, non-2xx {run.non_2xx}")
    if edge:
        run.stats = c.stats_delta(edge, before)
        run.notes += c.hit_notes(run.stats, run.requests)
    return run


# -- reporting ---------------------------------------------------------------------------------
def print_run(run: H2Run) -> None:
    cpu = c.worker_cpu_line(run).replace("wrk", "h2load")
    us = run.cpu_s / run.requests * 1e6 if run.requests else 0.0
    print(
        f"  {LABELS[run.server]:18} #{run.repeat}: {run.rps:9.1f} req/s {run.mbps:8.1f} MB/s  "
        f"mean {run.mean_ms:7.2f} ms  max {run.max_ms:8.2f} ms  {us:6.1f} us/req  {cpu}",
        flush=True,
    )
    for note in run.notes:
        print(f"      ! {note}", flush=True)


def print_table(runs: list[H2Run]) -> None:
    head = (
        f"{'case':34} {'nginx':>14} {'pkgedge':>14} {'ratio':>6} {'rounds':>6} "
        f"{'nginx us/req':>12} {'pkgedge us/req':>14}"
    )
    print(head)
    print("-" * len(head))
    for case in CASES:
        unit = "req/s" if case.metric == "rps" else "MB/s"
        of = {s: [r for r in runs if r.case == case.label and r.server == s] for s in LABELS}
        val = {s: c.median(getattr(r, case.metric) for r in rs) for s, rs in of.items()}
        cpu = {
            s: c.median(r.cpu_s / r.requests * 1e6 for r in rs if r.requests)
            for s, rs in of.items()
        }
        ref = {r.repeat: getattr(r, case.metric) for r in of["nginx"]}
        rounds = c.median(
            getattr(r, case.metric) / ref[r.repeat] for r in of["pkgedge"] if ref.get(r.repeat)
        )
        ratio = val["pkgedge"] / val["nginx"] if val["nginx"] else 0.0
        print(
            f"{case.label:34} {val['nginx']:8.1f} {unit:5} {val['pkgedge']:8.1f} {unit:5} "
            f"{ratio:6.2f} {rounds:6.2f} {cpu['nginx']:12.1f} {cpu['pkgedge']:14.1f}"
        )
    print(
        "(ratio: pkgedge/nginx of the medians; rounds: median of the ratios within each round; "
        "us/req: the worker's user+system CPU per request from /proc)"
    )


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 repeat")
    p.add_argument("--duration", type=float, help="seconds per h2load run (default 8, quick 3)")
    p.add_argument("--repeat", type=int, help="runs per server and case (default 3, quick 1)")
    p.add_argument(
        "--profile", type=float, metavar="S",
        help="then sample the pkgedge worker with py-spy for S s under the first case's load",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 8.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.duration <= 0 or args.repeat < 1:
        p.error("--duration and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not c.require(("h2load", "nginx", "openssl"), HINT):
        return 2
    return c.run_main("pkgedge-h2bench-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: c.Processes, tmp: Path) -> int:
    cores = os.cpu_count() or 1
    total = len(CASES) * len(LABELS) * args.repeat * args.duration
    print(
        f"pkgedge vs nginx proxy_cache over HTTP/2 (TLS): 1 worker each, h2load -t1, "
        f"{args.duration:g} s x {args.repeat} per server and case (~{total / 60:.1f} min of load)"
    )
    print(f"note: {cores} cores shared by h2load and the servers; compare the ratios")
    print(f"load average at the start: {c.load_average()}")
    print(f"pkgedge source fingerprint (sha256 of src/pkgedge/**/*.py): {c.source_fingerprint()}")
    digests = make_origin(tmp / "origin")
    cert, key = _h2.make_cert(tmp / "tls")
    _, origin_port = c.start_origin_nginx(procs, tmp / "nginx-origin", tmp / "origin")
    nginx, nginx_port = start_h2_nginx(procs, tmp / "nginx-cache", origin_port, cert, key)
    # protection on, but one client fetching one file thousands of times must not be
    # rate limited or throttled (as bench/edge_vs_nginx.py does it)
    edge = c.start_edge(
        procs, tmp / "edge", origin_port, 1,
        ("--rate-limit", UNLIMITED, "--throttled-rate-limit", UNLIMITED,
         "--tls-cert", str(cert), "--tls-key", str(key)),
    )  # fmt: skip
    ports = {"nginx": nginx_port, "pkgedge": edge.port}
    print(
        f"origin nginx :{origin_port}, caching nginx :{nginx_port}, "
        f"pkgedge :{edge.port} (admin :{edge.admin_port}, worker pid {edge.workers()})",
        flush=True,
    )
    for server, port in ports.items():
        for path in (PAGE_PATH, FILE_1M):
            warm(server, port, path, digests.get(path), cert)
    print("warmed: both answer h2 hits (the file with the origin's body)", flush=True)

    def workers_of(server: str) -> list[int]:
        return c.nginx_workers(nginx) if server == "nginx" else edge.workers()

    runs: list[H2Run] = []
    for case in CASES:
        print(f"\n{case.label}: {case.path}", flush=True)
        for rep in range(1, args.repeat + 1):
            for server in LABELS:
                e = edge if server == "pkgedge" else None
                run = measure(
                    procs, server, ports[server], case, rep, args.duration, workers_of(server), e
                )
                runs.append(run)
                print_run(run)
                time.sleep(0.5)

    print(
        f"\nmedians of {args.repeat} run(s) of {args.duration:g} s; 1 worker per server; "
        f"h2load -t1 on the same {cores}-core machine; MB = 10^6 bytes"
    )
    print_table(runs)
    print(f"load average at the end: {c.load_average()}")
    if args.profile:
        case = CASES[0]
        print(f"\nprofile: {case.label} on pkgedge", flush=True)
        _h2.profile_worker(
            procs, edge, lambda secs: start_h2load(procs, edge.port, case, secs), args.profile,
            tmp / "h2-hit.speedscope.json",
        )  # fmt: skip
    err = edge.stderr.read_text(errors="replace").strip()
    if err:
        print(f"\npkgedge stderr ({len(err.splitlines())} lines, last 20):")
        for line in err.splitlines()[-20:]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
