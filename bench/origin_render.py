"""Time for the origin to serve a 10,000-file project's simple page, cold and warm, vs nginx.

Run with ``.venv/bin/python bench/origin_render.py`` (``--quick`` for a short smoke run;
``--files N`` for another project size; ``--profile`` adds a cProfile of one cold call).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C, SIGTERM or an error):

* a data directory whose catalog holds one project (``Bench-Project``) with ``--files`` files:
  ``N/2`` versions with a wheel (with PEP 658 metadata) and an sdist each. The first files go
  through ``Catalog.add_file`` (one transaction each); when the rest would take more than
  about a minute that way, they are inserted in one transaction with SQLAlchemy Core, writing
  exactly the rows ``add_file`` writes (releases, files, one journal row per release and per
  file, ``projects.last_serial``). No blobs: the page only links to them.
* COLD: ``pkgedge origin --upstream off`` is started ``2 x --repeat`` times. Once it answers
  ``/healthz`` (so uvicorn's start-up is not counted), the first request for the page (HTML
  with ``Accept: text/html``, or JSON with pip's Accept header) is timed: the origin has no
  rendered page in memory yet. The first request for the *other* format in the same process
  is timed too: a render with everything else warm (DB connection, statement cache, code).
  Each process starts with HTML half the time and with JSON the other half. Requests use
  ``http.client`` with ``Connection: close`` and are timed until the last body byte.
* WARM: one origin answers the page from its render cache (rendered pages by project,
  serial and media type). 200 sequential requests (interleaved with the same request to
  nginx), then ``wrk -t1 -c8`` per format, alternating origin and nginx.
* REFERENCE: the exact bytes the origin returned for each format, as static files served by
  nginx (1 worker, sendfile, access log off, the origin's Content-Type as ``default_type``).
* BREAKDOWN: in a fresh process (``Origin(settings)`` as ``pkgedge origin`` builds it, no
  HTTP), the steps of the page handler are timed one by one: project row, file rows, release
  rows, render, ETag. The file query is also run with the ``sqlite3`` module alone, which
  separates SQLite's time from SQLAlchemy's row handling.

The load generator, the client and the servers share this machine's cores: absolute numbers
are noisy (medians are shown), compare the ratios. In normal operation the pkgedge edge in
front of the origin answers this page from its cache; the origin renders it once per change of
the project (an upload, a yank, ...), then serves it from its render cache when the edge
revalidates or refills.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common as c
from _common import Processes, free_port

PKGEDGE = c.PKGEDGE
HOST = c.HOST

DISPLAY_NAME = "Bench-Project"
PROJECT = "bench-project"  # PEP 503 normalised
DIST = "bench_project"  # as in wheel and sdist filenames
PAGE = f"/simple/{PROJECT}/"
RELEASE_METADATA: dict[str, Any] = {
    "metadata_version": "2.1",
    "summary": "A project with very many files",
    "requires_python": ">=3.8",
    "license": "MIT",
    "classifiers": ["Programming Language :: Python :: 3"],
}
FORMATS = ("html", "json")
ACCEPT = {
    "html": "text/html",
    # what pip sends
    "json": "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01",
}
EXPECTED_TYPE = {"html": "text/html", "json": "application/vnd.pypi.simple.v1+json"}
ADD_FILE_BUDGET = 60.0  # seconds: above this estimate, insert the rest in one transaction
PROBE_FILES = 40  # files added with Catalog.add_file to estimate its rate

NGINX_CONF = """\
{user}
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ }}
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
    server {{
        listen {host}:{port};
        root {root};
        location = /page.html {{ default_type "{html_type}"; }}
        location = /page.json {{ default_type "{json_type}"; }}
    }}
}}
"""


# -- the catalog -------------------------------------------------------------------------------
def file_rows(n: int) -> list[Any]:
    """``n`` FileRows: versions 1.0, 1.1, ... with a wheel then an sdist each."""
    from pkgedge.index.model import FileRow
    from pkgedge.index.names import blob_key

    base = datetime(2020, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        v, wheel = divmod(i, 2)[0], i % 2 == 0
        version = f"{1 + v // 100}.{v % 100}"
        filename = f"{DIST}-{version}" + ("-py3-none-any.whl" if wheel else ".tar.gz")
        raw = filename.encode()
        sha = hashlib.sha256(raw).hexdigest()
        rows.append(
            FileRow(
                project=PROJECT,
                version=version,
                filename=filename,
                packagetype="bdist_wheel" if wheel else "sdist",
                python_version="py3" if wheel else "source",
                size=20_000 + (i * 7919) % 500_000,
                sha256=sha,
                upload_time=base + timedelta(hours=3 * v, seconds=17 * (i % 2), microseconds=i),
                blob_key=blob_key(sha, filename),
                requires_python=">=3.8",
                blake2b_256=hashlib.blake2b(raw, digest_size=32).hexdigest(),
                md5=hashlib.md5(raw).hexdigest(),
                metadata_sha256=hashlib.sha256(b"METADATA " + raw).hexdigest() if wheel else None,
            )
        )
    return rows


def bulk_insert(catalog: Any, rows: list[Any]) -> None:
    """Insert ``rows`` in one transaction, writing what ``Catalog.add_file`` writes for each.

    ``add_file`` per file: a release row (with a "new release" journal entry) for a version
    not seen before, the file row, an "add <python_version> file <filename>" journal entry,
    and ``projects.last_serial`` set to the newest serial. The project already exists (the
    first files were added with ``add_file``)."""
    from packaging.utils import canonicalize_version
    from sqlalchemy import func, select

    from pkgedge.index.tables import files, journal, projects, releases

    now = datetime.now(UTC)
    with catalog.engine.connect() as conn:
        known = set(
            conn.execute(select(releases.c.version).where(releases.c.project == PROJECT)).scalars()
        )
    release_values, file_values, journal_values = [], [], []
    for row in rows:
        if row.version not in known:
            known.add(row.version)
            release_values.append(
                {
                    "project": PROJECT,
                    "version": row.version,
                    "canonical_version": canonicalize_version(row.version),
                    "created": now,
                    "metadata": dict(RELEASE_METADATA),
                }
            )
            journal_values.append(
                {"project": PROJECT, "version": row.version, "filename": None,
                 "action": "new release", "time": now}
            )  # fmt: skip
        file_values.append({c.name: getattr(row, c.name) for c in files.c})
        journal_values.append(
            {"project": PROJECT, "version": row.version, "filename": row.filename,
             "action": f"add {row.python_version} file {row.filename}", "time": now}
        )  # fmt: skip
    with catalog.engine.begin() as conn:
        if release_values:
            conn.execute(releases.insert(), release_values)
        conn.execute(files.insert(), file_values)
        conn.execute(journal.insert(), journal_values)  # in order: serials ascend
        serial = conn.execute(select(func.max(journal.c.serial))).scalar()
        conn.execute(projects.update().where(projects.c.name == PROJECT).values(last_serial=serial))


def build_catalog(data: Path, n: int, mode: str) -> dict[str, Any]:
    """The catalog in ``data/catalog.db`` (where ``pkgedge origin --data-dir`` looks)."""
    from sqlalchemy import func, select

    from pkgedge.index.catalog import Catalog
    from pkgedge.index.tables import files

    t0 = time.perf_counter()
    rows = file_rows(n)
    catalog = Catalog(f"sqlite:///{data}/catalog.db")
    try:
        catalog.migrate()
        # add_file while the whole catalog would take at most ADD_FILE_BUDGET that way
        # (re-estimated as the tables grow), then the rest in one transaction
        t1 = time.perf_counter()
        done = 0
        for row in rows:
            if done >= PROBE_FILES and mode != "add-file" and done % 250 in (0, PROBE_FILES):
                projected = (time.perf_counter() - t1) / done * len(rows)
                if mode == "bulk" or projected > ADD_FILE_BUDGET:
                    break
            catalog.add_file(DISPLAY_NAME, RELEASE_METADATA, row)
            done += 1
        per_file = (time.perf_counter() - t1) / max(done, 1)
        method = f"Catalog.add_file ({per_file * 1000:.1f} ms/file)"
        rest = rows[done:]
        if rest:
            bulk_insert(catalog, rest)
            method = (
                f"{done} x Catalog.add_file ({per_file * 1000:.1f} ms/file: all {len(rows)} would "
                f"take ~{per_file * len(rows):.0f} s), then {len(rest)} in one SQLAlchemy Core "
                "transaction"
            )
        with catalog.engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(files).where(files.c.project == PROJECT)
            ).scalar()
        serial = catalog.project_serial(PROJECT)
        versions = len(catalog.releases(PROJECT))
    finally:
        catalog.close()
    if count != n:
        raise RuntimeError(f"catalog holds {count} files, expected {n}")
    return {
        "seconds": time.perf_counter() - t0,
        "method": method,
        "serial": serial,
        "versions": versions,
        "db_bytes": sum(p.stat().st_size for p in data.glob("catalog.db*")),
    }


# -- servers -----------------------------------------------------------------------------------
@dataclass
class Origin:
    proc: subprocess.Popen[bytes]
    port: int
    start_s: float  # process start until /healthz answered
    stdout: Path
    stderr: Path


def start_origin(procs: Processes, data: Path, logs: Path, tag: str) -> Origin:
    out, err = logs / f"origin-{tag}.out", logs / f"origin-{tag}.err"
    argv = [str(PKGEDGE), "origin", "--listen", f"{HOST}:0", "--data-dir", str(data),
            "--upstream", "off"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = procs.start("origin", argv, signal.SIGTERM, stdout=fo, stderr=fe, env=env)
    deadline = time.monotonic() + 60
    port = None
    text = ""
    while time.monotonic() < deadline and proc.poll() is None:
        text = out.read_text(errors="replace")
        if m := re.search(r"pkgedge origin: listening on http://[^:\s]+:(\d+)", text):
            port = int(m.group(1))
        if port and "pkgedge origin: ready" in text:
            break
        time.sleep(0.02)
    else:
        procs.stop(proc, 5)
        raise RuntimeError(
            f"origin did not become ready (exit {proc.poll()}):\n{text}\n"
            f"{err.read_text(errors='replace')[-3000:]}"
        )
    # "ready" is printed before uvicorn starts serving: wait for a request that touches
    # neither the catalog nor the renderer, so that the start-up is not counted as cold time
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, "/healthz", "*/*").status == 200:
                return Origin(proc, port, time.perf_counter() - t0, out, err)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    procs.stop(proc, 5)
    raise RuntimeError(f"origin never answered /healthz:\n{err.read_text(errors='replace')}")


def stop_origin(procs: Processes, origin: Origin, notes: list[str]) -> None:
    code = procs.stop(origin.proc)
    err = origin.stderr.read_text(errors="replace").strip()
    if code == -signal.SIGTERM:
        # uvicorn re-raises the signal after its graceful shutdown
        note = "the origin exits by SIGTERM (status -15) after uvicorn's graceful shutdown"
        if note not in notes:
            notes.append(note)
    elif code not in (0, None):
        notes.append(f"origin ({origin.stdout.name}) exited with {code}")
    if err:
        notes.append(f"origin stderr ({origin.stderr.name}): {err[-2000:]}")


def start_nginx(
    procs: Processes, d: Path, bodies: dict[str, bytes], types: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    root = d / "root"
    root.mkdir(parents=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True)
    for fmt in FORMATS:
        (root / f"page.{fmt}").write_bytes(bodies[fmt])
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # the temp dir is private to us
    conf = d / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user=user, d=d, host=HOST, port=port, root=root,
            html_type=types["html"], json_type=types["json"],
        )
    )  # fmt: skip
    argv = ["nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx config invalid:\n{check.stderr}")
    log = open(d / "stderr.log", "wb")  # noqa: SIM115 - closed with the temp dir
    proc = procs.start("nginx", argv, signal.SIGTERM, stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return proc, port
        time.sleep(0.05)
    raise RuntimeError("nginx did not listen")


# -- HTTP --------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    total_s: float  # connect, request, whole body read
    ttfb_s: float  # until the status line and headers were read


def get(port: int, path: str, accept: str) -> Reply:
    """One GET on a new connection (``Connection: close``), timed until the body's end."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        conn.request("GET", path, headers={"Accept": accept, "Connection": "close"})
        resp = conn.getresponse()
        t1 = time.perf_counter()
        body = resp.read()
        t2 = time.perf_counter()
        return Reply(resp.status, resp.getheader("content-type", ""), body, t2 - t0, t1 - t0)
    finally:
        conn.close()


def check_page(fmt: str, reply: Reply, n: int, what: str) -> None:
    if reply.status != 200:
        raise RuntimeError(f"{what}: {fmt} page answered {reply.status}: {reply.body[:300]!r}")
    if not reply.content_type.startswith(EXPECTED_TYPE[fmt]):
        raise RuntimeError(f"{what}: {fmt} page has Content-Type {reply.content_type!r}")
    is_json = fmt == "json"
    count = len(json.loads(reply.body)["files"]) if is_json else reply.body.count(b"<a href=")
    if count != n:
        raise RuntimeError(f"{what}: {fmt} page lists {count} files, expected {n}")


# -- wrk ---------------------------------------------------------------------------------------
def run_wrk(
    procs: Processes, lua: Path, port: int, path: str, accept: str, duration: float
) -> dict[str, float]:
    accept_header = ("-H", f"Accept: {accept}")
    v = c.run_wrk(procs, lua, port, path, 8, duration, accept_header, timeout="20s")["lua"]
    secs = v["duration_us"] / 1e6
    return {
        "rps": v["requests"] / secs if secs else 0.0,
        "mean_ms": v["mean_us"] / 1000,
        "p99_ms": v["p99_us"] / 1000,
        "requests": v["requests"],
        "bytes": v["bytes"],
        "errors": sum(v[k] for k in ("connect", "read", "write", "timeout")),
        "non_2xx": v["status"],
        "mbps": v["bytes"] / secs / 1e6 if secs else 0.0,
    }


# -- the in-process breakdown (runs in a fresh child process) ----------------------------------
def breakdown(data: Path, profile: bool) -> int:
    """Print how long each step of the page handler takes, cold then warm, without HTTP."""
    import cProfile
    import pstats

    from starlette.requests import Request

    from pkgedge.index import simple, simpleroutes
    from pkgedge.index.app import Origin as OriginApp
    from pkgedge.index.settings import build_origin_settings

    settings = build_origin_settings(
        {"listen": f"{HOST}:0", "data_dir": str(data), "upstream": "off"}
    )
    ms = 1000.0

    def request(fmt: str) -> Request:
        headers = [(b"accept", ACCEPT[fmt].encode()), (b"host", b"bench")]
        scope = {"type": "http", "method": "GET", "path": PAGE, "raw_path": PAGE.encode(),
                 "query_string": b"", "headers": headers,
                 "path_params": {"name": PROJECT}}  # fmt: skip
        return Request(scope)

    t0 = time.perf_counter()
    origin = OriginApp(settings)
    took = (time.perf_counter() - t0) * ms
    print(f"  Origin(settings) (opens the catalog, migrate()): {took:.0f} ms")

    if profile:
        prof = cProfile.Profile()
        prof.enable()
        resp = simpleroutes.project_page(origin, request("json"))
        prof.disable()
        print(f"  cProfile of the first simpleroutes.project_page call (json, {len(resp.body)} B):")
        stats = pstats.Stats(prof, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(18)
        return 0

    def steps(fmt: str) -> tuple[dict[str, float], bytes]:
        media = simple.negotiate(ACCEPT[fmt], None)
        assert media is not None
        out: dict[str, float] = {}
        t = time.perf_counter()
        project = origin.hosted(PROJECT)
        assert project is not None
        t, out["project row"] = time.perf_counter(), time.perf_counter() - t
        files = origin.catalog.project_files(PROJECT)
        t, out["file rows (project_files)"] = time.perf_counter(), time.perf_counter() - t
        versions = [r.version for r in origin.catalog.releases(PROJECT)]
        t, out["release rows (releases)"] = time.perf_counter(), time.perf_counter() - t
        body = simple.render_project_page(project, files, versions, media, file_url=origin.file_url)
        t, out["render"] = time.perf_counter(), time.perf_counter() - t
        simple.etag_for(body)
        out["etag (blake2b of the body)"] = time.perf_counter() - t
        return out, body

    first, _ = steps(FORMATS[0])
    other, _ = steps(FORMATS[1])
    warm: dict[str, list[float]] = {}
    for _ in range(5):
        for fmt in FORMATS:
            for k, v in steps(fmt)[0].items():
                warm.setdefault(k, []).append(v)
    print(
        f"  handler steps, in ms ({FORMATS[0]} first in a fresh process, then {FORMATS[1]}, "
        "then the median of 10 more renders with warm caches):"
    )
    print(f"    {'step':30} {'first':>8} {'other fmt':>10} {'warm':>8}")
    for k in first:
        print(
            f"    {k:30} {first[k] * ms:8.1f} {other[k] * ms:10.1f} "
            f"{statistics.median(warm[k]) * ms:8.1f}"
        )
    tot = [sum(d.values()) * ms for d in (first, other)]
    tot.append(sum(map(statistics.median, warm.values())) * ms)
    print(f"    {'total':30} {tot[0]:8.1f} {tot[1]:10.1f} {tot[2]:8.1f}")

    # the same file query with the sqlite3 module alone: SQLite's share of project_files
    db = sqlite3.connect(data / "catalog.db")
    sql = (
        "SELECT f.project, f.version, f.filename, f.packagetype, f.python_version, f.size, "
        "f.sha256, f.upload_time, f.blob_key, f.requires_python, f.blake2b_256, f.md5, "
        "f.metadata_sha256, r.yanked, r.yanked_reason FROM files f JOIN releases r "
        "ON f.project = r.project AND f.version = r.version WHERE f.project = ?"
    )
    times = []
    for _ in range(5):
        t = time.perf_counter()
        n = len(db.execute(sql, (PROJECT,)).fetchall())
        times.append(time.perf_counter() - t)
    db.close()
    print(
        f"    the file query with sqlite3 alone ({n} rows, fetchall): "
        f"median {statistics.median(times) * ms:.1f} ms"
    )

    # the handler itself, render-cache hit: what every warm request costs in Python
    for fmt in FORMATS:
        simpleroutes.project_page(origin, request(fmt))  # fills the cache
        hits, etags, rows = [], [], []
        for _ in range(20):
            t = time.perf_counter()
            resp = simpleroutes.project_page(origin, request(fmt))
            hits.append(time.perf_counter() - t)
            t = time.perf_counter()
            simple.etag_for(bytes(resp.body))
            etags.append(time.perf_counter() - t)
            t = time.perf_counter()
            origin.hosted(PROJECT)
            rows.append(time.perf_counter() - t)
        print(
            f"  simpleroutes.project_page, render-cache hit ({fmt}, {len(resp.body)} B): median "
            f"{statistics.median(hits) * ms:.2f} ms; alone, its ETag (blake2b of the whole "
            f"body, recomputed per request) takes {statistics.median(etags) * ms:.2f} ms and "
            f"its project row query {statistics.median(rows) * ms:.2f} ms"
        )
    return 0


# -- main --------------------------------------------------------------------------------------
@dataclass
class Results:
    sizes: dict[str, int] = field(default_factory=dict)
    cold: dict[str, list[float]] = field(default_factory=dict)
    cold_ttfb: dict[str, list[float]] = field(default_factory=dict)
    other: dict[str, list[float]] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)
    seq: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    wrk: dict[tuple[str, str], list[dict[str, float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=10_000, help="files of the project")
    p.add_argument("--repeat", type=int, help="origin restarts per format (default 5, quick 2)")
    p.add_argument("--quick", action="store_true", help="fewer repeats, shorter wrk runs")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5, quick 2)")
    p.add_argument("--wrk-repeat", type=int, help="wrk runs per server/format (default 3, quick 1)")
    p.add_argument("--requests", type=int, help="sequential warm requests (default 200, quick 50)")
    p.add_argument(
        "--insert",
        choices=("auto", "add-file", "bulk"),
        default="auto",
        help="how to fill the catalog (auto: add_file unless that takes over ~60 s)",
    )
    p.add_argument("--profile", action="store_true", help="cProfile one cold handler call")
    p.add_argument("--_breakdown", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.repeat = args.repeat or (2 if quick else 5)
    args.duration = args.duration or (2.0 if quick else 5.0)
    args.wrk_repeat = args.wrk_repeat or (1 if quick else 3)
    args.requests = args.requests or (50 if quick else 200)
    if min(args.files, args.repeat, args.wrk_repeat, args.requests) < 1 or args.duration <= 0:
        p.error("--files, --repeat, --duration, --wrk-repeat and --requests must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._breakdown is not None:
        return breakdown(args._breakdown, args.profile)
    if not c.require(("nginx", "wrk")):
        return 2
    return c.run_main(
        "pkgedge-origin-render-", lambda procs, tmp: bench(args, procs, tmp), interrupt_anyway=True
    )


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else math.nan


def run_child(procs: Processes, data: Path, profile: bool) -> str:
    argv = [sys.executable, str(Path(__file__).resolve()), "--_breakdown", str(data)]
    if profile:
        argv.append("--profile")
    proc = procs.start(
        "breakdown", argv, signal.SIGTERM, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        procs.stop(proc, 5)
    text = out.decode(errors="replace").rstrip()
    if proc.returncode != 0:
        text += f"\n  ! breakdown exited with {proc.returncode}"
    return text


def bench(args: argparse.Namespace, procs: Processes, tmp: Path) -> int:
    n = args.files
    res = Results()
    print(
        f"origin simple page of one project with {n} files: cold (x{args.repeat} restarts per "
        f"format) and warm, vs nginx serving the same bytes as static files"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the run")
    data = tmp / "data"
    data.mkdir()
    logs = tmp / "logs"
    logs.mkdir()
    info = build_catalog(data, n, args.insert)
    print(
        f"catalog: {n} files in {info['versions']} versions, serial {info['serial']}, "
        f"{info['db_bytes'] / 1e6:.1f} MB, built in {info['seconds']:.1f} s via {info['method']}",
        flush=True,
    )

    # -- cold ----------------------------------------------------------------------------------
    digests: dict[str, set[str]] = {fmt: set() for fmt in FORMATS}
    bodies: dict[str, bytes] = {}
    types: dict[str, str] = {}
    print("\ncold (fresh origin process per row; ms until the last byte, ttfb in brackets):")
    for rep in range(args.repeat):
        for first in FORMATS:
            second = FORMATS[1 - FORMATS.index(first)]
            origin = start_origin(procs, data, logs, f"cold{rep}-{first}")
            res.starts.append(origin.start_s)
            try:
                a = get(origin.port, PAGE, ACCEPT[first])
                b = get(origin.port, PAGE, ACCEPT[second])
            finally:
                stop_origin(procs, origin, res.notes)
            for fmt, reply in ((first, a), (second, b)):
                check_page(fmt, reply, n, "origin")
                digests[fmt].add(hashlib.sha256(reply.body).hexdigest())
                bodies[fmt], types[fmt] = reply.body, reply.content_type
            res.cold.setdefault(first, []).append(a.total_s)
            res.cold_ttfb.setdefault(first, []).append(a.ttfb_s)
            res.other.setdefault(second, []).append(b.total_s)
            print(
                f"  #{rep + 1} {first:4} first: {a.total_s * 1000:7.1f} ({a.ttfb_s * 1000:6.1f})"
                f"   then {second:4}: {b.total_s * 1000:7.1f} ({b.ttfb_s * 1000:6.1f})"
                f"   [origin up in {origin.start_s:.2f} s]",
                flush=True,
            )
    for fmt in FORMATS:
        res.sizes[fmt] = len(bodies[fmt])
        if len(digests[fmt]) != 1:
            res.notes.append(f"{fmt}: {len(digests[fmt])} different bodies across restarts")

    # -- warm ----------------------------------------------------------------------------------
    origin = start_origin(procs, data, logs, "warm")
    for fmt in FORMATS:
        reply = get(origin.port, PAGE, ACCEPT[fmt])  # fills the render cache
        check_page(fmt, reply, n, "origin")
        if reply.body != bodies[fmt]:
            res.notes.append(f"{fmt}: the warm origin's body differs from the cold one")
    nginx, nginx_port = start_nginx(procs, tmp / "nginx", bodies, types)
    paths = {"origin": {f: PAGE for f in FORMATS}, "nginx": {f: f"/page.{f}" for f in FORMATS}}
    ports = {"origin": origin.port, "nginx": nginx_port}
    for fmt in FORMATS:
        reply = get(nginx_port, paths["nginx"][fmt], ACCEPT[fmt])
        check_page(fmt, reply, n, "nginx")
        if reply.body != bodies[fmt] or reply.content_type != types[fmt]:
            raise RuntimeError(f"nginx serves another {fmt} page: {reply.content_type!r}")

    print(f"\nwarm: {args.requests} sequential requests per format, origin and nginx interleaved")
    for fmt in FORMATS:
        for _ in range(args.requests):
            for server in ("origin", "nginx"):
                reply = get(ports[server], paths[server][fmt], ACCEPT[fmt])
                if reply.status != 200 or len(reply.body) != res.sizes[fmt]:
                    res.notes.append(f"{server} {fmt}: {reply.status}, {len(reply.body)} B")
                res.seq.setdefault((server, fmt), []).append(reply.total_s)
        print(
            f"  {fmt:4}: origin median {median_ms(res.seq['origin', fmt]):.2f} ms, "
            f"nginx median {median_ms(res.seq['nginx', fmt]):.2f} ms",
            flush=True,
        )

    lua = tmp / "done.lua"
    lua.write_text(c.WRK_LUA)
    print(f"\nwarm: wrk -t1 -c8 -d{args.duration:g}s, {args.wrk_repeat} run(s) per server/format")
    for rep in range(args.wrk_repeat):
        for fmt in FORMATS:
            for server in ("nginx", "origin"):
                r = run_wrk(
                    procs, lua, ports[server], paths[server][fmt], ACCEPT[fmt], args.duration
                )
                res.wrk.setdefault((server, fmt), []).append(r)
                if r["errors"] or r["non_2xx"]:
                    res.notes.append(f"wrk {server} {fmt} #{rep + 1}: {r}")
                # wrk also counts the bytes of the responses cut off when it stops
                per_response = r["bytes"] / r["requests"] if r["requests"] else 0.0
                if not res.sizes[fmt] <= per_response < res.sizes[fmt] * 1.1:
                    res.notes.append(f"wrk {server} {fmt}: {per_response:.0f} B/response")
                print(
                    f"  #{rep + 1} {fmt:4} {server:6}: {r['rps']:8.1f} req/s, mean "
                    f"{r['mean_ms']:7.2f} ms, p99 {r['p99_ms']:7.2f} ms, "
                    f"{r['mbps']:7.0f} MB/s",
                    flush=True,
                )
                time.sleep(0.3)
    stop_origin(procs, origin, res.notes)
    procs.stop(nginx)
    nginx_err = (tmp / "nginx" / "error.log").read_text(errors="replace").strip()
    if nginx_err:
        res.notes.append(f"nginx error.log: {nginx_err[-1000:]}")

    print_table(res, args)

    print("\nbreakdown in a fresh process, no HTTP (the steps of simpleroutes.project_page):")
    print(run_child(procs, data, False), flush=True)
    if args.profile:
        print(run_child(procs, data, True), flush=True)

    if res.notes:
        print("\nnotes:")
        for note in res.notes:
            print(f"  ! {note}")
    return 0


def print_table(res: Results, args: argparse.Namespace) -> None:
    print(
        f"\nmedians; cold: {args.repeat} fresh origins per format; warm latency: "
        f"{args.requests} sequential requests (new connection each); req/s: wrk -t1 -c8, "
        f"{args.wrk_repeat} x {args.duration:g} s; the client shares the machine's cores"
    )
    head = (
        f"{'format':6} {'size':>8} | {'cold':>7} {'cold-oth':>8} {'warm':>7} {'nginx':>6} | "
        f"{'cold/ngx':>8} {'warm/ngx':>8} | {'origin r/s':>10} {'nginx r/s':>10} {'ratio':>6}"
    )
    print(head)
    print(f"{'':6} {'':>8} | {'(ms)':>7} {'(ms)':>8} {'(ms)':>7} {'(ms)':>6} |")
    print("-" * len(head))
    for fmt in FORMATS:
        cold, other = median_ms(res.cold[fmt]), median_ms(res.other[fmt])
        warm, ngx = median_ms(res.seq["origin", fmt]), median_ms(res.seq["nginx", fmt])
        o_rps = statistics.median(r["rps"] for r in res.wrk["origin", fmt])
        n_rps = statistics.median(r["rps"] for r in res.wrk["nginx", fmt])
        print(
            f"{fmt:6} {res.sizes[fmt] / 1e6:6.2f}MB | {cold:7.1f} {other:8.1f} {warm:7.2f} "
            f"{ngx:6.2f} | {cold / ngx:8.1f} {warm / ngx:8.2f} | {o_rps:10.1f} {n_rps:10.1f} "
            f"{o_rps / n_rps if n_rps else math.nan:6.3f}"
        )
    print("(size: MB = 10^6 bytes; ratio = origin req/s / nginx req/s)")
    for fmt in FORMATS:
        o = statistics.median(r["mean_ms"] for r in res.wrk["origin", fmt])
        g = statistics.median(r["mean_ms"] for r in res.wrk["nginx", fmt])
        print(
            f"  {fmt}: cold ttfb median {median_ms(res.cold_ttfb[fmt]):.1f} ms; wrk mean latency "
            f"(8 connections) origin {o:.2f} ms, nginx {g:.2f} ms"
        )
    print(
        f"  origin start-up until /healthz (not counted above): median "
        f"{statistics.median(res.starts):.2f} s"
    )
    print(
        "In normal operation the pkgedge edge in front of the origin serves this page from its "
        "cache;\nthe origin renders it once per change of the project, and answers the edge's "
        "refills from its render cache."
    )


if __name__ == "__main__":
    sys.exit(main())
