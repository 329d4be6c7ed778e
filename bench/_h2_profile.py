"""``bench/h2_vs_nginx.py --profile S``: where one pkgedge worker's time goes on HTTP/2 hits.

The method of ``bench/profile_hit.py`` (``py-spy record --pid WORKER --nonblocking``, its
speedscope table) applied to an edge that is already running with TLS: the load (an h2load
process started by the caller) runs 1 s before and after the sampling window; requests are the
edge's /stats delta over the window, so µs per request are approximate by that second.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import _common as c
import profile_hit as ph


def profile_worker(
    procs: c.Processes,
    edge: c.Edge,
    start_load: Callable[[float], subprocess.Popen[bytes]],
    seconds: float,
    out: Path,
    rate: int = 250,
    top: int = 20,
) -> None:
    """Sample the edge's one worker for ``seconds`` under ``start_load(duration)``; print
    the top ``top`` functions by own time in µs per request."""
    if not ph.PYSPY.exists():
        print(f"\n--profile: {ph.PYSPY} not found: pip install -e '.[bench]'")
        return
    (worker,) = edge.workers()
    load = start_load(seconds + 2)
    time.sleep(1.0)
    argv = [
        str(ph.PYSPY), "record", "--pid", str(worker), "--rate", str(rate), "--duration",
        f"{seconds:g}", "--nonblocking", "--format", "speedscope", "--output", str(out),
    ]  # fmt: skip
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu0 = c.edge_stats(edge), c.cpu_seconds([worker])
    out_to = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    spy = procs.start("py-spy", argv, signal.SIGINT, **out_to)
    try:
        log, _ = spy.communicate(timeout=seconds + 30)
    finally:
        procs.stop(spy, 5)
    after, cpu = c.edge_stats(edge), c.cpu_seconds([worker]) - cpu0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        load.communicate(timeout=seconds + 60)
    finally:
        procs.stop(load, 5)
    if spy.returncode != 0 or not out.exists():
        print(f"\n--profile: py-spy exited with {spy.returncode}: {log.decode()[-1500:]}")
        return
    requests = max(1, after["requests"] - before["requests"])
    rows, counted, _ = ph.speedscope_table(out, rate, only_worker=False)
    us = 1e6 / rate / requests  # one sample, per request
    spy_cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    print(
        f"\npy-spy on the pkgedge worker {worker}, {seconds:g} s at {rate} Hz: {requests} "
        f"requests, {counted} samples = {counted * us:.1f} us/request sampled; worker CPU "
        f"{cpu / requests * 1e6:.1f} us/request ({cpu / seconds:.0%} of a core; py-spy and "
        f"h2load {spy_cpu / seconds:.0%}); speedscope file {out}"
    )
    print(f"top {top} functions by own time (us per request; total = anywhere on the stack):")
    print(f"{'own us/req':>10} {'own %':>6} {'total us/req':>12}  function (file:line)")
    for r in rows[:top]:
        print(
            f"{r['own'] * us:10.2f} {r['own'] / max(1, counted):6.1%} {r['total'] * us:12.2f}  "
            f"{r['function']} ({r['file']}:{r['line']})"
        )
    by_file: dict[str, int] = {}
    for r in rows:
        by_file[r["file"]] = by_file.get(r["file"], 0) + r["own"]
    print("own time by file (us per request):")
    for file, n in sorted(by_file.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{n * us:10.2f} {n / max(1, counted):6.1%}  {file}")
