"""The guard's own CPU cost per cache hit, in-process: µs per ``admit`` + ``account``.

Run with ``.venv/bin/python bench/guard_cost.py`` (``--quick``: fewer, shorter rounds).

No sockets, no event loop: the edge's fast path calls ``Guard.admit(req, now)`` before a hit
and ``Guard.account(req, 200, "hit", now)`` after it, and this benchmark does just that, with
a simulated clock advancing 50 µs per request, for two guards built from the same settings:

* **before**: the guard of ``--baseline`` (a git revision, default the commit this work
  started from), loaded at run time: ``git show`` of its ``edge/protect.py`` and
  ``security/*.py`` into a temporary package (imports rewritten), so it runs its own pure
  pieces, not today's;
* **after**: ``pkgedge.edge.protect.Guard`` of the working tree.

Settings: ``--protection enforce`` with unlimited buckets (we measure the checks, not
refusals), and in the ``acl+xff`` configuration a 325-rule ACL (``protection_cost.make_acl``:
networks of many prefix lengths, 50 deny-UA regexes, none matching) with
``--trusted-proxies 127.0.0.0/8``; every request comes from peer 127.0.0.1 with pip's
User-Agent and an X-Forwarded-For address. Cases: one client repeating one page hit, and
1,000 clients (distinct X-Forwarded-For addresses, round robin) repeating it.

Before timing, both guards are fed the same mixed, adversarial request sequence (denied
addresses and agents, crawlers, 404s, cache-busting queries, repeat downloads, a tight rate
limit, an ACL file rewritten mid-stream) and every answer, ``req.key``/``spec``/``note`` and
the counters must be identical: the run stops otherwise.

Rounds alternate before/after; the table shows the median µs per hit and after/before.

``--shared``: the "after" guard runs the behaviour detectors' shared twins, as every worker of
a node with ``--redis`` does (``Guard.share_signals``; no Redis here: no cluster figures, so
the outcomes must still be identical), e.g. ``--shared --baseline HEAD`` for their cost alone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import protection_cost
from pkgedge.config import EdgeSettings, build_edge_settings
from pkgedge.edge.protect import Guard
from pkgedge.http.request import Request
from pkgedge.stats.counters import Counters

ROOT = Path(__file__).resolve().parents[1]
#: the commit this optimisation started from (its guard is "before")
BASELINE = "a6557d6"
PIP_UA = protection_cost.PIP_UA
UNLIMITED = protection_cost.UNLIMITED
PAGE = "/simple/bench/"
STEP = 50e-6  # simulated seconds between requests
T0 = 1_764_000_000.0

GuardLike = Any  # the baseline's Guard is a different class with the same interface


# -- the baseline -----------------------------------------------------------------------------
def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout


@contextmanager
def baseline_guard(ref: str) -> Iterator[type]:
    """The Guard class of ``ref``, with that revision's security package."""
    tmp = Path(tempfile.mkdtemp(prefix="pkgedge-guard-baseline-"))
    name = "_guard_baseline_" + "".join(c for c in ref if c.isalnum())
    pkg = tmp / name
    (pkg / "security").mkdir(parents=True)
    try:
        (pkg / "__init__.py").write_text("")
        files = _git("ls-tree", "--name-only", ref, "src/pkgedge/security/").split()
        for path in [*files, "src/pkgedge/edge/protect.py"]:
            text = _git("show", f"{ref}:{path}").replace("pkgedge.security", f"{name}.security")
            dest = pkg / "protect.py" if path.endswith("protect.py") else pkg / "security"
            if dest.name == "security":
                dest = dest / Path(path).name
            dest.write_text(text)
        sys.path.insert(0, str(tmp))
        module = importlib.import_module(f"{name}.protect")
        yield module.Guard
    finally:
        if str(tmp) in sys.path:
            sys.path.remove(str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)


# -- settings and requests --------------------------------------------------------------------
def settings(tmp: Path, acl: bool, **flags: Any) -> EdgeSettings:
    base: dict[str, Any] = {
        "upstream": "http://127.0.0.1:9/simple/",
        "cache_dir": str(tmp / "cache"),
        "protection": "enforce",
        "rate_limit": UNLIMITED,
    }
    if acl:
        path = tmp / "acl.txt"
        tmp.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            protection_cost.make_acl(path)
        base |= {"acl_file": str(path), "trusted_proxies": "127.0.0.0/8"}
    return build_edge_settings(base | flags, environ={})


def request(
    target: str, xff: str | None = None, ua: str | None = PIP_UA, peer: str = "127.0.0.1"
) -> Request:
    headers = [("host", "edge")]
    if ua is not None:
        headers.append(("user-agent", ua))
    if xff is not None:
        headers.append(("x-forwarded-for", xff))
    return Request("GET", target, headers, True, peer)


def clients(n: int) -> list[str]:
    return [f"198.51.{100 + i // 250}.{1 + i % 250}" for i in range(n)]


# -- equivalence ------------------------------------------------------------------------------
def mixed_workload(n: int) -> Iterator[tuple[Request, int, str]]:
    """(request, status, cache status): every kind of request the guard treats differently."""
    agents = [PIP_UA, "Googlebot/2.1 (+http://www.google.com/bot.html)", "sqlmap/1.7", None, ""]
    xffs = [None, "198.51.100.23", "203.0.113.9", "10.1.2.3", "unknown, 198.51.100.7",
            "2001:db8:1:2::5", "198.51.100.23, 127.0.0.5", "11.0.0.1"]  # fmt: skip
    for i in range(n):
        ua = agents[(i // 7) % len(agents)]
        xff = xffs[(i // 3) % len(xffs)]
        peer = "127.0.0.1" if i % 11 else "192.0.2.77"
        kind = i % 9
        if kind < 3:
            target, status = PAGE, 200
        elif kind == 3:
            target, status = f"/simple/p{i % 1300}/", 200  # enumeration
        elif kind == 4:
            target, status = f"/simple/missing{i % 40}/", 404  # 404 ratio
        elif kind == 5:
            target, status = f"/files/ab/f{i % 3}.whl", 200  # repeat downloads
        elif kind == 6:
            target, status = f"/simple/bench/?q={i}", 200  # cache busting
        elif kind == 7:
            target, status = f"/packages/x/y{i % 5}.tar.gz?sig={i % 60}", 200
        else:
            target, status = "/other", 404
        cache = ("hit", "pkgedge; fwd=miss", "pkgedge; fwd=stale", "refused")[i % 4]
        yield request(target, xff, ua, peer), status, cache


def _after(s: EdgeSettings, counters: Counters, shared: bool) -> Guard:
    guard = Guard(s, counters)
    if shared:
        guard.share_signals()
    return guard


def check_equivalence(
    before: type, tmp: Path, n: int, shared: bool = False
) -> tuple[int, dict[str, int]]:
    """Feed both guards the same sequence; raise if any observable outcome differs. Returns
    how many requests were compared and the counters they moved (summed)."""
    compared = 0
    moved: dict[str, int] = {}
    for acl in (False, True):
        for mode in ("enforce", "observe"):
            flags = {"protection": mode, "rate_limit": "150/300", "bot_rate_limit": "5/10"}
            s = settings(tmp / f"eq-{acl}-{mode}", acl, **flags)
            ca, cb = Counters(1), Counters(1)
            a, b = before(s, ca), _after(s, cb, shared)
            now = T0
            for i, (req, status, cache) in enumerate(mixed_workload(n)):
                if acl and i == n // 2:  # a new list: cached verdicts must go
                    path = Path(s.acl_file or "")
                    path.write_text(path.read_text() + "deny 198.51.100.0/24\n")
                    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
                twin = Request(req.method, req.target, req.headers, req.keep_alive, req.client)
                ra, rb = a.admit(req, now), b.admit(twin, now)
                got = (ra, req.key, req.spec, req.note)
                if got != (rb, twin.key, twin.spec, twin.note):
                    raise AssertionError(f"admit #{i} {req!r}: {got} != {rb, twin.key, twin.spec}")
                if ra is None:
                    a.account(req, status, cache, now)
                    b.account(twin, status, cache, now)
                    if req.note != twin.note:
                        raise AssertionError(f"account #{i}: {req.note!r} != {twin.note!r}")
                now += 0.003 if i % 500 else 400.0  # sometimes a long pause: windows end
                compared += 1
            if ca.snapshot() != cb.snapshot():
                raise AssertionError(f"counters differ: {ca.snapshot()} != {cb.snapshot()}")
            for name, value in ca.snapshot().items():
                moved[name] = moved.get(name, 0) + value
    return compared, moved


# -- timing -----------------------------------------------------------------------------------
def per_hit_us(guard: GuardLike, reqs: list[Request], rounds: int, clock: list[float]) -> float:
    admit, account = guard.admit, guard.account
    now = clock[0]
    start = time.perf_counter_ns()
    for _ in range(rounds):
        for req in reqs:
            if admit(req, now) is None:
                account(req, 200, "hit", now)
            now += STEP
    elapsed = time.perf_counter_ns() - start
    clock[0] = now
    return elapsed / 1000 / (rounds * len(reqs))


def bench_case(
    make: Callable[[], tuple[GuardLike, GuardLike]], reqs: list[Request], n: int, repeat: int
) -> tuple[float, float]:
    before, after = make()
    loops = max(1, n // len(reqs))
    clocks = {"before": [T0], "after": [T0]}
    for name, g in (("before", before), ("after", after)):
        per_hit_us(g, reqs, 1, clocks[name])  # warm: profiles, buckets, windows
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeat):
        for name, g in (("before", before), ("after", after)):
            times[name].append(per_hit_us(g, reqs, loops, clocks[name]))
    for g in (before, after):  # all served: a cost measurement, not a refusal one
        if g.counters.snapshot().get("rate_limited") or g.counters.snapshot().get("denied"):
            raise AssertionError(f"{g!r} refused requests during the benchmark")
    return statistics.median(times["before"]), statistics.median(times["after"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer and shorter rounds")
    p.add_argument("--baseline", default=BASELINE, help="git revision of the 'before' guard")
    p.add_argument("--hits", type=int, help="hits per round (default 200000, quick 50000)")
    p.add_argument("--repeat", type=int, help="rounds per guard (default 7, quick 3)")
    p.add_argument("--shared", action="store_true", help="after: shared behaviour detectors")
    args = p.parse_args(argv)
    n = args.hits or (50_000 if args.quick else 200_000)
    repeat = args.repeat or (3 if args.quick else 7)
    tmp = Path(tempfile.mkdtemp(prefix="pkgedge-guard-cost-"))
    try:
        with baseline_guard(args.baseline) as before:
            compared, moved = check_equivalence(
                before, tmp, 6000 if args.quick else 20000, args.shared
            )
            print(f"equivalence: {compared} requests, same outcomes (baseline {args.baseline}): ")
            print("  " + ", ".join(f"{k}={v}" for k, v in sorted(moved.items()) if v))
            rows = []
            for acl in (False, True):
                s = settings(tmp / f"t-{acl}", acl)
                for label, xffs in (("1 client", clients(1)), ("1,000 clients", clients(1000))):
                    reqs = [request(PAGE, x) for x in xffs]

                    def make(s: EdgeSettings = s) -> tuple[GuardLike, GuardLike]:
                        return before(s, Counters(1)), _after(s, Counters(1), args.shared)

                    b, a = bench_case(make, reqs, n, repeat)
                    config = "acl+xff" if acl else "defaults"
                    rows.append((config, label, b, a))
                    print(f"  {config:8} {label:14} before {b:7.2f} us, after {a:7.2f} us")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nguard cost per hit (admit + account), medians of {repeat} rounds of {n} hits;")
    print("one Python process, simulated clock, no I/O; lower is better")
    head = f"{'config':9} {'clients':14} {'before us':>10} {'after us':>9} {'after/before':>13}"
    print(head)
    print("-" * len(head))
    for config, label, b, a in rows:
        print(f"{config:9} {label:14} {b:10.2f} {a:9.2f} {a / b:13.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
