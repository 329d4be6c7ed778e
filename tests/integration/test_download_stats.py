"""Download analytics through a real 2-worker edge (issue 9): records only for whole-file
downloads, aggregates behind the API and the CLI, and a replay of the access log that gives
the same numbers, twice."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.edge import EdgeProcess, edge_command
from support.upstream import UpstreamIndex, populate_default

pytestmark = pytest.mark.timeout(120)

PIP = (
    'pip/24.0 {"ci":null,"installer":{"name":"pip","version":"24.0"},"python":"3.11.4",'
    '"system":{"name":"Linux","release":"6.1"}}'
)
UV = (
    'uv/0.4.1 {"installer":{"name":"uv","version":"0.4.1"},"python":"3.12.1",'
    '"system":{"name":"Darwin","release":"23"},"ci":true}'
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeProcess, UpstreamIndex]]:
    up = UpstreamIndex(tmp_path_factory.mktemp("upstream"))
    populate_default(up)
    up.start()
    base = tmp_path_factory.mktemp("edge")
    edge = EdgeProcess(
        up.index_url,
        base / "cache",
        workers=2,
        access_log=str(base / "access.log"),
        log_path=base / "err.log",
    )
    edge.start()
    yield edge, up
    edge.stop()
    up.stop()


def wait_for(check: Any, what: str) -> Any:
    for _ in range(100):  # the workers flush once a second
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def by(edge: EdgeProcess, name: str, query: str = "") -> dict[str, Any]:
    resp = edge.admin_request("GET", f"/stats/downloads/{name}?days=1{query}")
    assert resp.status_code == 200, resp.text + "\n" + edge.diagnostics()
    data: dict[str, Any] = resp.json()
    return data


def test_downloads_are_recorded_counted_and_replayed(
    setup: tuple[EdgeProcess, UpstreamIndex],
) -> None:
    edge, up = setup
    wheel = next(f for f in up.files("alpha") if f.filename.endswith(".whl"))
    sdist = next(f for f in up.files("gamma") if f.filename.endswith(".tar.gz"))
    for _ in range(3):
        assert edge.get(wheel.url_path, headers={"user-agent": PIP}).status_code == 200
    for _ in range(2):
        assert edge.get(wheel.url_path, headers={"user-agent": UV}).status_code == 200
    assert edge.get(sdist.url_path, headers={"user-agent": "curl/8.5.0"}).status_code == 200
    # none of these is a download
    meta = edge.get(wheel.url_path + ".metadata", headers={"user-agent": PIP})
    assert meta.status_code == 200
    ranged = edge.get(wheel.url_path, headers={"user-agent": PIP, "range": "bytes=0-9"})
    assert ranged.status_code == 206
    etag = ranged.headers["etag"]
    cond = edge.get(wheel.url_path, headers={"user-agent": PIP, "if-none-match": etag})
    assert cond.status_code == 304
    assert edge.head(wheel.url_path, headers={"user-agent": PIP}).status_code == 200
    sent = 10

    log = edge.cache_dir / "stats" / "downloads.jsonl"
    lines = wait_for(
        lambda: log.exists() and len(log.read_text().splitlines()) >= 6 and log.read_text(),
        "six download records",
    ).splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 6
    assert "127.0.0.1" not in "".join(lines)  # a salted hash at most
    assert {r["file_type"] for r in records} == {"bdist_wheel", "sdist"}
    assert sorted(r["installer"] for r in records) == ["library", "pip", "pip", "pip", "uv", "uv"]

    wait_for(lambda: by(edge, "alpha")["total"] == 5, "five downloads of alpha counted")
    alpha = by(edge, "alpha", "&by=installer")
    assert alpha["totals"] == {"pip": 3, "uv": 2}
    api = edge.admin_request("GET", "/stats/api/packages/Alpha/recent").json()
    assert api == {
        "data": {"last_day": 5, "last_week": 5, "last_month": 5},
        "package": "alpha",
        "type": "recent_downloads",
    }
    system = edge.admin_request("GET", "/stats/api/packages/alpha/system").json()["data"]
    assert {(r["category"], r["downloads"]) for r in system} == {("Linux", 3), ("Darwin", 2)}
    major = edge.admin_request("GET", "/stats/api/packages/alpha/python_major").json()["data"]
    assert [(r["category"], r["downloads"]) for r in major] == [("3", 5)]
    top = edge.admin_request("GET", "/stats/top").json()
    assert top["projects"][0] == {"project": "alpha", "downloads": 5}
    bad = edge.admin_request("GET", "/stats/api/packages/alpha/weekly")
    assert bad.status_code == 404 and "recent" in bad.text

    env = {"PKGEDGE_ADMIN_TOKEN": edge.token, "PATH": "/usr/bin:/bin", "COLUMNS": "120"}
    args = ["stats", "downloads", "alpha", "--by", "installer", "--days", "7"]
    out = subprocess.run(
        [*edge_command(), *args, "--admin-url", edge.admin_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "alpha: 5 download(s) in 7 day(s)" in out.stdout
    assert "pip" in out.stdout and "uv" in out.stdout

    # the access log holds every request once the workers flushed it
    access = Path(edge.access_log)
    wait_for(lambda: len(access.read_text().splitlines()) >= sent, "the access log")
    before = (by(edge, "alpha", "&by=installer"), by(edge, "gamma"))
    for _ in range(2):  # idempotent
        replayed = subprocess.run(
            [*edge_command(), "stats", "replay", str(access), "--cache-dir", str(edge.cache_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert replayed.returncode == 0, replayed.stderr
        assert "6 download(s) over 1 day(s)" in replayed.stdout
        assert (by(edge, "alpha", "&by=installer"), by(edge, "gamma")) == before
    missing = subprocess.run(
        [*edge_command(), "stats", "replay", "/nonexistent.log", "--cache-dir", "/tmp"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "no such log file" in missing.stderr
