"""TLS on the client side, and the pipeline's trace of its decisions."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import httpx

from support.edge import EdgeFactory, EdgeProcess
from support.upstream import UpstreamIndex


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_listener_serves_pages_and_large_files(
    tmp_path: Path, upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    cert, key = _self_signed(tmp_path)
    edge = edge_factory(extra_args=["--tls-cert", str(cert), "--tls-key", str(key)])
    assert edge.url.startswith("https://")
    size = 3 * 1024 * 1024
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=30) as client:
        r = client.get(edge.url + "/simple/alpha/")
        assert r.status_code == 200 and b"alpha" in r.content
        first = client.get(f"{edge.url}/big/{size}")
        second = client.get(f"{edge.url}/big/{size}")  # a disk hit: no sendfile under TLS
    assert len(first.content) == len(second.content) == size
    assert first.content == second.content
    assert "hit" in second.headers["cache-status"]


def test_trace_follows_the_phase_table(upstream: UpstreamIndex, edge: EdgeProcess) -> None:
    r = edge.get("/simple/gamma/", headers={"Pkgedge-Trace": "1"})
    trace = r.headers["pkgedge-trace"]
    # recv's decision is the built-in rules' (default.vcl line 20: return(lookup))
    assert trace == (
        "recv:rule@20(lookup); hash:key(/simple/gamma/); lookup:; miss:miss(not in cache); "
        "fetch:fetch; deliver:stream"
    )
    r = edge.get("/simple/gamma/", headers={"Pkgedge-Trace": "1"})
    assert r.headers["pkgedge-trace"] == (
        "recv:rule@20(lookup); hash:key(/simple/gamma/); lookup:; hit:fresh(fresh); deliver:stored"
    )
    r = edge.get("/simple/gamma/", headers={"Pkgedge-Trace": "1", "Cache-Control": "no-cache"})
    assert "hit:revalidate(request-no-cache); miss:revalidate" in r.headers["pkgedge-trace"]
