"""pip and uv install through the edge over TLS (a test CA's certificate), each on the protocol
it negotiates: pip speaks HTTP/1.1 only; uv offers h2 by ALPN. The edge's access log says which
protocol every request came in on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.clients import clean_env, installer_command
from support.edge import EdgeFactory
from support.tls import LocalCA, make_test_ca
from support.upstream import UpstreamIndex

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


def protocols(log: Path, at_least: int) -> list[str]:
    """The ``http`` field of every access-log record (flushed about once a second)."""
    deadline = time.monotonic() + 20
    records: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        records = [json.loads(line) for line in text.splitlines()]
        if len(records) >= at_least:
            break
        time.sleep(0.1)
    return [r["http"] for r in records]


@pytest.mark.parametrize(("installer", "expected"), [("pip", {"1.1"}), ("uv", {"2"})])
def test_install_over_tls(
    installer: str,
    expected: set[str],
    ca: LocalCA,
    upstream: UpstreamIndex,
    edge_factory: EdgeFactory,
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    edge = edge_factory(extra_args=ca.edge_args(), access_log=str(log))
    assert edge.url.startswith("https://127.0.0.1:")
    target = tmp_path / "target"
    cmd = installer_command(installer, edge.url + "/simple/", target)
    if installer == "pip":
        cmd += ["--cert", str(ca.ca_cert)]
    env = clean_env(SSL_CERT_FILE=str(ca.ca_cert))
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests prefers them to --cert
        env.pop(name, None)
    proc = subprocess.run(
        [*cmd, "alpha"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
    check = subprocess.run(
        [sys.executable, "-c", "import alpha, beta; print(alpha.__version__, beta.__version__)"],
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(target)),
        timeout=60,
        check=False,
    )
    assert check.stdout.split() == ["1.0", "1.1"], check.stderr
    # two index pages and two files at least
    seen = protocols(log, 4)
    assert len(seen) >= 4 and set(seen) == expected, seen
