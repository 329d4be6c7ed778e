"""Helpers of ``bench/h2_vs_nginx.py``: a self-signed certificate, one HTTP/2 GET (the ``h2``
library over a real TLS socket), h2load's output, and ``--profile``.

``--profile S`` applies the method of ``bench/profile_hit.py`` (``py-spy record --pid WORKER
--nonblocking``, its speedscope table) to an edge that already runs with TLS: the load (an
h2load process started by the caller) runs 1 s before and after the sampling window; requests
are the edge's /stats delta over the window, so µs per request are approximate by that second.
"""

from __future__ import annotations

import hashlib
import re
import resource
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events

import _common as c
import profile_hit as ph
from _common import HOST, KB


def make_cert(d: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1; return (certificate, key)."""
    d.mkdir(parents=True)
    cert, key = d / "cert.pem", d / "key.pem"
    argv = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl failed:\n{proc.stderr}")
    return cert, key


def h2_get(port: int, path: str, cafile: Path) -> tuple[int, dict[str, str], str]:
    """GET over TLS + HTTP/2 (refuses anything but ALPN h2); status, headers, body sha256."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((HOST, port), timeout=60) as raw,
        ctx.wrap_socket(raw, server_hostname=HOST) as sock,
    ):
        if sock.selected_alpn_protocol() != "h2":
            raise RuntimeError(f":{port} negotiated {sock.selected_alpn_protocol()!r}, not h2")
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        req = [(":method", "GET"), (":scheme", "https"), (":authority", f"{HOST}:{port}")]
        conn.send_headers(sid, [*req, (":path", path)], end_stream=True)
        sock.sendall(conn.data_to_send())
        headers: dict[str, str] = {}
        body = hashlib.sha256()
        while True:
            data = sock.recv(256 * KB)
            if not data:
                raise RuntimeError(f":{port} closed the connection before the end of {path}")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    headers = {str(k): str(v) for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    body.update(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    raise RuntimeError(f":{port} reset the stream of {path}: {ev.error_code!r}")
                elif isinstance(ev, h2.events.StreamEnded):
                    return int(headers.get(":status", 0)), headers, body.hexdigest()
            sock.sendall(conn.data_to_send())


def parse_h2load(text: str) -> dict[str, float]:
    """requests done/succeeded/failed, data bytes, seconds, mean and max request time (ms)."""
    out: dict[str, float] = {}
    if m := re.search(r"finished in ([\d.]+)(m?s),", text):
        out["secs"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    if m := re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", text):  # fmt: skip
        for i, key in enumerate(("total", "started", "done", "ok", "failed", "errored"), 1):
            out[key] = int(m.group(i))
    if m := re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text):
        out["2xx"] = int(m.group(1))
        out["non_2xx"] = sum(int(m.group(i)) for i in (2, 3, 4))
    if m := re.search(r"traffic: .*?, [\d.]+[KMG]?B \((\d+)\) data", text):
        out["data_bytes"] = int(m.group(1))
    num = r"\s+([\d.]+)(us|ms|s)"
    if m := re.search(r"time for request:" + num * 3, text):
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
        out["max_ms"] = float(m.group(3)) * scale[m.group(4)]
        out["mean_ms"] = float(m.group(5)) * scale[m.group(6)]
    return out


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
