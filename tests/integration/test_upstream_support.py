"""The test upstream itself (tests/support): index format, negotiation, validators, ranges,
streaming, restart, request log, file-host mode, faults, and installable packages."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from support.clients import run_install
from support.edge import children_of, parse_cache_status
from support.packages import make_sdist, make_wheel, read_metadata
from support.upstream import (
    BIG_BLOCK,
    JSON_CT,
    PIP_ACCEPT,
    UpstreamIndex,
    expected_bytes,
    negotiate,
    sha256_of_big,
)


def _client(index: UpstreamIndex) -> httpx.Client:
    return httpx.Client(base_url=index.url, timeout=10.0)


def _links(page: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', page)


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PKGEDGE_"))}
    env.pop("PYTHONPATH", None)
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


# -- index format and negotiation ------------------------------------------------------------


def test_project_list_html_and_json(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        html = c.get("/simple/")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert html.headers["vary"] == "Accept"
        assert _links(html.text) == ["alpha/", "beta/", "gamma/"]
        js = c.get("/simple/", headers={"Accept": PIP_ACCEPT})
        assert js.headers["content-type"] == JSON_CT
        assert [p["name"] for p in js.json()["projects"]] == ["alpha", "beta", "gamma"]
        assert js.headers["etag"] != html.headers["etag"]
        assert js.headers["surrogate-key"] == "all-projects"


def test_project_page_html(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        r = c.get("/simple/beta/")
        assert r.status_code == 200
        assert r.headers["surrogate-key"] == "project/beta all-projects"
        anchors = re.findall(r"<a ([^>]*)>([^<]*)</a>", r.text)
        by_name = dict((name, attrs) for attrs, name in anchors)
        assert set(by_name) == {"beta-1.0-py3-none-any.whl", "beta-1.1-py3-none-any.whl"}
        attrs = by_name["beta-1.1-py3-none-any.whl"]
        assert 'data-requires-python="&gt;=3.8"' in attrs
        href = re.search(r'href="([^"]+)"', attrs).group(1)  # type: ignore[union-attr]
        url, _, frag = href.partition("#sha256=")
        assert url == "../../files/beta/beta-1.1-py3-none-any.whl"
        body = c.get(str(r.url.join(url))).content
        assert hashlib.sha256(body).hexdigest() == frag
        meta_hash = re.search(r'data-core-metadata="sha256=([0-9a-f]+)"', attrs).group(1)  # type: ignore[union-attr]
        assert f'data-dist-info-metadata="sha256={meta_hash}"' in attrs
        meta = c.get(str(r.url.join(url)) + ".metadata")
        assert meta.status_code == 200
        assert hashlib.sha256(meta.content).hexdigest() == meta_hash
        assert b"Requires-Python: >=3.8" in meta.content


def test_project_page_json(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        r = c.get("/simple/gamma/", headers={"Accept": PIP_ACCEPT})
        assert r.headers["content-type"] == JSON_CT
        assert r.headers["vary"] == "Accept"
        doc = r.json()
        assert doc["meta"]["api-version"] == "1.1"
        assert doc["name"] == "gamma"
        assert doc["versions"] == ["0.1"]
        files = {f["filename"]: f for f in doc["files"]}
        wheel, sdist = files["gamma-0.1-py3-none-any.whl"], files["gamma-0.1.tar.gz"]
        assert sdist["core-metadata"] is False
        assert wheel["core-metadata"] == wheel["dist-info-metadata"]
        for f in (wheel, sdist):
            data = c.get(str(r.url.join(f["url"]))).content
            assert hashlib.sha256(data).hexdigest() == f["hashes"]["sha256"]
            assert len(data) == f["size"]
        assert c.get(str(r.url.join(sdist["url"])) + ".metadata").status_code == 404


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        ("text/html", "text/html"),
        (PIP_ACCEPT, JSON_CT),
        ("application/vnd.pypi.simple.v1+html;q=0.2, " + JSON_CT, JSON_CT),
        (f"{JSON_CT};q=0.5, text/html;q=0.9", "text/html"),
        ("application/vnd.pypi.simple.latest+json", JSON_CT),
        ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
        ("image/png", None),
    ],
)
def test_negotiate(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def test_not_acceptable_and_redirects(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        assert c.get("/simple/alpha/", headers={"Accept": "image/png"}).status_code == 406
        r = c.get("/simple/Alpha_/")
        assert r.status_code == 404 or r.headers.get("location") == "/simple/alpha-/"
        r = c.get("/simple/ALPHA/")
        assert (r.status_code, r.headers["location"]) == (301, "/simple/alpha/")
        r = c.get("/simple/alpha")
        assert (r.status_code, r.headers["location"]) == (301, "/simple/alpha/")
        assert c.get("/simple/nope/").status_code == 404
        assert c.get("/files/alpha/nope.whl").status_code == 404
        assert c.post("/simple/").status_code == 405


def test_default_and_overridden_cache_headers(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        page = c.get("/simple/alpha/")
        assert page.headers["cache-control"] == "max-age=60, public"
        assert page.headers["surrogate-control"] == (
            "max-age=3600, stale-while-revalidate=60, stale-if-error=86400"
        )
        f = c.get("/files/alpha/alpha-1.0-py3-none-any.whl")
        assert f.headers["cache-control"] == "max-age=31536000, immutable, public"
        assert "surrogate-control" not in f.headers
        for r in (page, f):
            assert r.headers["etag"].startswith('"')
            assert r.headers["last-modified"].endswith("GMT")

        upstream.set_headers("/simple/", {"Cache-Control": "no-cache", "Surrogate-Control": None})
        upstream.set_headers("/simple/alpha/", {"Cache-Control": "private", "X-Extra": "1"})
        a, b = c.get("/simple/alpha/"), c.get("/simple/beta/")
        assert (a.headers["cache-control"], a.headers["x-extra"]) == ("private", "1")
        assert "surrogate-control" not in a.headers
        assert b.headers["cache-control"] == "no-cache"
        assert "x-extra" not in b.headers
        upstream.clear_headers()
        assert c.get("/simple/beta/").headers["cache-control"] == "max-age=60, public"


# -- validators ------------------------------------------------------------------------------


def test_conditional_requests_and_changes(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        first = c.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT})
        etag, lm = first.headers["etag"], first.headers["last-modified"]
        r = c.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT, "If-None-Match": etag})
        assert r.status_code == 304
        assert r.content == b""
        assert r.headers["etag"] == etag
        assert "cache-control" in r.headers
        assert "content-length" not in r.headers
        # another representation does not match the JSON ETag
        assert c.get("/simple/alpha/", headers={"If-None-Match": etag}).status_code == 200
        weak = {"Accept": PIP_ACCEPT, "If-None-Match": f'"x", W/{etag}'}
        r = c.get("/simple/alpha/", headers=weak)
        assert r.status_code == 304  # If-None-Match uses the weak comparison
        assert c.get("/simple/alpha/", headers={"If-Modified-Since": lm}).status_code == 304

        upstream.add_project("alpha", "2.0", requires_dist=["beta"])
        changed = c.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT, "If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != etag
        assert "2.0" in changed.json()["versions"]
        # a change within the same second still fails If-Modified-Since
        assert c.get("/simple/alpha/", headers={"If-Modified-Since": lm}).status_code == 200

        f = c.get("/files/alpha/alpha-1.0-py3-none-any.whl")
        r = c.get(
            "/files/alpha/alpha-1.0-py3-none-any.whl",
            headers={"If-None-Match": f.headers["etag"]},
        )
        assert r.status_code == 304
        r = c.get(
            "/files/alpha/alpha-1.0-py3-none-any.whl",
            headers={"If-Modified-Since": f.headers["last-modified"]},
        )
        assert r.status_code == 304


def test_new_project_changes_project_list(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        before = c.get("/simple/")
        upstream.add_project("delta", "0.1")
        after = c.get("/simple/", headers={"If-None-Match": before.headers["etag"]})
        assert after.status_code == 200
        assert "delta/" in _links(after.text)
        assert c.get("/simple/delta/").status_code == 200


# -- files: ranges and HEAD ------------------------------------------------------------------


def test_file_ranges_and_head(upstream: UpstreamIndex) -> None:
    path = "/files/alpha/alpha-1.0-py3-none-any.whl"
    full = (upstream.root / "alpha-1.0-py3-none-any.whl").read_bytes()
    size = len(full)
    with _client(upstream) as c:
        head = c.head(path)
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == size
        assert head.headers["accept-ranges"] == "bytes"
        etag = head.headers["etag"]

        cases = {
            "bytes=0-9": (0, 9),
            "bytes=10-": (10, size - 1),
            "bytes=-7": (size - 7, size - 1),
            f"bytes=5-{size + 100}": (5, size - 1),
            f"bytes=-{size + 100}": (0, size - 1),
        }
        for rng, (start, end) in cases.items():
            r = c.get(path, headers={"Range": rng})
            assert r.status_code == 206, rng
            assert r.headers["content-range"] == f"bytes {start}-{end}/{size}"
            assert r.content == full[start : end + 1]

        bad = c.get(path, headers={"Range": f"bytes={size}-"})
        assert bad.status_code == 416
        assert bad.headers["content-range"] == f"bytes */{size}"
        # multiple ranges and junk are ignored: the whole file
        for rng in ("bytes=0-1,4-5", "items=0-1", "bytes=x-y"):
            r = c.get(path, headers={"Range": rng})
            assert (r.status_code, r.content) == (200, full)
        # If-Range: honoured when the validator matches, else the whole file
        r = c.get(path, headers={"Range": "bytes=0-3", "If-Range": etag})
        assert (r.status_code, r.content) == (206, full[:4])
        r = c.get(path, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
        assert (r.status_code, r.content) == (200, full)
        r = c.head(path, headers={"Range": "bytes=0-3"})
        assert (r.status_code, r.headers["content-length"]) == (206, "4")


# -- generated big bodies --------------------------------------------------------------------


def test_expected_bytes_helpers() -> None:
    n = 3 * BIG_BLOCK + 123
    whole = expected_bytes(n)
    assert len(whole) == n
    assert hashlib.sha256(whole).hexdigest() == sha256_of_big(n)
    assert expected_bytes(n, 100, 200) == whole[100:201]
    assert expected_bytes(n, BIG_BLOCK - 5, BIG_BLOCK + 5) == whole[BIG_BLOCK - 5 : BIG_BLOCK + 6]
    assert expected_bytes(n, n - 10) == whole[-10:]
    # blocks differ, so a client repeating or skipping one is caught
    assert whole[:BIG_BLOCK] != whole[BIG_BLOCK : 2 * BIG_BLOCK]


def test_big_body_streams_and_ranges(upstream: UpstreamIndex) -> None:
    n = 5 * 1024 * 1024 + 17
    with _client(upstream) as c:
        h = hashlib.sha256()
        with c.stream("GET", f"/big/{n}") as r:
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == n
            assert r.headers["etag"] == f'"big-{n}"'
            received = 0
            for chunk in r.iter_bytes():
                h.update(chunk)
                received += len(chunk)
        assert received == n
        assert h.hexdigest() == sha256_of_big(n)

        r = c.get(f"/big/{n}", headers={"Range": "bytes=-1000"})
        assert r.status_code == 206
        assert r.content == expected_bytes(n, n - 1000)
        r = c.get(f"/big/{n}", headers={"Range": f"bytes={BIG_BLOCK - 3}-{2 * BIG_BLOCK}"})
        assert r.content == expected_bytes(n, BIG_BLOCK - 3, 2 * BIG_BLOCK)
        assert c.head(f"/big/{n}").headers["content-length"] == str(n)
        r = c.get(f"/big/{n}", headers={"If-None-Match": f'"big-{n}"'})
        assert r.status_code == 304


def test_big_body_throttle_is_observable(upstream: UpstreamIndex) -> None:
    n = 400_000
    rate = 1_000_000  # bytes/s → about 0.4 s in total
    with _client(upstream) as c:
        t0 = time.monotonic()
        first_at = None
        total = 0
        with c.stream("GET", f"/big/{n}?rate={rate}") as r:
            for chunk in r.iter_raw():
                if first_at is None:
                    first_at = time.monotonic() - t0
                total += len(chunk)
        elapsed = time.monotonic() - t0
    assert total == n
    assert elapsed >= 0.3
    assert first_at is not None and first_at < elapsed / 2  # bytes arrive while it streams
    # the server-wide throttle applies to files too
    upstream.throttle = 200_000
    try:
        t0 = time.monotonic()
        with _client(upstream) as c:
            assert len(c.get("/big/100000").content) == 100_000
        assert time.monotonic() - t0 >= 0.35
    finally:
        upstream.throttle = None


def test_big_file_listed_in_project(upstream: UpstreamIndex) -> None:
    n = 200_000
    entry = upstream.add_big_file("gamma", n)
    with _client(upstream) as c:
        doc = c.get("/simple/gamma/", headers={"Accept": PIP_ACCEPT}).json()
        f = next(f for f in doc["files"] if f["filename"] == entry.filename)
        assert f["hashes"]["sha256"] == sha256_of_big(n)
        assert f["size"] == n
        body = c.get(str(httpx.URL(upstream.project_url("gamma")).join(f["url"]))).content
        assert hashlib.sha256(body).hexdigest() == sha256_of_big(n)


# -- lifecycle and log -----------------------------------------------------------------------


def test_stop_and_restart_on_the_same_port(upstream: UpstreamIndex) -> None:
    port = upstream.port
    with _client(upstream) as c:
        assert c.get("/simple/").status_code == 200  # keep-alive connection now open
        upstream.stop()
        assert not upstream.running
        with pytest.raises(httpx.TransportError):
            c.get("/simple/")  # the kept-alive connection was cut, no new one connects
        with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as fresh:
            fresh.get(upstream.url + "/simple/")
        upstream.start()
        assert upstream.port == port
        assert c.get("/simple/").status_code == 200


def test_context_manager_and_stop_twice(tmp_path: Path) -> None:
    index = UpstreamIndex(tmp_path / "root")
    index.add_project("solo", "1.0")
    with index:
        assert httpx.get(index.url + "/simple/solo/").status_code == 200
    assert not index.running
    index.stop()
    # a directory of distributions is listed on construction
    again = UpstreamIndex(tmp_path / "root")
    assert again.projects() == ["solo"]


def test_request_log_and_count(upstream: UpstreamIndex) -> None:
    upstream.reset_log()
    with _client(upstream) as c:
        c.get("/simple/alpha/", headers={"X-Probe": "1"})
        c.get("/simple/alpha/")
        c.head("/files/alpha/alpha-1.0-py3-none-any.whl")
        c.get("/simple/beta/")
    assert upstream.count("/simple/alpha/") == 2
    assert upstream.count("/simple/") == 3
    assert upstream.count("/files/", method="HEAD") == 1
    assert upstream.count("/files/", method="GET") == 0
    with _client(upstream) as c:
        c.get("/files/alpha/alpha-1.0-py3-none-any.whl.metadata")
    wheel = "/files/alpha/alpha-1.0-py3-none-any.whl"
    assert upstream.count(wheel) == 2
    assert upstream.count(wheel, exact=True) == 1
    method, path, headers = upstream.log[0]
    assert (method, path, headers["x-probe"]) == ("GET", "/simple/alpha/", "1")
    upstream.reset_log()
    assert upstream.count() == 0


def test_log_is_thread_safe(upstream: UpstreamIndex) -> None:
    upstream.reset_log()

    def worker() -> None:
        with _client(upstream) as c:
            for _ in range(10):
                assert c.get("/simple/beta/").status_code == 200

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert upstream.count("/simple/beta/") == 80


# -- file host mode --------------------------------------------------------------------------


def test_file_host_mode(upstream_factory) -> None:  # type: ignore[no-untyped-def]
    index: UpstreamIndex = upstream_factory(file_host=True)
    assert index.file_server is not None
    assert index.files_url != index.url
    with _client(index) as c:
        page = c.get("/simple/alpha/")
        hrefs = _links(page.text)
        assert hrefs and all(h.startswith(index.files_url + "/files/alpha/") for h in hrefs)
        doc = c.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT}).json()
        assert all(f["url"].startswith(index.files_url + "/files/") for f in doc["files"])
        # the index server does not serve files itself
        assert c.get("/files/alpha/alpha-1.0-py3-none-any.whl").status_code == 404
    url = index.file_url("alpha-1.0-py3-none-any.whl")
    r = httpx.get(url)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == index.file("alpha-1.0-py3-none-any.whl").sha256
    assert index.count("/files/", server="files") == 1
    assert index.count("/files/", server="index") == 1
    assert index.count("/simple/", server="files") == 0
    # stop only the file host, then bring it back on the same port
    port = index.file_server.port
    index.file_server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    assert httpx.get(index.url + "/simple/alpha/").status_code == 200
    index.file_server.start()
    assert index.file_server.port == port
    assert httpx.get(url).status_code == 200


# -- faults ----------------------------------------------------------------------------------


def test_fail_for_a_number_of_requests(upstream: UpstreamIndex) -> None:
    upstream.fail("/simple/alpha/", 503, times=2)
    with _client(upstream) as c:
        assert c.get("/simple/alpha/").status_code == 503
        assert c.get("/simple/beta/").status_code == 200
        assert c.get("/simple/alpha/").status_code == 503
        assert c.get("/simple/alpha/").status_code == 200
        upstream.fail("/simple/", 500)
        assert c.get("/simple/beta/").status_code == 500
        upstream.clear_faults()
        assert c.get("/simple/beta/").status_code == 200
    assert upstream.count("/simple/alpha/") == 3  # failed requests are logged too


def test_hang_reset_and_truncate(upstream: UpstreamIndex) -> None:
    upstream.hang("/simple/alpha/")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(upstream.url + "/simple/alpha/", timeout=0.5)
    upstream.clear_faults()
    assert httpx.get(upstream.url + "/simple/alpha/", timeout=5).status_code == 200

    upstream.hang("/simple/beta/", seconds=0.2, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(upstream.url + "/simple/beta/", timeout=5)  # closed without an answer

    upstream.reset("/simple/gamma/", times=1)
    with pytest.raises(httpx.TransportError):
        httpx.get(upstream.url + "/simple/gamma/", timeout=5)
    assert httpx.get(upstream.url + "/simple/gamma/", timeout=5).status_code == 200

    upstream.truncate("/big/", after_bytes=1000, times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(upstream.url + "/big/100000", timeout=5)
    assert len(httpx.get(upstream.url + "/big/100000", timeout=5).content) == 100000


def test_stop_wakes_hanging_requests(upstream: UpstreamIndex) -> None:
    upstream.hang("/simple/")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(upstream.url + "/simple/", timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    upstream.stop()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 3
    assert errors


def test_gzip_pages(upstream_factory) -> None:  # type: ignore[no-untyped-def]
    index: UpstreamIndex = upstream_factory(gzip_pages=True)
    with _client(index) as c:
        gz = c.get("/simple/alpha/", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["content-encoding"] == "gzip"
        assert gz.headers["vary"] == "Accept, Accept-Encoding"
        assert gz.headers["etag"].endswith('-gzip"')
        plain = c.get("/simple/alpha/", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert gz.text == plain.text


# -- the packages themselves -----------------------------------------------------------------


def test_wheel_contents(tmp_path: Path) -> None:
    import zipfile

    whl = make_wheel(
        tmp_path,
        "My.Pkg",
        "1.2",
        requires_dist=["beta>=1"],
        requires_python=">=3.9",
        extra_files={"my_pkg/data.txt": "hi"},
    )
    assert whl.name == "my_pkg-1.2-py3-none-any.whl"
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        assert {"my_pkg/__init__.py", "my_pkg/data.txt", "my_pkg-1.2.dist-info/RECORD"} <= names
        record = zf.read("my_pkg-1.2.dist-info/RECORD").decode()
    assert "my_pkg/data.txt,sha256=" in record
    meta = read_metadata(whl)
    assert meta is not None
    assert b"Requires-Dist: beta>=1" in meta
    assert b"Requires-Python: >=3.9" in meta
    # deterministic
    again = make_wheel(
        tmp_path / "b",
        "My.Pkg",
        "1.2",
        requires_dist=["beta>=1"],
        requires_python=">=3.9",
        extra_files={"my_pkg/data.txt": "hi"},
    )
    assert again.read_bytes() == whl.read_bytes()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_packages_install_offline_from_upstream(
    installer: str, upstream: UpstreamIndex, tmp_path: Path
) -> None:
    """pip and uv resolve and install through the test upstream directly (wheels, the
    dependency, PEP 658 metadata, and an sdist built with the in-tree backend)."""
    upstream.add_project("epsilon", "0.3", wheel=False, sdist=True, requires_dist=["gamma"])
    target = tmp_path / "target"
    proc = run_install(installer, upstream.index_url, target, "alpha", "epsilon")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = _clean_env() | {"PYTHONPATH": str(target)}
    out = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import alpha, beta, gamma, epsilon; "
                "print(alpha.__version__, beta.__version__, gamma.__version__, epsilon.hello())",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        .stdout.strip()
        .split(maxsplit=3)
    )
    assert out == ["1.0", "1.1", "0.1", "hello from epsilon 0.3"]
    assert upstream.count("/files/alpha/alpha-1.0-py3-none-any.whl") >= 1
    assert upstream.count("/files/epsilon/epsilon-0.3.tar.gz") >= 1
    # every request was for the index or its files
    assert all(r.path.startswith(("/simple/", "/files/")) for r in upstream.log)


def test_sdist_layout(tmp_path: Path) -> None:
    import tarfile

    sd = make_sdist(tmp_path, "Zeta-Pkg", "2.0", requires_dist=["alpha"])
    assert sd.name == "zeta_pkg-2.0.tar.gz"
    with tarfile.open(sd) as tf:
        names = set(tf.getnames())
        pyproject = tf.extractfile("zeta_pkg-2.0/pyproject.toml").read().decode()  # type: ignore[union-attr]
    assert {
        "zeta_pkg-2.0/PKG-INFO",
        "zeta_pkg-2.0/pyproject.toml",
        "zeta_pkg-2.0/_build/backend.py",
        "zeta_pkg-2.0/zeta_pkg/__init__.py",
    } <= names
    assert "requires = []" in pyproject
    meta = read_metadata(sd)
    assert meta is not None
    assert b"Requires-Dist: alpha" in meta
    assert make_sdist(tmp_path / "b", "Zeta-Pkg", "2.0", requires_dist=["alpha"]).read_bytes() == (
        sd.read_bytes()
    )


# -- edge helpers that need no edge ----------------------------------------------------------


def test_parse_cache_status() -> None:
    assert parse_cache_status("pkgedge; hit; ttl=3591") == {"hit": True, "ttl": "3591"}
    assert parse_cache_status("other; hit, pkgedge; fwd=miss; stored") == {
        "fwd": "miss",
        "stored": True,
    }
    assert parse_cache_status(None) == {}
    assert parse_cache_status("other; hit") == {}


def test_children_of_reads_proc() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert proc.pid in children_of(os.getpid())
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in children_of(os.getpid())


def test_json_pages_are_valid_for_every_project(upstream: UpstreamIndex) -> None:
    with _client(upstream) as c:
        for name in upstream.projects():
            doc = json.loads(c.get(f"/simple/{name}/", headers={"Accept": JSON_CT}).content)
            assert doc["name"] == name
            assert {f["filename"] for f in doc["files"]} == {
                f.filename for f in upstream.files(name)
            }
