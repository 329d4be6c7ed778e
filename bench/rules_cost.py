"""What rules cost on cache hits: req/s of a real ``pkgedge edge`` with the built-in default
configuration vs with 20 typical rules (and, with ``--in-process``, the rules' closures alone).

Run with ``.venv/bin/python bench/rules_cost.py`` (``--quick``: one round of 3 s runs;
``--repeat N --duration S``: default 3 rounds of 5 s). Needs nginx and wrk
(``apt-get install -y nginx-light wrk``).

**End to end (the default).** One invocation builds everything in a temporary directory
(removed at the end): an origin nginx (``bench/_common.py``) serving a 10 KB simple page
(``/simple/bench/``, ``Cache-Control: max-age=3600``) and four ``pkgedge edge`` processes on
it, one worker each, abuse protection on as by default (``--protection enforce``; the token
bucket is made bottomless, ``--rate-limit 1000000000/1000000000``, so we measure the checks,
not refusals), ``--backends files=<origin>`` on all (the typical rules choose that backend;
the edge checks backend names), differing only in ``--rules FILE``:

* **A**: no ``--rules``: the built-in default configuration;
* **B**: :data:`TYPICAL` as written. Its rule 19 reads ``obj.age``, which changes from one
  request to the next, so the deliver sub is live on the fast path; it compares it with a
  constant only, so its result is reused while the age stays on one side of that limit
  (what else the sub reads in the memo's key; see ``src/pkgedge/edge/ruleset.py``);
* **C**: :data:`TYPICAL` with rule 19 replaced by :data:`RULE_19_C`, which reads a stored
  response field instead: the deliver sub is folded into the fast path's memo, keyed by what
  it reads after recv (``client.ua_class``, the ``X-Internal`` field recv sets); recv
  (client-dependent, with a rate limit for bots) runs live, or is remembered for a client
  it already decided for without taking a token;
* **D** (a diagnostic): rule 19 alone: a live deliver sub with almost no rule work;
* **E**: :data:`TYPICAL` with rule 19 replaced by :data:`RULE_19_E`, comparing ``obj.age``
  with ``obj.ttl``: the deliver sub runs on every fast-path replay (on the memo's fields, a
  reused Env, the head rebuilt only when its edits change).

Before measuring, each edge is warmed to a hit; B, C and E must answer ``x-index: simple``
and ``x-cache: HIT`` (their deliver rules are live), C ``x-html: 1``, A and D no
``x-index``.
Cases, ``wrk -t1``, 50 connections; every round runs every case on its edges in turn, so
all see the same machine:

1. ``10 KB page hit``: every request the same (pip 24's User-Agent): A, B, C, D, E;
2. ``10 KB, distinct UA``: wrk's Lua ``request()`` sends a different pip User-Agent on
   every request (still classified "pip"; unique across runs too), so C's recv memo never
   repeats and recv runs live on every hit: the worst case for rules. A's rules ignore the
   User-Agent, but its per-agent memos (the guard's, the parsed-request one, the agent
   classifier's cache) miss too: A and C;
3. ``10 KB, max-stale`` (a diagnostic): a request ``Cache-Control: max-stale=60`` keeps
   every hit off the fast path, rules or not: A and D, i.e. the phases with and without a
   ruleset.

Reported: medians of req/s and of the edge worker's CPU per request (µs, user + system of
the worker process: less noisy than req/s on a shared machine), and the ratios B/A, C/A,
C/A with distinct UAs (issue 8's goal: >= 0.9 in req/s), D/A and E/A. ``/stats`` deltas around
each run must show only hits and no protection counter moving; a run that does not gets a
note (and the exit status is 1).

Measured: see docs/architecture.md, "Rules", "Cost" (figures change with the fast path's
handling of rules; the table there is the current one).

**In process (``--in-process``).** The compiled recv + deliver closures of the default
configuration and of :data:`TYPICAL` on a mix of four cache-hit requests, µs per request
(``time.process_time``), medians over ``--rounds`` rounds of ``--n`` requests:
``env + rules`` builds the :class:`~pkgedge.rules.Env` too, ``rules only`` does not. This
is the closures' cost alone; the projection ``(hit + a) / (hit + b)`` with ``--hit-us`` (a
hit's CPU without rules) estimates the req/s ratio of a hit that runs the phases.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import _common as base
from pkgedge.rules import Env, Rules, compile_default, compile_rules

TYPICAL = r"""
# 20 typical rules: an ACL, a table, path regexes, header sets, User-Agent classes.
table renamed { "old-name": "new-name", "sklearn": "scikit-learn", "pil": "pillow" }
acl blocked { "192.0.2.0/24"; "198.51.100.128/25"; "2001:db8:bad::/48"; }
acl internal { "10.0.0.0/8"; "172.16.0.0/12"; "fd00::/8"; }

sub recv {
    if (client.ip in blocked) { block "address blocked by this index"; }                 # 1
    if (req.method != "GET" && req.method != "HEAD") { return(pass); }                   # 2
    if (req.path ~ "^/simple/[^/]+/$"
        && regsub(req.path, "^/simple/([^/]+)/$", "\1") in renamed) {
        redirect 301 "/simple/" + renamed[regsub(req.path, "^/simple/([^/]+)/$", "\1")] + "/";
    }                                                                                     # 3
    if (client.ua_class == "bot") { ratelimit "bots" 10 per 1s; }                        # 4
    if (req.http.user-agent ~ "(?i)(evilbot|scrapy-clone)") { block "not here"; }         # 5
    if (req.path ~ "^/admin") { error 404 "not found"; }                                  # 6
    if (client.ip in internal) { set req.http.x-internal = "1"; }                        # 7
    if (defined(req.http.cookie)) { unset req.http.cookie; }                             # 8
    if (req.query != "" && req.path ~ "^/simple/") { set req.url = req.path; }           # 9
    set req.http.x-ua-class = client.ua_class;                                           # 10
    if (req.path ~ "^/files/") { set req.backend = "files"; }                            # 11
    return(lookup);                                                                      # 12
}

sub deliver {
    if (req.path ~ "^/simple/") { set resp.http.x-index = "simple"; }                    # 13
    elif (req.path ~ "^/files/") { set resp.http.x-index = "files"; }
    if (cache.state == "hit") { set resp.http.x-cache = "HIT"; }                         # 14
    else { set resp.http.x-cache = "MISS"; }
    if (req.http.x-internal == "1") { set resp.http.x-served-by = "edge-1"; }            # 15
    if (resp.status == 200 && req.path ~ "\.whl$") { set resp.http.x-kind = "wheel"; }  # 16
    if (client.ua_class == "browser") { set resp.http.x-frame-options = "DENY"; }        # 17
    if (req.path ~ "^/simple/six/") { set resp.http.x-note = "hello"; }                  # 18
    if (obj.age > 1h) { set resp.http.x-old = "1"; }                                     # 19
    append resp.http.vary = "X-Ua-Class";                                                # 20
}
"""

_PIP = (
    'pip/24.0 {"ci":null,"cpu":"x86_64","distro":{"name":"Ubuntu","version":"22.04"},'
    '"implementation":{"name":"CPython","version":"3.11.6"},"installer":{"name":"pip",'
    '"version":"24.0"},"python":"3.11.6","system":{"name":"Linux","release":"6.5.0"}}'
)
_ACCEPT_JSON = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1"
REQUESTS = [
    ("/simple/numpy/", "198.51.100.23", "pip", {"user-agent": _PIP, "accept": _ACCEPT_JSON}),
    ("/simple/requests/", "203.0.113.9", "uv", {"user-agent": "uv/0.4.18", "accept": _ACCEPT_JSON}),
    (
        "/project/six/",
        "2001:db8:1::7",
        "browser",
        {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0", "accept": "text/html"},
    ),
    (
        "/files/ab/cd/0123456789abcdef/six-1.16.0-py2.py3-none-any.whl",
        "198.51.100.23",
        "pip",
        {"user-agent": _PIP, "accept": "*/*"},
    ),
]
_COMMON = {"host": "edge.example", "accept-encoding": "gzip, br", "connection": "keep-alive"}


def make_env(rules_tables: dict[str, object], i: int) -> Env:
    url, ip, ua, headers = REQUESTS[i % len(REQUESTS)]
    return Env(
        method="GET",
        url=url,
        req_headers={**_COMMON, **headers},
        client_ip=ip,
        client_identity=ip,
        ua_class=ua,
        tables=rules_tables,  # type: ignore[arg-type]
        obj_status=200,
        obj_ttl=3000.0,
        obj_age=600.0,
        obj_headers={"content-type": "text/html"},
        resp_status=200,
        resp_headers={"content-type": "text/html", "vary": "Accept"},
        cache_state="hit",
        limiter=lambda name, key, rate, per: True,
    )


def time_once(rules: Rules, n: int, prebuilt: bool) -> float:
    """µs per request for n requests."""
    tables = rules.tables().current
    # a phase without rules (an empty sub, as default.vcl's deliver) is skipped, as the
    # pipeline will skip it
    runners = [r for r in (rules.runners["recv"], rules.runners["deliver"]) if r is not None]
    if prebuilt:
        envs = [make_env(tables, i) for i in range(n)]  # type: ignore[arg-type]
        t0 = time.process_time()
        for env in envs:
            for run in runners:
                run(env)
        return (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for i in range(n):
        env = make_env(tables, i)  # type: ignore[arg-type]
        for run in runners:
            run(env)
    return (time.process_time() - t0) / n * 1e6


def in_process(args: argparse.Namespace) -> int:
    """The ``--in-process`` mode: the closures alone (see the module's docstring)."""
    default, typical = compile_default(), compile_rules(TYPICAL, name="typical.vcl")
    check(typical)
    print(f"{args.rounds} rounds of {args.n} requests (4-request hit mix), recv + deliver")
    print("µs per request: median of the rounds (the fastest round in brackets)")
    print(f"{'':14}{'(a) default':>18}{'(b) 20 rules':>18}{'b - a':>16}{'b / a':>7}")
    results = {}
    for label, prebuilt in (("env + rules", False), ("rules only", True)):
        a_s, b_s = [], []
        for _ in range(args.rounds):  # alternate, so both see the same machine
            a_s.append(time_once(default, args.n, prebuilt))
            b_s.append(time_once(typical, args.n, prebuilt))
        a, b = statistics.median(a_s), statistics.median(b_s)
        a_min, b_min = min(a_s), min(b_s)
        results[label] = (a, b, a_min, b_min)
        print(
            f"{label:14}{a:>9.2f} ({a_min:5.2f}){b:>10.2f} ({b_min:5.2f})"
            f"{b - a:>8.2f} ({b_min - a_min:5.2f}){b / a:>7.2f}"
        )
    a, b, a_min, b_min = results["env + rules"]
    hit = args.hit_us
    print(
        f"projected hit req/s ratio (b)/(a) with a {hit:.0f} µs hit: "
        f"{(hit + a) / (hit + b):.3f} (fastest rounds: {(hit + a_min) / (hit + b_min):.3f}; "
        "goal >= 0.9)"
    )
    return 0


def check(typical: Rules) -> None:
    """The typical rules do what they say on the mix (so the benchmark measures real work)."""
    tables = typical.tables().current
    env = make_env(tables, 2)  # type: ignore[arg-type]
    assert typical.run("recv", env) is not None
    typical.run("deliver", env)
    assert env.resp_headers["x-frame-options"] == "DENY", env.resp_headers
    assert env.resp_headers["vary"] == "Accept, X-Ua-Class"
    env = make_env(tables, 3)  # type: ignore[arg-type]
    typical.run("recv", env)
    typical.run("deliver", env)
    assert env.backend == "files" and env.resp_headers["x-kind"] == "wheel"


# -- end to end ----------------------------------------------------------------------------
#: C's rule 19: reads a stored response field instead of obj.age (deliver folded in the memo)
RULE_19_C = 'if (resp.http.content-type ~ "html") { set resp.http.x-html = "1"; }'
RULE_19 = 'if (obj.age > 1h) { set resp.http.x-old = "1"; }'
TYPICAL_C = TYPICAL.replace(RULE_19, RULE_19_C)
#: D, a diagnostic: rule 19 alone: a live deliver sub, little rule work
ONLY_19 = f"sub deliver {{\n    {RULE_19}\n}}\n"
#: E's rule 19: compares obj.age with another variable: the deliver sub runs on every replay
RULE_19_E = 'if (obj.age > obj.ttl) { set resp.http.x-old = "1"; }'
TYPICAL_E = TYPICAL.replace(RULE_19, RULE_19_E)

PAGE_PATH = "/simple/bench/"
PIP_UA = 'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7","ci":null}'
UNLIMITED = "1000000000/1000000000"
PROTECTION_STATS = ("rate_limited", "denied", "signals", "penalized", "observed")
SAME, DISTINCT, PHASES = "10 KB page hit", "10 KB, distinct UA", "10 KB, max-stale"
#: PHASES: a request Cache-Control field keeps every hit off the fast path, rules or not
MAX_STALE = "max-stale=60"
PAGE = base.Case(SAME, PAGE_PATH, 10 * base.KB, 50, "rps", 0.9)
#: wrk's request(): pip's User-Agent with a counter in its JSON, a new one per request;
#: RUN is replaced by a token unique to the run, so that no run repeats another's agents
#: (the edge's memos would remember them)
DISTINCT_LUA = """\
local n = 0
request = function()
  n = n + 1
  wrk.headers["User-Agent"] = string.format(
    'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7","ci":null,'
    .. '"run":"RUN","n":%d}', n)
  return wrk.format()
end
"""


@dataclass(frozen=True)
class Spec:
    label: str
    name: str
    rules: str | None  # the --rules file's text, None: the built-in default


SPECS = (
    Spec("A", "default configuration", None),
    Spec("B", "20 typical rules (rule 19 reads obj.age)", TYPICAL),
    Spec("C", "20 typical rules, rule 19 without obj.ttl/obj.age", TYPICAL_C),
    Spec("D", "rule 19 alone (diagnostic: a live deliver sub, ~no rule work)", ONLY_19),
    Spec("E", "20 typical rules, rule 19 compares obj.age with obj.ttl", TYPICAL_E),
)
#: case -> the edges it loads
CASES = {SAME: ("A", "B", "C", "D", "E"), DISTINCT: ("A", "C"), PHASES: ("A", "D")}


@dataclass
class Result:
    label: str
    case: str
    rps: float
    us: float  # worker CPU per request
    notes: list[str]


def check_live(label: str, edge: base.Edge) -> list[str]:
    """A hit with the rules' deliver headers on B and C, without them on A."""
    status, hdrs, _ = base.fetch(edge.port, PAGE_PATH, {"User-Agent": PIP_UA})
    want = "simple" if label in ("B", "C", "E") else None
    problems = []
    if status != 200 or not base.is_edge_hit(hdrs):
        problems.append(f"{label}: {status}, cache-status {hdrs.get('cache-status')!r}")
    if hdrs.get("x-index") != want or (want and hdrs.get("x-cache") != "HIT"):
        problems.append(f"{label}: x-index {hdrs.get('x-index')!r} (expected {want!r})")
    if label == "C" and hdrs.get("x-html") != "1":
        problems.append(f"C: rule 19 (x-html) not applied: {hdrs}")
    status, hdrs, _ = base.fetch(edge.port, PAGE_PATH, {"Cache-Control": MAX_STALE})
    if status != 200 or not base.is_edge_hit(hdrs):
        problems.append(f"{label} with {MAX_STALE}: {status}, {hdrs.get('cache-status')!r}")
    return problems


def run_one(
    procs: base.Processes, lua: Path, label: str, edge: base.Edge, case: str, rep: int, s: float
) -> Result:
    before = base.edge_stats(edge)
    workers = base.children(edge.proc.pid)
    page = base.Case(case, PAGE.path, PAGE.size, PAGE.connections, "rps", 0.9)
    run = base.measure(procs, lua, label, edge.port, page, rep, s, workers, edge)
    after = base.edge_stats(edge)
    prot = {k: after.get(k, 0) - before.get(k, 0) for k in PROTECTION_STATS}
    notes = list(run.notes)
    if any(prot.values()):
        notes.append(f"protection counters moved: {prot}")
    if base.children(edge.proc.pid) != workers:
        notes.append("a worker restarted")
    us = run.cpu_s / run.requests * 1e6 if run.requests else 0.0
    print(
        f"  {label} {case:19} #{rep}: {run.rps:9.1f} req/s  worker {us:6.1f} us/req "
        f"({run.cpu_s / run.duration * 100:3.0f}% CPU), wrk "
        f"{run.wrk_cpu_s / run.duration * 100:3.0f}%  p50 {run.p50_ms:5.2f} ms",
        flush=True,
    )
    for note in notes:
        print(f"      ! {note}", flush=True)
    return Result(label, case, run.rps, us, notes)


def end_to_end(args: argparse.Namespace, procs: base.Processes, tmp: Path) -> int:
    page_dir = tmp / "origin" / "simple" / "bench"
    page_dir.mkdir(parents=True)
    (page_dir / "index.html").write_text(base.simple_page("bench", [], PAGE.size, "/files/b/"))
    _, origin_port = base.start_origin_nginx(procs, tmp / "nginx-origin", tmp / "origin")
    common = ("--protection", "enforce", "--rate-limit", UNLIMITED)
    common += ("--backends", f"files=http://{base.HOST}:{origin_port}/")
    cores = os.cpu_count() or 1
    print(
        f"rules cost on cache hits, end to end: 1 worker per edge, wrk -t1, "
        f"{PAGE.connections} connections, {args.repeat} round(s) of {args.duration:g} s"
    )
    print(f"  all edges: {' '.join(common)}")
    edges = {}
    for spec in SPECS:
        extra: tuple[str, ...] = common
        if spec.rules is not None:
            path = tmp / f"rules-{spec.label}.vcl"
            path.write_text(spec.rules)
            extra += ("--rules", str(path))
        edges[spec.label] = base.start_edge(
            procs, tmp / f"edge-{spec.label}", origin_port, 1, extra, f"pkgedge {spec.label}"
        )
        print(f"  {spec.label}: {spec.name}" + (" (--rules FILE)" if spec.rules else ""))
    print(f"  C's rule 19: {RULE_19_C}\n  (B's: {RULE_19}; E's: {RULE_19_E})")
    print(f"note: {cores} cores shared by wrk, the worker and other work; compare the ratios")
    print(f"load average before: {base.load_average()}", flush=True)

    problems: list[str] = []
    for label, edge in edges.items():
        base.warm(label, edge.port, PAGE, {}, base.is_edge_hit)
        problems += check_live(label, edge)
    if problems:
        print("the rules are not live as expected:\n  " + "\n  ".join(problems))
        return 1
    print("live: B, C and E answer x-index: simple, x-cache: HIT; A and D do not", flush=True)

    lua = {case: tmp / f"case-{i}.lua" for i, case in enumerate(CASES)}
    ua = f'wrk.headers["User-Agent"] = {json.dumps(PIP_UA)}\n'
    lua[SAME].write_text(ua + base.WRK_LUA)
    lua[PHASES].write_text(ua + f'wrk.headers["Cache-Control"] = "{MAX_STALE}"\n' + base.WRK_LUA)
    results: list[Result] = []
    for rep in range(1, args.repeat + 1):
        for case, labels in CASES.items():
            for label in labels:
                if case == DISTINCT:
                    lua[case].write_text(
                        DISTINCT_LUA.replace("RUN", f"{rep}{label}") + base.WRK_LUA
                    )
                results.append(
                    run_one(procs, lua[case], label, edges[label], case, rep, args.duration)
                )
                time.sleep(0.3)
    report(results, args)
    for label, edge in edges.items():
        err = edge.stderr.read_text(errors="replace").strip().splitlines()
        if err:
            print(
                f"pkgedge {label} stderr (last 5 of {len(err)} lines):\n  " + "\n  ".join(err[-5:])
            )
    return 0 if not any(r.notes for r in results) else 1


def report(results: list[Result], args: argparse.Namespace) -> None:
    def med(label: str, case: str, what: str) -> float:
        return base.median(getattr(r, what) for r in results if r.label == label and r.case == case)

    labels = [s.label for s in SPECS]
    print(f"\nmedians of {args.repeat} round(s) of {args.duration:g} s (worker CPU: us/req)")
    print(f"{'case':20}" + "".join(f"{x + ' req/s':>10}" for x in labels), end="")
    print("".join(f"{x + ' us':>8}" for x in labels))
    for case, loaded in CASES.items():
        line = f"{case:20}"
        for what, width, fmt in (("rps", 10, ".0f"), ("us", 8, ".1f")):
            for label in labels:
                v = med(label, case, what) if label in loaded else None
                line += f"{'-' if v is None else format(v, fmt):>{width}}"
        print(line)
    print("\nratios X/A in req/s (goal >= 0.9); in brackets, worker CPU per request X/A and X-A:")
    for name, label, case in (
        ("B/A", "B", SAME),
        ("C/A", "C", SAME),
        ("C/A distinct UA", "C", DISTINCT),
        ("D/A (diagnostic)", "D", SAME),
        ("D/A max-stale", "D", PHASES),
        ("E/A", "E", SAME),
    ):
        rps = med(label, case, "rps") / med("A", case, "rps")
        x, a = med(label, case, "us"), med("A", case, "us")
        print(f"  {name:17} {rps:6.3f}  ({x / a:5.2f}x, {x - a:+6.1f} us)")
    flagged = sum(bool(r.notes) for r in results)
    print(f"runs with notes (not only hits, errors, protection): {flagged} of {len(results)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-process", action="store_true", help="the closures only, no servers")
    ap.add_argument("--quick", action="store_true", help="end to end: 1 round of 3 s")
    ap.add_argument("--repeat", type=int, help="end to end: rounds (default 3)")
    ap.add_argument("--duration", type=float, help="end to end: seconds per run (default 5)")
    ap.add_argument("--rounds", type=int, default=15, help="in process: rounds")
    ap.add_argument("--n", type=int, default=20_000, help="in process: requests per round")
    ap.add_argument("--hit-us", type=float, default=43.0, help="in process: a hit's CPU")
    args = ap.parse_args(argv)
    if args.in_process:
        if args.quick:
            args.rounds, args.n = 5, 5_000
        return in_process(args)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    if args.repeat < 1 or args.duration <= 0:
        ap.error("--repeat and --duration must be positive")
    if not base.require(("nginx", "wrk")):
        return 2
    return base.run_main("pkgedge-rules-", lambda procs, tmp: end_to_end(args, procs, tmp))


if __name__ == "__main__":
    sys.exit(main())
