"""Where one pkgedge worker spends its time on cache hits: a sampling profile under wrk load.

Run with ``.venv/bin/python bench/profile_hit.py`` (needs py-spy: ``pip install -e '.[bench]'``;
``--quick`` for a short run).

One invocation builds everything in a temporary directory and removes it at the end (also on
Ctrl-C or an error): an origin nginx serving a 10 KB simple page, and ``pkgedge edge
--workers 1`` in front of it (512 MB memory tier, access log off; protection on with limits no
benchmark reaches, as in ``bench/edge_vs_nginx.py``, or ``--protection off``). The page is
warmed until it is a hit, then ``wrk -t1 -c50`` loads it while the worker is profiled. The
first method that works is used (``--method`` picks one):

1. ``pid``: ``py-spy record --pid WORKER --nonblocking`` for ``--duration`` s while wrk runs
   (wrk starts 1 s before and stops 1 s after); requests = the edge's /stats ``requests``
   delta over the sampling window. Needs ptrace on another process;
2. ``spawn``: ``py-spy record --subprocesses --nonblocking -- pkgedge edge ...``: py-spy
   starts the edge and follows the forked worker until the edge is stopped; only samples with
   the worker's ``_worker`` frame count (not the parent's start-up), requests = all the
   worker's requests (the warm-up's few too);
3. ``cprofile``: the edge runs in a wrapper that wraps the worker's main function in
   cProfile and dumps its stats when the worker stops. Deterministic, with its own overhead
   (it slows pure-Python code more than C), and idle waiting counts as the own time of the
   loop's C methods.

The output file goes to ``bench/results/`` (gitignored): a speedscope JSON (open it at the
speedscope web app or with ``speedscope FILE``) for py-spy, a pstats file for cProfile. Then
the top ``--top`` functions by own time (py-spy: samples where the function is the leaf;
idle samples are not recorded) are printed with their time per request: own samples /
sampling rate / requests. Total is the time of samples with the function anywhere on the
stack. The worker's CPU per request from /proc is shown for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c
from _common import KB

RESULTS = c.ROOT / "bench" / "results"
PYSPY = c.ROOT / ".venv" / "bin" / "py-spy"
PAGE_PATH = "/simple/bench/"
UNLIMITED = "1000000000/1000000000"
WORKER_FRAME = "_worker"  # pkgedge.server.workers._worker: the forked worker's main function

#: runs ``pkgedge edge`` with the worker's main function under cProfile
CPROFILE_WRAPPER = """\
import cProfile, sys
from pkgedge.server import workers

out = sys.argv[1]
run_worker = workers._worker

def profiled(*args, **kwargs):
    prof = cProfile.Profile()
    prof.enable()
    try:
        run_worker(*args, **kwargs)
    finally:
        prof.disable()
        prof.dump_stats(out)

workers._worker = profiled
from pkgedge.cli import main
sys.exit(main(sys.argv[2:]))
"""


class MethodFailed(Exception):
    """This profiling method cannot run here: try the next."""


def make_origin(root: Path) -> None:
    d = root / "simple" / "bench"
    d.mkdir(parents=True)
    (d / "index.html").write_text(c.simple_page("bench", [], 10 * KB, "/files/bench/"))


def edge_extra(args: argparse.Namespace) -> tuple[str, ...]:
    rules = ("--rules", str(Path(args.rules).resolve())) if args.rules else ()
    rules += ("--backends", args.backends) if args.backends else ()
    if args.protection == "off":
        return ("--protection", "off", *rules)
    return ("--rate-limit", UNLIMITED, "--throttled-rate-limit", UNLIMITED, *rules)


def warm(edge: c.Edge) -> None:
    for _ in range(5):
        status, hdrs, _ = c.fetch(edge.port, PAGE_PATH)
        if status == 200 and c.is_edge_hit(hdrs):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the edge never answered a hit: {status} {hdrs}")


def start_wrk(procs: c.Processes, lua: Path, port: int, seconds: float) -> subprocess.Popen[bytes]:
    argv = [
        "wrk", "-t1", "-c50", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(lua),
        f"http://{c.HOST}:{port}{PAGE_PATH}",
    ]  # fmt: skip
    return procs.start("wrk", argv, signal.SIGINT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish_wrk(procs: c.Processes, proc: subprocess.Popen[bytes], seconds: float) -> dict:
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        procs.stop(proc, 5)
    parsed = c.parse_wrk(out.decode(errors="replace"))
    if "lua" not in parsed:
        raise RuntimeError(f"could not parse wrk output:\n{out.decode(errors='replace')}")
    return parsed


def spy_mode(args: argparse.Namespace) -> list[str]:
    """Sample without pausing the worker; --native (C frames) needs pausing it."""
    return ["--native"] if args.native else ["--nonblocking"]


# -- methods -----------------------------------------------------------------------------------
def by_pid(args: argparse.Namespace, procs: c.Processes, tmp: Path, origin: int, lua: Path,
           out: Path) -> dict[str, Any]:  # fmt: skip
    edge = c.start_edge(procs, tmp / "edge-pid", origin, 1, edge_extra(args))
    try:
        warm(edge)
        (worker,) = edge.workers()
        wrk = start_wrk(procs, lua, edge.port, args.duration + 2)
        time.sleep(1.0)
        argv = [
            str(PYSPY), "record", "--pid", str(worker), "--rate", str(args.rate),
            "--duration", f"{args.duration:g}", *spy_mode(args), "--format", "speedscope",
            "--output", str(out),
        ]  # fmt: skip
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        spy = procs.start("py-spy", argv, signal.SIGINT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)  # fmt: skip
        try:
            # count requests from the moment py-spy has attached and samples
            assert spy.stdout is not None
            first = b""
            while line := spy.stdout.readline():
                first += line
                if b"Sampling process" in line:
                    break
            before = c.edge_stats(edge)
            cpu0 = c.cpu_seconds([worker])
            text, _ = spy.communicate(timeout=args.duration + 30)
            text = first + text
        finally:
            procs.stop(spy, 5)
        cpu = c.cpu_seconds([worker]) - cpu0
        after = c.edge_stats(edge)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        parsed = finish_wrk(procs, wrk, args.duration + 2)
        log = text.decode(errors="replace").strip()
        if spy.returncode != 0 or not out.exists():
            raise MethodFailed(f"py-spy --pid exited with {spy.returncode}: {log[-1500:]}")
        requests = after["requests"] - before["requests"]
        return {
            "method": f"py-spy record --pid (worker {worker}, {args.duration:g} s window)",
            "requests": requests,
            "hits": after["hits"] - before["hits"],
            "cpu_s": cpu,
            "profiler_cpu_s": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime,
            "window_s": args.duration,
            "wrk": parsed,
            "log": log,
        }
    finally:
        procs.stop(edge.proc)


def by_spawn(args: argparse.Namespace, procs: c.Processes, tmp: Path, origin: int, lua: Path,
             out: Path) -> dict[str, Any]:  # fmt: skip
    d = tmp / "edge-spawn"
    (d / "cache").mkdir(parents=True)
    stdout, stderr = d / "stdout.log", d / "stderr.log"
    argv = [
        str(PYSPY), "record", "--subprocesses", "--rate", str(args.rate), *spy_mode(args),
        "--format", "speedscope", "--output", str(out),
        "--", *c.edge_argv(origin, d / "cache", 1, edge_extra(args)),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(stdout, "wb") as fo, open(stderr, "wb") as fe:
        spy = procs.start("py-spy", argv, signal.SIGINT, stdout=fo, stderr=fe, env=env)
    try:
        try:
            edge = c.edge_ready(spy, stdout, stderr, "pkgedge under py-spy")
        except RuntimeError as exc:
            raise MethodFailed(str(exc)) from exc
        warm(edge)
        parent = next(p for p in c.children(spy.pid) if "pkgedge" in c.cmdline(p))
        (worker,) = c.children(parent)
        cpu0 = c.cpu_seconds([worker])
        wrk = start_wrk(procs, lua, edge.port, args.duration)
        parsed = finish_wrk(procs, wrk, args.duration)
        cpu = c.cpu_seconds([worker]) - cpu0
        time.sleep(0.3)
        final = c.edge_stats(edge)
        os.kill(parent, signal.SIGTERM)  # py-spy writes its file when the edge has exited
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired as exc:
            raise MethodFailed("py-spy did not exit after the edge stopped") from exc
    finally:
        procs.stop(spy, 10)
    log = (stdout.read_text(errors="replace") + stderr.read_text(errors="replace")).strip()
    if not out.exists():
        raise MethodFailed(f"py-spy (spawning the edge) wrote nothing, exit {spy.returncode}: "
                           f"{log[-1500:]}")  # fmt: skip
    return {
        "method": "py-spy record --subprocesses -- pkgedge edge (whole worker life)",
        "requests": final["requests"],
        "hits": final["hits"],
        "cpu_s": cpu,
        "wrk": parsed,
        "log": log,
    }


def by_cprofile(args: argparse.Namespace, procs: c.Processes, tmp: Path, origin: int,
                lua: Path, out: Path) -> dict[str, Any]:  # fmt: skip
    d = tmp / "edge-cprofile"
    d.mkdir()
    edge_args = c.edge_argv(origin, d / "cache", 1, edge_extra(args))[1:]
    python = c.ROOT / ".venv" / "bin" / "python"
    argv = [str(python), "-c", CPROFILE_WRAPPER, str(out), *edge_args]
    edge = c.start_edge(procs, d, origin, 1, name="pkgedge under cProfile", argv=argv)
    try:
        warm(edge)
        (worker,) = edge.workers()
        cpu0 = c.cpu_seconds([worker])
        parsed = finish_wrk(procs, start_wrk(procs, lua, edge.port, args.duration), args.duration)
        cpu = c.cpu_seconds([worker]) - cpu0
        time.sleep(0.3)
        final = c.edge_stats(edge)
    finally:
        procs.stop(edge.proc)
    if not out.exists():
        raise MethodFailed(
            f"the cProfile wrapper wrote no stats: {edge.stderr.read_text()[-1500:]}"
        )
    return {
        "method": "cProfile around the worker's main function (whole worker life)",
        "requests": final["requests"],
        "hits": final["hits"],
        "cpu_s": cpu,
        "wrk": parsed,
        "log": "",
    }


# -- reading the profiles ----------------------------------------------------------------------
def short(path: str) -> str:
    """The path from the package on: pkgedge/..., uvloop/..., asyncio/..."""
    for marker in ("/src/", "/site-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return re.sub(r"^.*/lib/python3\.\d+/", "", path)


def speedscope_table(path: Path, rate: int, only_worker: bool) -> tuple[list[dict], int, int]:
    """(rows by own samples, samples counted, samples dropped) from a py-spy speedscope file."""
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    names = [(f["name"], short(f.get("file") or "")) for f in frames]
    worker_idx = {i for i, f in enumerate(frames) if f["name"] == WORKER_FRAME}
    own: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    lines: dict[tuple[str, str], Counter[int]] = {}
    counted = dropped = 0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            n = round(weight * rate) if profile.get("unit") == "seconds" else int(weight)
            if not stack or (only_worker and not worker_idx.intersection(stack)):
                dropped += n
                continue
            counted += n
            leaf = names[stack[-1]]
            own[leaf] += n
            lines.setdefault(leaf, Counter())[frames[stack[-1]].get("line") or 0] += n
            for key in {names[i] for i in stack}:
                total[key] += n
    rows = [
        {
            "function": name,
            "file": file,
            "line": lines[(name, file)].most_common(1)[0][0],
            "own": n,
            "total": total[(name, file)],
        }
        for (name, file), n in own.most_common()
    ]
    return rows, counted, dropped


def print_pyspy(result: dict[str, Any], out: Path, args: argparse.Namespace) -> list[dict]:
    only_worker = result["method"].startswith("py-spy record --subprocesses")
    rows, counted, dropped = speedscope_table(out, args.rate, only_worker)
    req = max(1, result["requests"])
    us = 1e6 / args.rate / req  # one sample, per request, in microseconds
    cpu_us = result["cpu_s"] / req * 1e6
    print(
        f"\n{counted} samples at {args.rate} Hz in the worker (idle not sampled"
        + (f"; {dropped} outside the worker dropped" if dropped else "")
        + f") over {result['requests']} requests: {counted * us:.1f} us/request sampled; "
        f"worker CPU from /proc {cpu_us:.1f} us/request"
    )
    if "window_s" in result:
        print(
            f"  the worker was sampled busy in {counted / (args.rate * result['window_s']):.0%} "
            f"of the {result['window_s']:g} s window and used "
            f"{result['cpu_s'] / result['window_s']:.0%} of a core; py-spy itself used "
            f"{result['profiler_cpu_s'] / result['window_s']:.0%} of a core"
        )
    print(
        "  (a sample counts when the thread is not sleeping: on a busy machine that includes "
        "time spent runnable but waiting for a core, so sampled time can exceed CPU time; "
        "'CPU us/req' spreads the /proc CPU time over the functions by their share of samples)"
    )
    print(f"\ntop {args.top} functions by own time (us per request; % of the samples):")
    head = (
        f"{'own us/req':>10} {'CPU us/req':>10} {'own %':>6} {'total us/req':>12}  "
        "function (file:line)"
    )
    print(head)
    print("-" * 110)
    for r in rows[: args.top]:
        share = r["own"] / max(1, counted)
        r["own_us_per_req"] = r["own"] * us
        r["cpu_us_per_req"] = share * cpu_us
        print(
            f"{r['own'] * us:10.2f} {share * cpu_us:10.2f} {share * 100:6.1f} "
            f"{r['total'] * us:12.2f}  {r['function']} ({r['file']}:{r['line']})"
        )
    return rows


def print_cprofile(result: dict[str, Any], out: Path, args: argparse.Namespace) -> list[dict]:
    stats = pstats.Stats(str(out))
    req = max(1, result["requests"])
    entries = []
    for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        entries.append({"function": name, "file": short(file), "line": line, "calls": nc,
                        "own_s": tt, "total_s": ct})  # fmt: skip
    entries.sort(key=lambda e: e["own_s"], reverse=True)
    own_total = sum(e["own_s"] for e in entries)
    print(
        f"\ncProfile over {result['requests']} requests: {own_total / req * 1e6:.1f} us/request "
        f"of profiled time (idle waiting included), worker CPU from /proc "
        f"{result['cpu_s'] / req * 1e6:.1f} us/request (with cProfile's overhead)"
    )
    print(f"\ntop {args.top} functions by own time (us per request):")
    head = f"{'own us/req':>10} {'calls/req':>9} {'total us/req':>12}  function (file:line)"
    print(head)
    print("-" * 100)
    for e in entries[: args.top]:
        print(
            f"{e['own_s'] / req * 1e6:10.2f} {e['calls'] / req:9.2f} "
            f"{e['total_s'] / req * 1e6:12.2f}  {e['function']} ({e['file']}:{e['line']})"
        )
    return entries


# -- main --------------------------------------------------------------------------------------
METHODS = {"pid": by_pid, "spawn": by_spawn, "cprofile": by_cprofile}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 4 s profile")
    p.add_argument("--duration", type=float, help="seconds of profiled load (default 15)")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--method", choices=("auto", *METHODS), default="auto")
    p.add_argument("--protection", choices=("on", "off"), default="on")
    p.add_argument("--rules", help="a rules configuration for the edge (--rules FILE)")
    p.add_argument("--backends", help="the edge's --backends NAME=URL,... (the rules' names)")
    p.add_argument("--user-agent", help="a User-Agent header for wrk's requests")
    p.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 4.0 if args.quick else 15.0
    if args.duration <= 0 or args.rate < 1 or args.top < 1:
        p.error("--duration, --rate and --top must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not c.require(("nginx", "wrk")):
        return 2
    return c.run_main("pkgedge-profile-", lambda procs, tmp: bench(args, procs, tmp))


def bench(args: argparse.Namespace, procs: c.Processes, tmp: Path) -> int:
    methods = list(METHODS) if args.method == "auto" else [args.method]
    if not PYSPY.exists():
        print(f"{PYSPY} not found (pip install -e '.[bench]'): cProfile only")
        methods = [m for m in methods if m == "cprofile"] or ["cprofile"]
    print(
        f"profile of one pkgedge worker on 10 KB page hits (protection {args.protection}), "
        f"wrk -t1 -c50, {args.duration:g} s; methods to try: {', '.join(methods)}"
    )
    print(f"load average before the run: {c.load_average()}")
    print(f"pkgedge source fingerprint: {c.source_fingerprint()}", flush=True)
    make_origin(tmp / "origin")
    _, origin = c.start_origin_nginx(procs, tmp / "nginx-origin", tmp / "origin")
    lua = tmp / "done.lua"
    ua = f"wrk.headers[{json.dumps('User-Agent')}] = {json.dumps(args.user_agent)}\n"
    lua.write_text((ua if args.user_agent else "") + c.WRK_LUA)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for method in methods:
        name = f"profile-hit-{stamp}-{method}"
        out = RESULTS / (name + (".pstats" if method == "cprofile" else ".speedscope.json"))
        print(f"\n== {method}", flush=True)
        try:
            result = METHODS[method](args, procs, tmp, origin, lua, out)
        except MethodFailed as exc:
            print(f"  ! {method} failed: {exc}", flush=True)
            continue
        wrk = result["wrk"]["lua"]
        secs = wrk["duration_us"] / 1e6
        print(f"method: {result['method']}")
        print(
            f"wrk: {wrk['requests'] / secs:.1f} req/s over {secs:.1f} s (while profiled); "
            f"edge requests counted: {result['requests']}, hits {result['hits']}"
        )
        if result["log"]:
            for line in result["log"].splitlines()[-3:]:
                print(f"  py-spy: {line}")
        if method == "cprofile":
            rows = print_cprofile(result, out, args)
        else:
            rows = print_pyspy(result, out, args)
        table = RESULTS / f"{name}.top.json"
        table.write_text(json.dumps({"result": result, "rows": rows[:200]}, indent=1))
        print(f"\nprofile: {out.relative_to(c.ROOT)}; table: {table.relative_to(c.ROOT)}")
        return 0
    print("\nno profiling method worked", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
