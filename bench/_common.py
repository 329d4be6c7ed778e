"""Helpers shared by the bench scripts: processes, measurement, wrk, nginx, the pkgedge edge.

Every script runs as ``.venv/bin/python bench/NAME.py``, so this directory is on ``sys.path``
and ``import _common`` finds this module. Nothing here starts anything by itself: a script
calls :func:`run_main` with its benchmark, which gets a :class:`Processes` (every process it
starts, each in its own session, stopped in reverse order at the end) and a private temporary
directory (removed at the end, also on Ctrl-C, SIGTERM or an error).

All load goes to 127.0.0.1.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PKGEDGE = ROOT / ".venv" / "bin" / "pkgedge"
ADMIN_TOKEN = "x"
HOST = "127.0.0.1"
KB, MB = 1024, 1024 * 1024

#: a wrk ``done()`` reporter: one ``BENCH key=value ...`` line that :func:`parse_wrk` reads
WRK_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d bytes=%d duration_us=%d connect=%d read=%d write=%d status=%d "
    .. "timeout=%d p50_us=%d p99_us=%d max_us=%d mean_us=%d\\n",
    summary.requests, summary.bytes, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""

#: pkgedge /stats counters a load run compares before and after
RUN_STATS = ("requests", "hits", "misses", "stale", "passes", "collapsed", "origin_fetches")


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

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int | None:
        """Stop ``proc`` (if we started it); return its exit status."""
        for i, (_, p, sig) in enumerate(self.procs):
            if p is proc:
                del self.procs[i]
                return _stop(p, sig, timeout)
        return proc.poll()

    def stop_all(self) -> None:
        while self.procs:
            _, p, sig = self.procs.pop()
            _stop(p, sig, 15.0)


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> int | None:
    """Stop gracefully with ``sig``, SIGKILL the process group if that takes too long."""
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
    return proc.returncode


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def cleanup(procs: Processes, tmp: Path) -> Iterator[None]:
    """Stop every process and remove ``tmp`` on the way out, immune to a second Ctrl-C."""
    try:
        yield
    finally:
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            procs.stop_all()
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def require(tools: Iterable[str], hint: str = "apt-get install -y nginx-light wrk") -> bool:
    """True if every tool is on PATH and pkgedge is installed in .venv; else say what is not."""
    for tool in tools:
        if shutil.which(tool) is None:
            print(f"{tool} not found: {hint}", file=sys.stderr)
            return False
    if not PKGEDGE.exists():
        print(f"{PKGEDGE} not found: install the project into .venv", file=sys.stderr)
        return False
    return True


def run_main(
    prefix: str, bench: Callable[[Processes, Path], int], *, interrupt_anyway: bool = False
) -> int:
    """Run ``bench(procs, tmp)`` with a fresh temp dir; stop everything and clean up after.

    ``interrupt_anyway``: Ctrl-C interrupts even when started with SIGINT ignored (a
    background job of a shell script)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if interrupt_anyway:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with cleanup(procs, tmp):
            return bench(procs, tmp)
    except (KeyboardInterrupt, Interrupted):
        print("\ninterrupted; processes stopped and temp dir removed", file=sys.stderr)
        return 130


# -- /proc -------------------------------------------------------------------------------------
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


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss, Shared_Clean and Private_Dirty of a process in bytes (smaps_rollup): Pss
    splits each shared page between the processes that map it."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Rss", "Pss", "Shared_Clean", "Private_Dirty"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def memory_of(pids: list[int]) -> list[dict[str, int]]:
    return [{"pid": pid, **proc_status(pid)} for pid in pids]


def cpu_seconds(pids: list[int]) -> float:
    """user+system CPU seconds of ``pids`` (threads included; gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy (non-idle, non-iowait) CPU seconds of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def source_fingerprint() -> str:
    """Short hash of the edge's source as measured (others may be editing it)."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "src" / "pkgedge").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# -- ports -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    """Wait until something listens on ``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


def wait_output(
    path: Path, proc: subprocess.Popen[bytes], ready: Callable[[str], bool], timeout: float = 60
) -> str:
    """Poll the log ``path`` until ``ready(text)``; return the text (raise if ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if ready(text):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"not ready (exit {proc.poll()}) within {timeout} s:\n{text[-3000:]}")


# -- nginx -------------------------------------------------------------------------------------
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

#: the origin: static files with a long freshness lifetime
ORIGIN_HTTP = """\
    server {{
        listen {host}:{port};
        root {root};
        index index.html;
        add_header Cache-Control "max-age=3600, public" always;
    }}
"""

#: the reference cache: nginx ``proxy_cache`` in front of the origin
CACHE_HTTP = """\
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:16m max_size=2g inactive=2h
                     use_temp_path=off;
    upstream origin {{
        server {host}:{origin};
        keepalive 32;
    }}
    server {{
        listen {host}:{port}{listen_opts};
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
    """nginx with NGINX_COMMON around ``http_block``, prefix and logs in ``d``."""
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


def start_origin_nginx(
    procs: Processes, d: Path, root: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """The origin (1 worker) serving ``root``; return it and its port once it listens."""
    port = free_port()
    proc = start_nginx(procs, d, "origin", 1, ORIGIN_HTTP.format(host=HOST, port=port, root=root))
    wait_port(port, proc, "origin nginx")
    return proc, port


def start_cache_nginx(
    procs: Processes,
    d: Path,
    origin_port: int,
    workers: int,
    name: str = "cache",
    reuseport: bool = False,
) -> tuple[subprocess.Popen[bytes], int]:
    """A caching nginx in front of the origin; return it and its port once it listens.

    ``reuseport``: one listening socket per worker, so that the kernel spreads connections
    over the workers (without it, one worker may accept all of wrk's connections)."""
    port = free_port()
    opts = " reuseport" if reuseport else ""
    http_block = CACHE_HTTP.format(host=HOST, port=port, origin=origin_port, d=d, listen_opts=opts)
    proc = start_nginx(procs, d, name, workers, http_block)
    wait_port(port, proc, f"{name} nginx")
    return proc, port


def nginx_workers(master: subprocess.Popen[bytes]) -> list[int]:
    return [p for p in children(master.pid) if "worker process" in cmdline(p)]


def simple_page(project: str, links: Sequence[str], size: int, href: str) -> str:
    """An HTML simple page of exactly ``size`` bytes (ASCII): ``links`` (ready ``<a>`` lines),
    then filler links ``{href}{project}-0.N.tar.gz`` and an HTML comment to pad."""
    body = (
        f"<!DOCTYPE html>\n<html><head><title>Links for {project}</title></head><body>\n"
        f"<h1>Links for {project}</h1>\n" + "".join(links)
    )
    tail = "</body></html>\n"
    i = 0
    while True:
        name = f"{project}-0.{i}.tar.gz"
        line = f'<a href="{href}{name}#sha256={"0" * 64}">{name}</a><br/>\n'
        if len(body) + len(line) + len(tail) > size:
            break
        body += line
        i += 1
    return body + "<!--" + "x" * max(0, size - len(body) - len(tail) - 8) + "-->\n" + tail


# -- the pkgedge edge --------------------------------------------------------------------------
@dataclass
class Edge:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    stdout: Path
    stderr: Path
    #: requests one /stats call adds to the "requests" counter (0 or 1, depending on the
    #: version: admin calls were counted as client requests, they no longer are)
    admin_counted: int = 0

    def workers(self) -> list[int]:
        return children(self.proc.pid)


def edge_argv(
    origin_port: int, cache_dir: Path, workers: int, extra: Sequence[str] = ()
) -> list[str]:
    """``pkgedge edge`` on 127.0.0.1 (random ports), 512 MB memory tier, access log off."""
    return [
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
        *extra,
    ]  # fmt: skip


def start_edge(
    procs: Processes,
    d: Path,
    origin_port: int,
    workers: int,
    extra: Sequence[str] = (),
    name: str = "pkgedge",
    argv: Sequence[str] | None = None,
) -> Edge:
    """Start ``pkgedge edge`` (logs and cache under ``d``); return it once it is ready.

    ``argv``: the command to run instead of :func:`edge_argv` (a wrapper around it)."""
    (d / "cache").mkdir(parents=True)
    out, err = d / "stdout.log", d / "stderr.log"
    if argv is None:
        argv = edge_argv(origin_port, d / "cache", workers, extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = procs.start(name, list(argv), signal.SIGTERM, stdout=fo, stderr=fe, env=env)
    return edge_ready(proc, out, err, name)


def edge_ready(proc: subprocess.Popen[bytes], out: Path, err: Path, name: str) -> Edge:
    """Wait for the edge's "ready" line in ``out``; return where it listens."""
    deadline = time.monotonic() + 60
    port = admin = None
    text = ""
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if m := re.search(r"pkgedge edge: listening on https?://[^:\s]+:(\d+)", text):
            port = int(m.group(1))
        if m := re.search(r"pkgedge edge: admin on https?://[^:\s]+:(\d+)", text):
            admin = int(m.group(1))
        if re.search(r"pkgedge edge: ready \((\d+) workers\)", text) and port and admin:
            edge = Edge(proc, port, admin, out, err)
            first = edge_stats(edge)["requests"]
            edge.admin_counted = edge_stats(edge)["requests"] - first
            return edge
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(
        f"{name} did not become ready (exit {proc.poll()}):\n{text}\n"
        f"{err.read_text(errors='replace')[-3000:]}"
    )


def edge_stats(edge: Edge) -> dict[str, int]:
    """The edge's /stats (admin port, bearer token)."""
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


def is_edge_hit(headers: dict[str, str]) -> bool:
    return "hit" in headers.get("cache-status", "").lower()


def is_nginx_hit(headers: dict[str, str]) -> bool:
    return headers.get("x-cache-status") == "HIT"


# -- HTTP --------------------------------------------------------------------------------------
def fetch(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    """GET; return status, headers (lower-case, plus x-body-length) and the body's sha256."""
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


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    size: int
    connections: int
    metric: str  # "rps" or "mbps": what the ratio and the goal compare
    goal: float


def warm(name: str, port: int, case: Case, digests: dict[str, str], is_hit: Any) -> list[str]:
    """Request until the cache answers a hit; return notes about anything unexpected."""
    notes = []
    hdrs: dict[str, str] = {}
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


def run_wrk(
    procs: Processes,
    lua: Path,
    port: int,
    path: str,
    connections: int,
    duration: float,
    extra: Sequence[str] = (),
    timeout: str = "30s",
) -> dict[str, Any]:
    """``wrk -t1`` for ``duration`` s (killed if it overruns); the parsed output."""
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", timeout,
        "-s", str(lua), *extra, f"http://{HOST}:{port}{path}",
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
    """One wrk run of ``case`` against ``port``, with the CPU of ``workers`` and of wrk, and
    (``edge``) the edge's /stats deltas: a run that was not all hits gets a note."""
    before = edge_stats(edge) if edge else {}
    cpu0 = [cpu_seconds([p]) for p in workers]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_seconds()
    parsed = run_wrk(procs, lua, port, case.path, case.connections, duration)
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
        run.stats = stats_delta(edge, before)
        run.notes += hit_notes(run.stats, run.requests)
    return run


def stats_delta(edge: Edge, before: dict[str, int]) -> dict[str, int]:
    """/stats now minus ``before`` (RUN_STATS), not counting the /stats call itself."""
    # wrk stops without waiting for its last responses: let the edge finish them
    time.sleep(0.3)
    after = edge_stats(edge)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in RUN_STATS}
    # if the edge counts admin calls as requests, the second /stats call is in the delta
    delta["requests"] -= edge.admin_counted
    return delta


def hit_notes(stats: dict[str, int], completed: int) -> list[str]:
    """Notes for a run whose /stats deltas show anything but hits."""
    notes = []
    non_hits = stats["requests"] - stats["hits"]
    # requests still in flight when wrk stopped are counted by the edge, not by wrk
    if non_hits > 0 or stats["misses"] or stats["origin_fetches"]:
        notes.append(f"not all hits: {stats}")
    if stats["requests"] < completed:
        notes.append(
            f"edge counted {stats['requests']} requests, wrk completed {completed}"
            " (counters reset? a worker restarted?)"
        )
    return notes


# -- numbers -----------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    """The median, 0.0 for no values."""
    values = list(values)
    return statistics.median(values) if values else 0.0


def fmt_bytes(n: float) -> str:
    return f"{n / MB:.1f} MiB"


def worker_cpu_line(run: Run) -> str:
    """``CPU: workers 95% (50+45), wrk 98%, others 3%``."""
    pct = [c / run.duration * 100 if run.duration else 0.0 for c in run.cpu_split]
    cpu = f"{sum(pct):4.0f}% ({'+'.join(f'{p:.0f}' for p in pct)})"
    wrk = run.wrk_cpu_s / run.duration * 100 if run.duration else 0.0
    others = run.other_cpu_s / run.duration * 100 if run.duration else 0.0
    return f"CPU: workers {cpu}, wrk {wrk:3.0f}%, others {others:3.0f}%"
