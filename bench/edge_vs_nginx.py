"""Cache-hit throughput of the pkgedge edge against a caching nginx, on the same origin.

Run with ``.venv/bin/python bench/edge_vs_nginx.py`` (``--quick`` for a ~30 s smoke run).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* an origin tree: a 10 KB simple page (``/simple/bench/index.html``), a 1 MB and a 100 MB file
  of random bytes, served by an *origin* nginx that adds ``Cache-Control: max-age=3600,
  public`` so both caches consider everything fresh for the whole run;
* ``pkgedge edge`` in front of it (``--workers N``, 512 MB memory tier, 2 MB memory-object
  limit, access log off);
* a *reference* nginx with ``proxy_cache`` in front of the same origin (``worker_processes N``,
  keep-alive upstream, sendfile, access log off, ``keepalive_requests`` raised so that neither
  server closes the benchmark's connections).

Both caches are warmed until they answer hits (and file bodies are checked against the origin
files), then each case (10 KB page, 1 MB file, 100 MB file) is loaded with ``wrk`` against
nginx and then pkgedge, alternating, ``--repeat`` times. The table shows medians, the ratio
pkgedge/nginx (req/s for the page, MB/s for the files; MB = 10^6 bytes) and the goals: page
hits at >= 0.5 of nginx's req/s, file hits at >= 0.8 of nginx's MB/s. pkgedge's ``/stats`` is
sampled around every run so that a run which was not all hits is flagged, and the workers'
peak RSS (VmHWM) and CPU time are reported for both servers.

The load generator runs on the same machine as the servers: with 2 cores, wrk (1 thread) and
the 2 server workers compete for CPU, so absolute numbers are low and noisy; the ratio between
the two servers, measured alternately under the same conditions, is what matters.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PKGEDGE = ROOT / ".venv" / "bin" / "pkgedge"
ADMIN_TOKEN = "x"
HOST = "127.0.0.1"
KB, MB = 1024, 1024 * 1024

PAGE_PATH = "/simple/bench/"
FILE_1M = "/packages/bench/bench-1.0-1mb.tar.gz"
FILE_100M = "/packages/bench/bench-1.0-100mb.tar.gz"

WRK_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d "
    .. "timeout=%d p50_us=%d p99_us=%d max_us=%d\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    size: int
    connections: int
    metric: str  # "rps" or "mbps": what the ratio and the goal compare
    goal: float


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
    Case("10 KB page hit", PAGE_PATH, 10 * KB, 50, "rps", 0.5),
    Case("1 MB file hit", FILE_1M, 1 * MB, 16, "mbps", 0.8),
    Case("100 MB file hit", FILE_100M, 100 * MB, 4, "mbps", 0.8),
)


@dataclass
class Run:
    server: str
    case: str
    repeat: int
    rps: float
    mbps: float
    requests: int
    bytes: int
    duration: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    non_2xx: int
    cpu_s: float  # user+system seconds of the server's worker processes during the run
    cpu_split: list[float]  # the same, per worker: shows how evenly connections spread
    wrk_cpu_s: float  # user+system seconds of wrk itself (100% of a core: wrk-bound)
    other_cpu_s: float  # busy CPU seconds of the machine not used by the workers or wrk
    stats: dict[str, int] = field(default_factory=dict)  # pkgedge /stats deltas
    notes: list[str] = field(default_factory=list)


class Interrupted(Exception):
    """Raised by the SIGTERM handler so that cleanup runs."""


# -- processes ---------------------------------------------------------------------------------
class Processes:
    """Every process we start, each in its own session, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], int]] = []

    def start(self, name: str, argv: list[str], stop: int, **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append((name, proc, stop))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        for i, (_, p, sig) in enumerate(self.procs):
            if p is proc:
                del self.procs[i]
                _stop(p, sig, timeout)
                return

    def stop_all(self) -> None:
        while self.procs:
            _, p, sig = self.procs.pop()
            _stop(p, sig, 15.0)


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # anything left in the process group we created (orphaned workers): kill it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes (empty if the process is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def source_fingerprint() -> str:
    """Short hash of the edge's source as measured (others may be editing it)."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "src" / "pkgedge").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def machine_busy_seconds() -> float:
    """Busy (non-idle, non-iowait) CPU seconds of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


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
    head = "<!DOCTYPE html>\n<html><head><title>Links for bench</title></head><body>\n"
    head += "<h1>Links for bench</h1>\n"
    links = []
    for path in (FILE_1M, FILE_100M):
        links.append(
            f'<a href="../../packages/bench/{path.rpartition("/")[2]}'
            f'#sha256={digests[path]}">{path.rpartition("/")[2]}</a><br/>\n'
        )
    i = 0
    tail = "</body></html>\n"
    body = head + "".join(links)
    while True:
        name = f"bench-0.{i}.tar.gz"
        line = f'<a href="../../packages/bench/{name}#sha256={"0" * 64}">{name}</a><br/>\n'
        if len(body) + len(line) + len(tail) > 10 * KB:
            break
        body += line
        i += 1
    body += "<!--" + "x" * max(0, 10 * KB - len(body) - len(tail) - 7) + "-->\n" + tail
    (page_dir / "index.html").write_text(body)
    return digests


NGINX_COMMON = """\
{user}
daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ text/html html; }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
{http}
}}
"""

ORIGIN_HTTP = """\
    server {{
        listen {host}:{port};
        root {root};
        index index.html;
        add_header Cache-Control "max-age=3600, public" always;
    }}
"""

CACHE_HTTP = """\
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:16m max_size=2g inactive=2h
                     use_temp_path=off;
    upstream origin {{
        server {host}:{origin};
        keepalive 32;
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_buffering on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
"""


def start_nginx(
    procs: Processes, d: Path, name: str, workers: int, http_block: str
) -> subprocess.Popen[bytes]:
    for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi", "cache"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""  # the temp dir is private to us
    conf = d / "nginx.conf"
    conf.write_text(NGINX_COMMON.format(user=user, workers=workers, d=d, http=http_block))
    argv = ["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"{name} nginx config invalid:\n{check.stderr}")
    log = open(d / "stderr.log", "wb")  # noqa: SIM115 - closed with the temp dir
    return procs.start(f"{name} nginx", argv, signal.SIGTERM, stdout=log, stderr=log)


@dataclass
class Edge:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    stdout: Path
    stderr: Path


def start_edge(procs: Processes, tmp: Path, origin_port: int, workers: int) -> Edge:
    cache_dir = tmp / "edge-cache"
    cache_dir.mkdir()
    out, err = tmp / "edge-stdout.log", tmp / "edge-stderr.log"
    argv = [
        str(PKGEDGE), "edge",
        "--upstream", f"http://{HOST}:{origin_port}/simple/",
        "--listen", f"{HOST}:0",
        "--admin", f"{HOST}:0",
        "--cache-dir", str(cache_dir),
        "--workers", str(workers),
        "--admin-token", ADMIN_TOKEN,
        "--access-log", "off",
        "--memory-size", "512MB",
        "--memory-object-max", "2MB",
        # protection stays on (its checks are part of the hit path) but wrk, one client,
        # must not be rate limited: bench/protection_cost.py measures what protection costs
        "--rate-limit", "1000000000/1000000000",
        # one client fetching one file thousands of times is what the repeat-download
        # signal exists to throttle: keep that throttle from refusing the benchmark
        "--throttled-rate-limit", "1000000000/1000000000",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = procs.start("pkgedge", argv, signal.SIGTERM, stdout=fo, stderr=fe, env=env)
    deadline = time.monotonic() + 60
    port = admin = None
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if m := re.search(r"pkgedge edge: listening on https?://[^:\s]+:(\d+)", text):
            port = int(m.group(1))
        if m := re.search(r"pkgedge edge: admin on https?://[^:\s]+:(\d+)", text):
            admin = int(m.group(1))
        if re.search(r"pkgedge edge: ready \((\d+) workers\)", text) and port and admin:
            return Edge(proc, port, admin, out, err)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(
        f"pkgedge did not become ready (exit {proc.poll()}):\n{text}\n{err.read_text()[-3000:]}"
    )


# -- HTTP helpers ------------------------------------------------------------------------------
def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """GET; return status, headers (lower-case), sha256 of the body and its length."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        while chunk := resp.read(1 * MB):
            h.update(chunk)
            n += len(chunk)
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        hdrs["x-body-length"] = str(n)
        return resp.status, hdrs, h.hexdigest()
    finally:
        conn.close()


def edge_stats(edge: Edge) -> dict[str, int]:
    conn = http.client.HTTPConnection(HOST, edge.admin_port, timeout=10)
    try:
        conn.request("GET", "/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"pkgedge /stats answered {resp.status}: {body[:200]!r}")
        return {k: int(v) for k, v in json.loads(body).items()}
    finally:
        conn.close()


def warm(name: str, port: int, case: Case, digests: dict[str, str], is_hit: Any) -> list[str]:
    """Request until the cache answers a hit; return notes about anything unexpected."""
    notes = []
    for attempt in range(1, 6):
        status, hdrs, digest = fetch(port, case.path)
        length = int(hdrs["x-body-length"])
        if status != 200:
            notes.append(f"{name} {case.name}: warm-up request {attempt} answered {status}")
        elif case.path in digests and digest != digests[case.path]:
            notes.append(f"{name} {case.name}: body differs from the origin file ({length} B)")
        if status == 200 and is_hit(hdrs):
            if attempt > 2:
                notes.append(f"{name} {case.name}: first hit only at request {attempt}")
            return notes
        time.sleep(0.2 * attempt)
    raise RuntimeError(f"{name} never answered a hit for {case.path}: last headers {hdrs}")


# -- wrk ---------------------------------------------------------------------------------------
_UNITS = {"B": 1, "KB": KB, "MB": MB, "GB": 1024 * MB, "TB": 1024 * 1024 * MB}


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m := re.search(r"Requests/sec:\s*([\d.]+)", text):
        out["rps"] = float(m.group(1))
    if m := re.search(r"Transfer/sec:\s*([\d.]+)([KMGT]?B)", text):
        out["mbps"] = float(m.group(1)) * _UNITS[m.group(2)] / 1e6
    if m := re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text):
        out["non_2xx"] = int(m.group(1))
    if m := re.search(r"^BENCH (.*)$", text, re.MULTILINE):
        out["lua"] = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    return out


def run_wrk(procs: Processes, lua: Path, port: int, case: Case, duration: float) -> dict[str, Any]:
    argv = [
        "wrk", "-t1", f"-c{case.connections}", f"-d{duration:g}s", "--timeout", "30s",
        "-s", str(lua), f"http://{HOST}:{port}{case.path}",
    ]  # fmt: skip
    proc = procs.start("wrk", argv, signal.SIGINT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=duration + 90)
    finally:
        procs.stop(proc, timeout=5)
    text = out.decode(errors="replace") + err.decode(errors="replace")
    parsed = parse_wrk(text)
    if "rps" not in parsed or "lua" not in parsed:
        raise RuntimeError(f"could not parse wrk output:\n{text}")
    return parsed


def measure(
    procs: Processes,
    lua: Path,
    server: str,
    port: int,
    case: Case,
    repeat: int,
    duration: float,
    workers: list[int],
    edge: Edge | None,
) -> Run:
    before = edge_stats(edge) if edge else {}
    cpu0 = [cpu_seconds([p]) for p in workers]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_seconds()
    parsed = run_wrk(procs, lua, port, case, duration)
    busy = machine_busy_seconds() - busy0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    split = [cpu_seconds([p]) - c for p, c in zip(workers, cpu0, strict=True)]
    lua_out = parsed["lua"]
    secs = lua_out["duration_us"] / 1e6
    errors = {k: lua_out[k] for k in ("connect", "read", "write", "status", "timeout")}
    run = Run(
        server=server,
        case=case.name,
        repeat=repeat,
        rps=lua_out["requests"] / secs,
        mbps=lua_out["bytes"] / secs / 1e6,
        requests=lua_out["requests"],
        bytes=lua_out["bytes"],
        duration=secs,
        p50_ms=lua_out["p50_us"] / 1000,
        p99_ms=lua_out["p99_us"] / 1000,
        max_ms=lua_out["max_us"] / 1000,
        errors=errors,
        non_2xx=parsed.get("non_2xx", 0),
        cpu_s=sum(split),
        cpu_split=split,
        wrk_cpu_s=(wrk_cpu := ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime),
        other_cpu_s=max(0.0, busy - sum(split) - wrk_cpu),
    )
    if any(errors.values()) or run.non_2xx:
        run.notes.append(f"wrk errors {errors}, non-2xx {run.non_2xx}")
    if run.requests and abs(run.rps - parsed["rps"]) > 0.02 * run.rps + 1:
        run.notes.append(f"wrk printed {parsed['rps']:.1f} req/s")
    if edge:
        # wrk stops without waiting for its last responses: let the edge finish them
        time.sleep(0.3)
        after = edge_stats(edge)
        keys = ("requests", "hits", "misses", "stale", "passes", "collapsed", "origin_fetches")
        run.stats = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
        # the edge counts admin calls as requests: the second /stats call is in the delta
        run.stats["requests"] -= 1
        non_hits = run.stats["requests"] - run.stats["hits"]
        # requests still in flight when wrk stopped are counted by the edge, not by wrk
        if non_hits > 0 or run.stats["misses"] or run.stats["origin_fetches"]:
            run.notes.append(f"not all hits: {run.stats}")
        if run.stats["requests"] < run.requests:
            run.notes.append(
                f"edge counted {run.stats['requests']} requests, wrk completed {run.requests}"
                " (counters reset? a worker restarted?)"
            )
    return run


# -- reporting ---------------------------------------------------------------------------------
def fmt_bytes(n: float) -> str:
    return f"{n / MB:.1f} MiB"


def memory_of(pids: list[int]) -> list[dict[str, int]]:
    return [{"pid": pid, **proc_status(pid)} for pid in pids]


def edge_workers(edge: Edge) -> list[int]:
    return children(edge.proc.pid)


def nginx_workers(master: subprocess.Popen[bytes]) -> list[int]:
    return [p for p in children(master.pid) if "worker process" in cmdline(p)]


def print_run(run: Run, cores: int) -> None:
    pct = [c / run.duration * 100 if run.duration else 0.0 for c in run.cpu_split]
    cpu = f"{sum(pct):4.0f}% ({'+'.join(f'{p:.0f}' for p in pct)})"
    line = (
        f"  {run.server:8} {run.case:16} #{run.repeat}: {run.rps:10.1f} req/s "
        f"{run.mbps:9.1f} MB/s  p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:7.2f} ms  "
        f"CPU: workers {cpu}, wrk {run.wrk_cpu_s / run.duration * 100:3.0f}%, "
        f"others {run.other_cpu_s / run.duration * 100:3.0f}%"
    )
    print(line, flush=True)
    for note in run.notes:
        print(f"      ! {note}", flush=True)


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for case in CASES:
        row: dict[str, Any] = {"case": case.name, "metric": case.metric, "goal": case.goal}
        for server in ("nginx", "pkgedge"):
            rs = [r for r in runs if r.case == case.name and r.server == server]
            row[f"{server}_rps"] = statistics.median(r.rps for r in rs) if rs else 0.0
            row[f"{server}_mbps"] = statistics.median(r.mbps for r in rs) if rs else 0.0
            # server CPU per unit of work: less sensitive to a noisy machine than throughput
            row[f"{server}_cpu_us_per_req"] = (
                statistics.median(r.cpu_s / r.requests * 1e6 for r in rs if r.requests)
                if any(r.requests for r in rs)
                else 0.0
            )
            row[f"{server}_cpu_s_per_gb"] = (
                statistics.median(r.cpu_s / r.bytes * 1e9 for r in rs if r.bytes)
                if any(r.bytes for r in rs)
                else 0.0
            )
        key = case.metric
        base = row[f"nginx_{key}"]
        row["ratio"] = row[f"pkgedge_{key}"] / base if base else 0.0
        row["pass"] = row["ratio"] >= case.goal
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'case':16} {'nginx req/s':>12} {'nginx MB/s':>11} {'pkgedge req/s':>14} "
        f"{'pkgedge MB/s':>13} {'ratio':>13}  {'goal':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        unit = "req/s" if r["metric"] == "rps" else "MB/s"
        print(
            f"{r['case']:16} {r['nginx_rps']:12.1f} {r['nginx_mbps']:11.1f} "
            f"{r['pkgedge_rps']:14.1f} {r['pkgedge_mbps']:13.1f} "
            f"{r['ratio']:7.2f} {unit:5}  >={r['goal']:.1f}  {'PASS' if r['pass'] else 'MISS'}"
        )
    print("\nserver workers' CPU per request and per GB sent (medians; lower is better):")
    head = f"{'case':16} {'nginx':>22} {'pkgedge':>22} {'pkgedge/nginx':>14}"
    print(head)
    print("-" * len(head))
    for r in rows:
        per_req = r["metric"] == "rps"
        key, unit = ("cpu_us_per_req", "us/req") if per_req else ("cpu_s_per_gb", "CPU-s/GB")
        a, b = r[f"nginx_{key}"], r[f"pkgedge_{key}"]
        print(
            f"{r['case']:16} {a:13.3g} {unit:>8} {b:13.3g} {unit:>8} {(b / a if a else 0.0):14.2f}"
        )


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s runs, 1 repeat")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 8, quick 3)")
    p.add_argument("--repeat", type=int, help="runs per server and case (default 3, quick 1)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of both servers")
    p.add_argument("--json", type=Path, help="save the results as JSON")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 3.0 if args.quick else 8.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.duration <= 0 or args.repeat < 1 or args.workers < 1:
        p.error("--duration, --repeat and --workers must be positive")
    return args


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def cleanup(procs: Processes, tmp: Path) -> Iterator[None]:
    try:
        yield
    finally:
        # a second Ctrl-C must not interrupt the cleanup
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y nginx-light wrk", file=sys.stderr)
            return 2
    if not PKGEDGE.exists():
        print(f"{PKGEDGE} not found: install the project into .venv", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    cores = os.cpu_count() or 1
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="pkgedge-bench-"))
    try:
        with cleanup(procs, tmp):
            return bench(args, procs, tmp, cores)
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted; processes stopped and temp dir removed", file=sys.stderr)
        return 130


def bench(args: argparse.Namespace, procs: Processes, tmp: Path, cores: int) -> int:
    n = args.workers
    total = len(CASES) * args.repeat * 2 * args.duration
    print(
        f"pkgedge vs caching nginx: {n} workers each, wrk 1 thread, {args.duration:g} s x "
        f"{args.repeat} per server and case (~{total / 60:.1f} min of load)"
    )
    print(
        f"note: this machine has {cores} cores shared by wrk and both servers' workers; "
        "absolute numbers are CPU-bound and noisy, compare the ratios"
    )
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average before the run: {load}")
    fingerprint = source_fingerprint()
    print(f"pkgedge source fingerprint (sha256 of src/pkgedge/**/*.py): {fingerprint}")
    t0 = time.monotonic()
    origin_root = tmp / "origin"
    digests = make_origin(origin_root)
    print(f"origin tree written in {time.monotonic() - t0:.1f} s ({tmp})", flush=True)

    origin_port = free_port()
    origin = start_nginx(
        procs,
        tmp / "nginx-origin",
        "origin",
        1,
        ORIGIN_HTTP.format(host=HOST, port=origin_port, root=origin_root),
    )
    wait_port(origin_port, origin, "origin nginx")

    cache_port = free_port()
    nginx = start_nginx(
        procs,
        tmp / "nginx-cache",
        "cache",
        n,
        CACHE_HTTP.format(host=HOST, port=cache_port, origin=origin_port, d=tmp / "nginx-cache"),
    )
    wait_port(cache_port, nginx, "caching nginx")

    edge = start_edge(procs, tmp, origin_port, n)
    print(
        f"origin nginx :{origin_port}, caching nginx :{cache_port}, "
        f"pkgedge :{edge.port} (admin :{edge.admin_port})",
        flush=True,
    )

    # sanity: the origin serves what we think it does
    status, hdrs, _ = fetch(origin_port, PAGE_PATH)
    if status != 200 or not hdrs.get("content-type", "").startswith("text/html"):
        raise RuntimeError(f"origin page: {status} {hdrs}")
    if "max-age=3600" not in hdrs.get("cache-control", ""):
        raise RuntimeError(f"origin does not send Cache-Control: {hdrs}")

    notes: list[str] = []
    for case in CASES:
        notes += warm("nginx", cache_port, case, digests,
                      lambda h: h.get("x-cache-status") == "HIT")  # fmt: skip
        notes += warm("pkgedge", edge.port, case, digests,
                      lambda h: "hit" in h.get("cache-status", "").lower())  # fmt: skip
    warm_stats = edge_stats(edge)
    print(
        "warmed: pkgedge stats "
        + ", ".join(f"{k}={warm_stats.get(k, 0)}" for k in ("hits", "misses", "origin_fetches")),
        flush=True,
    )
    for note in notes:
        print(f"  ! {note}")

    lua = tmp / "done.lua"
    lua.write_text(WRK_LUA)
    edge_pids0 = edge_workers(edge)
    nginx_pids0 = nginx_workers(nginx)
    runs: list[Run] = []
    rss_timeline: list[dict[str, Any]] = []
    for case in CASES:
        print(f"\n{case.name}: {case.path}, {case.connections} connections", flush=True)
        for rep in range(1, args.repeat + 1):
            for server, port in (("nginx", cache_port), ("pkgedge", edge.port)):
                is_edge = server == "pkgedge"
                pids = edge_workers(edge) if is_edge else nginx_workers(nginx)
                run = measure(
                    procs, lua, server, port, case, rep, args.duration, pids,
                    edge if is_edge else None,
                )  # fmt: skip
                if is_edge and edge_workers(edge) != edge_pids0:
                    run.notes.append(
                        f"pkgedge workers changed: {edge_pids0} -> {edge_workers(edge)}"
                    )
                    edge_pids0 = edge_workers(edge)
                if not is_edge and nginx_workers(nginx) != nginx_pids0:
                    run.notes.append("nginx workers changed")
                    nginx_pids0 = nginx_workers(nginx)
                if is_edge:
                    rss = [proc_status(p).get("VmRSS", 0) for p in edge_workers(edge)]
                    rss_timeline.append({"after": f"{case.name} #{rep}", "rss": rss})
                runs.append(run)
                print_run(run, cores)
                time.sleep(0.5)

    rows = summarize(runs)
    print(
        f"\nmedians of {args.repeat} run(s) of {args.duration:g} s; wrk -t1 on the same "
        f"{cores}-core machine; MB = 10^6 bytes; ratio = pkgedge/nginx"
    )
    print_table(rows)

    final = edge_stats(edge)
    shown = ", ".join(f"{k}={final.get(k, 0)}" for k in FINAL_STATS)
    print(f"\npkgedge /stats: {shown}, memory_bytes={fmt_bytes(final.get('memory_bytes', 0))}")
    if final.get("origin_fetches", 0) > len(CASES):
        print(f"  ! {final['origin_fetches']} origin fetches, expected {len(CASES)}")

    mem = {
        "pkgedge_parent": memory_of([edge.proc.pid]),
        "pkgedge_workers": memory_of(edge_workers(edge)),
        "nginx_master": memory_of([nginx.pid]),
        "nginx_workers": memory_of(nginx_workers(nginx)),
    }
    print("\npeak RSS (VmHWM) / current RSS of the worker processes:")
    for key in ("pkgedge_workers", "nginx_workers"):
        items = mem[key]
        desc = ", ".join(
            f"pid {m['pid']}: {fmt_bytes(m.get('VmHWM', 0))} / {fmt_bytes(m.get('VmRSS', 0))}"
            for m in items
        )
        print(f"  {key.replace('_', ' '):16} {desc}")
    parent = mem["pkgedge_parent"][0]
    print(f"  pkgedge parent   {fmt_bytes(parent.get('VmHWM', 0))} peak")
    if rss_timeline:
        print("  pkgedge worker RSS after each pkgedge run (MiB):")
        for point in rss_timeline:
            vals = " ".join(f"{r / MB:7.1f}" for r in point["rss"])
            print(f"    {point['after']:22} {vals}")

    err_text = edge.stderr.read_text(errors="replace").strip()
    if err_text:
        lines = err_text.splitlines()
        print(f"\npkgedge stderr ({len(lines)} lines, last 20):")
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
            "cases": [asdict(c) for c in CASES],
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
    sys.exit(main())
