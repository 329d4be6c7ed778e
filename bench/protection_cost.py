"""What abuse protection costs on cache hits: req/s with all protections on vs off.

Run with ``.venv/bin/python bench/protection_cost.py`` (``--quick``: one 3 s round).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error):

* an origin nginx (reused from ``bench/edge_vs_nginx.py``) serving, with ``Cache-Control:
  max-age=3600, public``, a 10 KB simple page (``/simple/bench/``) and a 1 MB file of random
  bytes, both under ``/files/bench/`` (a file route) and ``/simple/bench/`` (the same bytes);
* three ``pkgedge edge`` processes on that origin (``--workers N`` each, default 1 as the
  goal is stated for one worker; 512 MB memory tier, access log off), differing only in
  protection:

  - **A** ``--protection off``: the guard is not even constructed;
  - **B** ``--protection enforce --rate-limit 1000000000/1000000000``: client identity, the
    penalty box, the token bucket, the User-Agent class and the behaviour signals all run on
    every request, but the bucket never runs dry: we measure the checks, not refusals;
  - **C** as B, plus ``--trusted-proxies 127.0.0.0/8`` and ``--acl-file`` with a few hundred
    rules (allow/deny networks of many prefix lengths, deny-UA regexes), none matching the
    benchmark's client: the X-Forwarded-For walk, the ACL address index and every UA regex run.

wrk sends the same two headers to all three edges (so request parsing costs the same):
``X-Forwarded-For: 198.51.100.23`` (believed by C only: its client key is that address; A and
B key on the peer, 127.0.0.1) and pip 24's User-Agent (linehaul JSON, classified as "pip").

Each edge is warmed until it answers ``Cache-Status: ...; hit`` (bodies checked against the
origin files), C's ACL is checked to refuse a denied User-Agent and a denied X-Forwarded-For
address (403), then each case is loaded with ``wrk -t1`` on A, B, C in turn, ``--repeat``
rounds. Cases, in this order:

1. ``10 KB page hit``: ``/simple/bench/``, 50 connections;
2. ``1 MB /simple/ hit``: the 1 MB file under ``/simple/`` (16 connections): the control for
   large hits, since the guard feeds only the enumeration signal (distinct pages) there;
3. ``1 MB /files/ hit``: the 1 MB file under ``/files/`` (16 connections): the guard feeds the
   "repeat downloads" signal (same file, same client, more than 30 times an hour: a CI loop
   without a cache), which throttles the client for 300 s. One client hammering one file
   *should* trip it; this case runs last so that a throttle cannot spoil the other cases, and
   the table flags its ratios when B or C refused anything.

The tables show medians of req/s, MB/s and the edges' worker CPU per request (less sensitive
to a noisy machine than throughput), and the ratios B/A and C/A. ``/stats`` of every edge is
read around every run and at the end: ``rate_limited``, ``denied``, ``signals`` (and
``penalized``, ``observed``) must stay 0 during the load for a valid cost measurement.

With 2 cores, wrk (1 thread) and the edge's workers compete for CPU: absolute numbers are
low and noisy; compare the ratios, measured alternately under the same conditions.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common as base

HOST = base.HOST
KB, MB = base.KB, base.MB

PAGE_PATH = "/simple/bench/"
FILE_NAME = "bench-1.0-1mb.tar.gz"
FILE_SIMPLE = f"/simple/bench/{FILE_NAME}"
FILE_FILES = f"/files/bench/{FILE_NAME}"

#: what wrk (and the warm-up) sends to every edge
CLIENT_XFF = "198.51.100.23"
PIP_UA = 'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7","ci":null}'
HEADERS = {"User-Agent": PIP_UA, "X-Forwarded-For": CLIENT_XFF}
#: requests C must refuse (403) to show that its ACL and X-Forwarded-For handling are live
DENIED_UA = "sqlmap/1.7.2#stable (https://sqlmap.org)"
DENIED_XFF = "203.0.113.9"

CASES = (
    base.Case("10 KB page hit", PAGE_PATH, 10 * KB, 50, "rps", 0.0),
    base.Case("1 MB /simple/ hit", FILE_SIMPLE, 1 * MB, 16, "rps", 0.0),
    base.Case("1 MB /files/ hit", FILE_FILES, 1 * MB, 16, "rps", 0.0),
)

PROTECTION_STATS = ("rate_limited", "denied", "signals", "penalized", "observed")
UNLIMITED = "1000000000/1000000000"


@dataclass(frozen=True)
class EdgeSpec:
    label: str  # A, B, C
    name: str  # for the tables
    args: tuple[str, ...]


@dataclass
class Measured:
    edge: str
    case: str
    repeat: int
    run: base.Run
    protection: dict[str, int] = field(default_factory=dict)  # /stats deltas of this run

    @property
    def refused(self) -> int:
        return self.run.non_2xx + sum(self.run.errors.values())

    @property
    def tripped(self) -> bool:
        return bool(self.refused or any(self.protection.values()))


# -- the ACL of edge C -------------------------------------------------------------------------
BAD_AGENTS = (
    r"(?i)sqlmap",
    r"(?i)nikto",
    r"(?i)masscan",
    r"(?i)zgrab",
    r"(?i)nuclei",
    r"(?i)httrack",
    r"(?i)wpscan",
    r"(?i)dirbuster",
    r"(?i)gobuster",
    r"(?i)\bscrapy/",
    r"(?i)python-requests/1\.",
    r"(?i)go-http-client/1\.0",
    r"(?i)libwww-perl",
    r"(?i)petalbot",
    r"(?i)mj12bot",
    r"(?i)ahrefsbot",
    r"(?i)semrushbot",
    r"(?i)dotbot",
    r"(?i)bytespider",
    r"^curl/7\.[0-2]\d\.",
    r"^Wget/1\.1[0-5]",
    r"^Java/1\.[4-7]",
    r"^$",
    r"(?i)evil-?scraper",
    r"(?i)pypi-?harvest(er)?",
)


def make_acl(path: Path) -> dict[str, int]:
    """Write C's ACL: unrelated networks and agents; return rule counts by kind."""
    rng = random.Random(20240601)
    lines = [
        "# bench/protection_cost.py: many rules, none matching the benchmark's client",
        f"# (X-Forwarded-For {CLIENT_XFF}, peer 127.0.0.1, pip's User-Agent)",
        "allow 10.0.0.0/8",
        "allow 172.16.0.0/12",
        "allow 2001:db8:42::/48",
        "allow-ua ^bandersnatch/",
        f"deny {DENIED_XFF.rpartition('.')[0]}.0/24  # checked to answer 403",
    ]
    v4 = v6 = 0
    seen: set[str] = set()
    while v4 < 220:
        # first octets 11-119: far from 127/8, 172.16/12, 198.51.100/24 and the allows
        addr = ".".join(str(rng.randrange(256)) for _ in range(3))
        plen = rng.choice((12, 16, 18, 20, 22, 24, 26, 28, 30, 32))
        text = str(ipaddress.ip_network(f"{rng.randrange(11, 120)}.{addr}/{plen}", strict=False))
        if text not in seen:
            seen.add(text)
            lines.append(f"deny {text}")
            v4 += 1
    while v6 < 50:
        plen = rng.choice((32, 40, 48, 56, 64, 128))
        value = 0x2001_0DB8 << 96 | rng.randrange(1, 1 << 96)
        net = ipaddress.ip_network((value, 128), strict=False).supernet(new_prefix=plen)
        text = str(net)
        if text not in seen and not net.overlaps(ipaddress.ip_network("2001:db8:42::/48")):
            seen.add(text)
            lines.append(f"deny {text}")
            v6 += 1
    ua = list(BAD_AGENTS) + [rf"(?i)^harvester-{i:02d}/\d" for i in range(25)]
    lines += [f"deny-ua {pattern}" for pattern in ua]
    path.write_text("\n".join(lines) + "\n")
    return {"allow": 4, "deny_networks": v4 + v6 + 1, "deny_ua": len(ua), "total": len(lines) - 2}


# -- origin and edges --------------------------------------------------------------------------
def make_origin(root: Path) -> dict[str, str]:
    """The 10 KB page and the 1 MB file (twice); return path → sha256 of the file bodies."""
    page_dir = root / "simple" / "bench"
    files_dir = root / "files" / "bench"
    page_dir.mkdir(parents=True)
    files_dir.mkdir(parents=True)
    data = os.urandom(1 * MB)
    (files_dir / FILE_NAME).write_bytes(data)
    os.link(files_dir / FILE_NAME, page_dir / FILE_NAME)
    digest = hashlib.sha256(data).hexdigest()
    link = f'<a href="/files/bench/{FILE_NAME}#sha256={digest}">{FILE_NAME}</a><br/>\n'
    body = base.simple_page("bench", [link], 10 * KB, "/files/bench/")
    # root-relative links: the edge's link rewriting leaves the page as it is (10 KB)
    (page_dir / "index.html").write_text(body)
    return {FILE_SIMPLE: digest, FILE_FILES: digest}


def start_edge(
    procs: base.Processes, tmp: Path, spec: EdgeSpec, origin_port: int, workers: int
) -> base.Edge:
    d = tmp / f"edge-{spec.label}"
    return base.start_edge(procs, d, origin_port, workers, spec.args, f"pkgedge {spec.label}")


def warm(label: str, edge: base.Edge, case: base.Case, digests: dict[str, str]) -> list[str]:
    """Request (with the benchmark's headers) until a hit; return notes on anything odd."""
    notes = []
    hdrs: dict[str, str] = {}
    for attempt in range(1, 6):
        status, hdrs, digest = base.fetch(edge.port, case.path, HEADERS)
        length = int(hdrs["x-body-length"])
        if status != 200:
            notes.append(f"{label} {case.name}: warm-up request {attempt} answered {status}")
        elif case.path in digests and digest != digests[case.path]:
            notes.append(f"{label} {case.name}: body differs from the origin file ({length} B)")
        elif case.path == PAGE_PATH and length != case.size:
            notes.append(f"{label} {case.name}: page is {length} B, expected {case.size}")
        if status == 200 and "hit" in hdrs.get("cache-status", "").lower():
            if attempt > 2:
                notes.append(f"{label} {case.name}: first hit only at request {attempt}")
            return notes
        time.sleep(0.2 * attempt)
    raise RuntimeError(f"{label} never answered a hit for {case.path}: last headers {hdrs}")


def check_acl(edge: base.Edge) -> list[str]:
    """C must refuse a denied User-Agent and a denied forwarded address, serve the client."""
    problems = []
    for what, headers, want in (
        ("benchmark client", HEADERS, 200),
        ("deny-ua rule", {**HEADERS, "User-Agent": DENIED_UA}, 403),
        ("denied X-Forwarded-For", {**HEADERS, "X-Forwarded-For": DENIED_XFF}, 403),
    ):
        status, _, _ = base.fetch(edge.port, PAGE_PATH, headers)
        if status != want:
            problems.append(f"C: {what} answered {status}, expected {want}")
    return problems


# -- measuring ---------------------------------------------------------------------------------
def wrk_script(path: Path) -> None:
    """base's done() reporter, plus the benchmark's request headers."""
    sets = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in HEADERS.items())
    path.write_text(sets + base.WRK_LUA)


def measure(
    procs: base.Processes,
    lua: Path,
    spec: EdgeSpec,
    edge: base.Edge,
    case: base.Case,
    rep: int,
    duration: float,
) -> Measured:
    before = base.edge_stats(edge)
    workers = base.children(edge.proc.pid)
    run = base.measure(procs, lua, spec.label, edge.port, case, rep, duration, workers, edge)
    after = base.edge_stats(edge)
    if base.children(edge.proc.pid) != workers:
        run.notes.append(f"workers changed: {workers} -> {base.children(edge.proc.pid)}")
    prot = {k: after.get(k, 0) - before.get(k, 0) for k in PROTECTION_STATS}
    return Measured(spec.label, case.name, rep, run, prot)


def print_measured(m: Measured) -> None:
    r = m.run
    pct = [c / r.duration * 100 if r.duration else 0.0 for c in r.cpu_split]
    us = r.cpu_s / r.requests * 1e6 if r.requests else 0.0
    prot = " ".join(f"{k}={v}" for k, v in m.protection.items() if v)
    print(
        f"  {m.edge} {m.case:18} #{m.repeat}: {r.rps:9.1f} req/s {r.mbps:8.1f} MB/s  "
        f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  workers {sum(pct):3.0f}% CPU "
        f"{us:6.1f} us/req, wrk {r.wrk_cpu_s / r.duration * 100:3.0f}%"
        + (f"  non-2xx {r.non_2xx} of {r.requests}" if r.non_2xx else "")
        + (f"  [{prot}]" if prot else ""),
        flush=True,
    )
    for note in r.notes:
        if m.tripped and note.startswith(("not all hits", "wrk errors", "edge counted")):
            continue  # refusals: shown above, these notes only repeat them
        print(f"      ! {note}", flush=True)


def summarize(results: list[Measured], specs: tuple[EdgeSpec, ...]) -> list[dict[str, Any]]:
    rows = []
    for case in CASES:
        row: dict[str, Any] = {"case": case.name}
        for spec in specs:
            ms = [m for m in results if m.case == case.name and m.edge == spec.label]
            row[f"{spec.label}_rps"] = base.median([m.run.rps for m in ms])
            row[f"{spec.label}_mbps"] = base.median([m.run.mbps for m in ms])
            row[f"{spec.label}_us"] = base.median(
                [m.run.cpu_s / m.run.requests * 1e6 for m in ms if m.run.requests]
            )
            row[f"{spec.label}_tripped"] = sum(m.tripped for m in ms)
            row[f"{spec.label}_runs"] = len(ms)
        for spec in specs[1:]:
            a, x = "A", spec.label
            row[f"{x}/A_rps"] = row[f"{x}_rps"] / row[f"{a}_rps"] if row[f"{a}_rps"] else 0.0
            row[f"{x}/A_us"] = row[f"{x}_us"] / row[f"{a}_us"] if row[f"{a}_us"] else 0.0
        rows.append(row)
    return rows


def print_tables(rows: list[dict[str, Any]], specs: tuple[EdgeSpec, ...]) -> None:
    others = specs[1:]

    def flag(row: dict[str, Any], label: str) -> str:
        return "*" if row[f"{label}_tripped"] or row["A_tripped"] else " "

    head = f"{'case':18}" + "".join(f" {s.label + ' req/s':>12}" for s in specs)
    head += "".join(f" {s.label + '/A':>7}" for s in others)
    head += "  " + "".join(f" {s.label + ' MB/s':>9}" for s in specs)
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['case']:18}" + "".join(f" {r[s.label + '_rps']:12.1f}" for s in specs)
        line += "".join(f" {r[s.label + '/A_rps']:6.3f}{flag(r, s.label)}" for s in others)
        line += "  " + "".join(f" {r[s.label + '_mbps']:9.1f}" for s in specs)
        print(line)
    print("\nedge workers' CPU per request (medians, us; lower is better; less noisy than req/s):")
    head = f"{'case':18}" + "".join(f" {s.label + ' us/req':>12}" for s in specs)
    head += "".join(f" {s.label + '/A':>7}" for s in others)
    head += "".join(f" {s.label + '-A us':>8}" for s in others)
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['case']:18}" + "".join(f" {r[s.label + '_us']:12.1f}" for s in specs)
        line += "".join(f" {r[s.label + '/A_us']:6.3f}{flag(r, s.label)}" for s in others)
        line += "".join(f" {r[s.label + '_us'] - r['A_us']:8.1f}" for s in others)
        print(line)
    if any(flag(r, s.label) == "*" for r in rows for s in others):
        print(
            "* not a cost measurement: in some run of this case the edge refused requests "
            "(non-2xx, wrk errors) or raised a protection counter; see below"
        )


# -- main --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one round of 3 s runs")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 6, quick 3)")
    p.add_argument("--repeat", type=int, help="rounds of A, B, C per case (default 5, quick 1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes of each edge")
    p.add_argument("--no-acl", action="store_true", help="skip edge C (ACL + XFF)")
    p.add_argument("--json", type=Path, help="save the results as JSON")
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
    return base.run_main("pkgedge-protection-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: base.Processes, tmp: Path) -> int:
    cores = os.cpu_count() or 1
    acl = tmp / "acl.txt"
    counts = make_acl(acl)
    enforce = ("--protection", "enforce", "--rate-limit", UNLIMITED)
    trusted = ("--trusted-proxies", "127.0.0.0/8")
    specs = (
        EdgeSpec("A", "protection off", ("--protection", "off")),
        EdgeSpec("B", "enforce", enforce),
        EdgeSpec("C", "enforce + ACL + XFF", (*enforce, "--acl-file", str(acl), *trusted)),
    )
    if args.no_acl:
        specs = specs[:2]
    total = len(CASES) * len(specs) * args.repeat * args.duration
    print(
        f"protection cost on cache hits: {len(specs)} edges x {args.workers} workers, wrk -t1, "
        f"{args.duration:g} s x {args.repeat} round(s) per edge and case "
        f"(~{total / 60:.1f} min of load)"
    )
    for s in specs:
        print(f"  {s.label}: {s.name:20} {' '.join(s.args).replace(str(tmp), '$TMP')}")
    if not args.no_acl:
        print(
            f"  C's ACL: {counts['total']} rules ({counts['allow']} allow, "
            f"{counts['deny_networks']} deny networks, {counts['deny_ua']} deny-ua regexes)"
        )
    print(f"  wrk headers (all edges): X-Forwarded-For: {CLIENT_XFF}; User-Agent: {PIP_UA}")
    print(
        f"note: {cores} cores shared by wrk and the loaded edge's workers; absolute numbers "
        "are CPU-bound and noisy, compare the ratios"
    )
    print(f"load average before the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"pkgedge source fingerprint: {base.source_fingerprint()}", flush=True)

    origin_root = tmp / "origin"
    digests = make_origin(origin_root)
    _, origin_port = base.start_origin_nginx(procs, tmp / "nginx-origin", origin_root)
    for path in (PAGE_PATH, FILE_FILES):
        status, hdrs, _ = base.fetch(origin_port, path)
        if status != 200 or "max-age=3600" not in hdrs.get("cache-control", ""):
            raise RuntimeError(f"origin {path}: {status} {hdrs}")

    edges = {s.label: start_edge(procs, tmp, s, origin_port, args.workers) for s in specs}
    print(
        f"origin nginx :{origin_port}; "
        + ", ".join(f"{k} :{e.port} (admin :{e.admin_port})" for k, e in edges.items()),
        flush=True,
    )

    notes: list[str] = []
    for case in CASES:
        for label, edge in edges.items():
            notes += warm(label, edge, case, digests)
    if "C" in edges:
        notes += check_acl(edges["C"])
    baseline = {label: base.edge_stats(edge) for label, edge in edges.items()}
    print(
        "warmed: "
        + "; ".join(
            f"{k} hits={s.get('hits', 0)} misses={s.get('misses', 0)} "
            + " ".join(f"{p}={s.get(p, 0)}" for p in PROTECTION_STATS if s.get(p, 0))
            for k, s in baseline.items()
        ),
        flush=True,
    )
    for note in notes:
        print(f"  ! {note}")

    lua = tmp / "bench.lua"
    wrk_script(lua)
    results: list[Measured] = []
    for case in CASES:
        print(f"\n{case.name}: {case.path}, {case.connections} connections", flush=True)
        for rep in range(1, args.repeat + 1):
            for spec in specs:
                m = measure(procs, lua, spec, edges[spec.label], case, rep, args.duration)
                results.append(m)
                print_measured(m)
                time.sleep(0.5)

    rows = summarize(results, specs)
    print(
        f"\nmedians of {args.repeat} round(s) of {args.duration:g} s; wrk -t1 on the same "
        f"{cores}-core machine; MB = 10^6 bytes; X/A = edge X / edge A (protection off)"
    )
    print_tables(rows, specs)

    final = {label: base.edge_stats(edge) for label, edge in edges.items()}
    keys = ("requests", "hits", *PROTECTION_STATS)
    print("\n/stats at the end (total; in brackets: during the wrk runs, i.e. after warm-up):")
    for label, s in final.items():
        during = {k: s.get(k, 0) - baseline[label].get(k, 0) for k in keys}
        print(
            f"  {label}: "
            + ", ".join(
                f"{k}={s.get(k, 0)}" + (f" [{during[k]}]" if k in PROTECTION_STATS else "")
                for k in keys
            )
        )

    print("\nobservations:")
    for spec in specs[1:]:
        tripped = [m for m in results if m.edge == spec.label and m.tripped]
        if not tripped:
            print(f"  {spec.label}: no refusals, no protection counter moved: a clean measurement")
            continue
        first = tripped[0]
        cases = sorted({m.case for m in tripped}, key=[c.name for c in CASES].index)
        print(
            f"  {spec.label}: protection acted during the benchmark, first in "
            f"'{first.case}' round {first.repeat} ({first.protection}, non-2xx "
            f"{first.run.non_2xx} of {first.run.requests}); affected cases: {', '.join(cases)}"
        )
        served = sum(m.run.requests - m.run.non_2xx for m in tripped)
        refused = sum(m.run.non_2xx for m in tripped)
        signals = sum(m.protection.get("signals", 0) for m in tripped)
        print(
            f"     over those {len(tripped)} run(s): {served} answered 2xx, {refused} refused; "
            f"signals={signals} (each of the {args.workers} workers keeps its own guard state: "
            "windows, buckets, penalty box; a signal fires at most once per worker and window)"
        )
    untouched = [m for m in results if m.edge == "A" and m.tripped]
    if untouched:
        print(f"  A (protection off) had non-2xx or errors in {len(untouched)} run(s)")

    for label, edge in edges.items():
        err_text = edge.stderr.read_text(errors="replace").strip()
        if err_text:
            lines = err_text.splitlines()
            print(f"\npkgedge {label} stderr ({len(lines)} lines, last 10):")
            for line in lines[-10:]:
                print(f"  {line}")

    if args.json:
        result = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "cores": cores,
            "source_fingerprint": base.source_fingerprint(),
            "edges": [{"label": s.label, "name": s.name, "args": s.args} for s in specs],
            "acl_rules": counts,
            "runs": [
                {**asdict(m.run), "edge": m.edge, "protection": m.protection} for m in results
            ],
            "summary": rows,
            "stats": final,
            "baseline_stats": baseline,
            "warmup_notes": notes,
        }
        args.json.write_text(json.dumps(result, indent=1))
        print(f"\nresults saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
