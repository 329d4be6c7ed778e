"""End to end with real clients: twine and uv publish to the origin through the edge; pip and
uv install through the edge; purges make changes visible at once; yanked releases are
skipped; a mirrored project installs with its upstream stopped; PostgreSQL + S3; pkgedge up."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.clients import clean_env, run_install
from support.edge import EdgeFactory, EdgeProcess, edge_command
from support.origin import OriginProcess, twine_upload, uv_publish
from support.packages import make_sdist, make_wheel
from support.postgres import PostgresServer
from support.s3 import S3Server
from support.upstream import PIP_ACCEPT, UpstreamIndex

pytestmark = pytest.mark.e2e


def pip_install(index: str, target: Path, *reqs: str) -> subprocess.CompletedProcess[str]:
    return run_install("pip", index, target, *reqs)


def uv_install(index: str, target: Path, *reqs: str) -> subprocess.CompletedProcess[str]:
    return run_install("uv", index, target, *reqs)


def installed_version(target: Path, dist: str) -> str:
    found = sorted(target.glob(f"{dist}-*.dist-info"))
    assert found, f"{dist} not installed in {target}: {list(target.iterdir())}"
    return found[0].name[len(dist) + 1 : -len(".dist-info")]


def build(tmp: Path, name: str, version: str, **kw: Any) -> list[Path]:
    out = tmp / f"dist-{name}-{version}"
    out.mkdir()
    return [make_wheel(out, name, version, **kw), make_sdist(out, name, version, **kw)]


def test_publish_with_twine_and_uv_install_with_pip_and_uv_through_the_edge(
    stack: tuple[OriginProcess, EdgeProcess], tmp_path: Path
) -> None:
    origin, edge = stack
    token = origin.token("demo-pkg")
    up = twine_upload(edge.url + "/legacy/", token, build(tmp_path, "demo-pkg", "1.0"))
    assert up.returncode == 0, up.stdout + up.stderr
    index = edge.url + "/simple/"
    r = pip_install(index, tmp_path / "pip1", "demo-pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_version(tmp_path / "pip1", "demo_pkg") == "1.0"
    # the edge has the page cached now; a new version must be visible at once (purge)
    cached = edge.get("/simple/demo-pkg/", headers={"Accept": PIP_ACCEPT})
    assert "hit" in cached.headers["cache-status"]
    up = uv_publish(edge.url + "/legacy/", token, build(tmp_path, "demo-pkg", "1.1"))
    assert up.returncode == 0, up.stdout + up.stderr
    r = uv_install(index, tmp_path / "uv1", "demo-pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_version(tmp_path / "uv1", "demo_pkg") == "1.1"
    r = pip_install(index, tmp_path / "pip2", "demo-pkg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_version(tmp_path / "pip2", "demo_pkg") == "1.1"
    # an identical re-upload succeeds, as on the public index (this twine refuses
    # --skip-existing for repositories it does not know, so upload plainly)
    again = twine_upload(
        edge.url + "/legacy/", token, sorted((tmp_path / "dist-demo-pkg-1.1").iterdir())
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert edge.stats()["purges"] >= 2


def test_yanked_release_is_skipped_by_pip_and_uv(
    stack: tuple[OriginProcess, EdgeProcess], tmp_path: Path
) -> None:
    origin, edge = stack
    token = origin.token()
    for version in ("1.0", "2.0"):
        up = twine_upload(edge.url + "/legacy/", token, build(tmp_path, "yanky", version))
        assert up.returncode == 0, up.stdout + up.stderr
    index = edge.url + "/simple/"
    assert pip_install(index, tmp_path / "a", "yanky").returncode == 0
    assert installed_version(tmp_path / "a", "yanky") == "2.0"
    out = subprocess.run(
        [
            *edge_command(),
            "yank",
            "yanky",
            "2.0",
            "--reason",
            "broken build",
            "--data-dir",
            str(origin.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    page = edge.get("/simple/yanky/").text
    assert 'data-yanked="broken build"' in page
    r = pip_install(index, tmp_path / "b", "yanky")
    assert r.returncode == 0, r.stderr
    assert installed_version(tmp_path / "b", "yanky") == "1.0"
    r = uv_install(index, tmp_path / "c", "yanky")
    assert r.returncode == 0, r.stderr
    assert installed_version(tmp_path / "c", "yanky") == "1.0"
    # an exact pin still gets the yanked release (PEP 592)
    r = pip_install(index, tmp_path / "d", "yanky==2.0")
    assert r.returncode == 0, r.stderr
    assert installed_version(tmp_path / "d", "yanky") == "2.0"


def test_mirrored_project_installs_with_the_upstream_stopped(
    upstream: UpstreamIndex, origin_factory: Any, edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    # the upstream's pages expire at once, so the origin goes back to it on each request
    upstream.set_headers("/simple/", {"Cache-Control": "max-age=0"})
    origin: OriginProcess = origin_factory(upstream=upstream.index_url)
    edge = edge_factory(upstream=origin.index_url)
    index = edge.url + "/simple/"
    r = pip_install(index, tmp_path / "one", "alpha")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_version(tmp_path / "one", "alpha") == "1.0"
    assert upstream.count("/simple/alpha/") >= 1
    upstream.stop()
    r = pip_install(index, tmp_path / "two", "alpha")
    assert r.returncode == 0, r.stdout + r.stderr
    r = uv_install(index, tmp_path / "three", "alpha")
    assert r.returncode == 0, r.stdout + r.stderr
    # the origin alone (no edge) serves what it knows, stale, with a warning
    direct = origin.get("/simple/alpha/")
    assert direct.status_code == 200
    assert "110" in direct.headers.get("warning", "")


def test_hosted_name_never_merges_upstream_releases(
    upstream: UpstreamIndex, origin_factory: Any, tmp_path: Path
) -> None:
    """Dependency confusion: once 'alpha' is hosted here, upstream's alpha is not offered."""
    origin: OriginProcess = origin_factory(upstream=upstream.index_url)
    token = origin.token()
    up = twine_upload(origin.url + "/legacy/", token, build(tmp_path, "alpha", "0.1"))
    assert up.returncode == 0, up.stdout + up.stderr
    page = origin.get(
        "/simple/alpha/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    ).json()
    assert [f["filename"] for f in page["files"]] == [
        "alpha-0.1-py3-none-any.whl",
        "alpha-0.1.tar.gz",
    ]


def test_origin_on_postgresql_and_s3(
    postgres_server: PostgresServer,
    s3_server: S3Server,
    origin_factory: Any,
    edge_factory: EdgeFactory,
    tmp_path: Path,
) -> None:
    db = postgres_server.url(postgres_server.create_database())
    storage = f"s3://{s3_server.bucket}/e2e-{os.getpid()}?endpoint={s3_server.endpoint}"
    env = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    origin: OriginProcess = origin_factory(
        extra_args=["--database", db, "--storage", storage], env=env
    )
    edge = edge_factory(upstream=origin.index_url)
    token = origin.token()
    up = twine_upload(edge.url + "/legacy/", token, build(tmp_path, "cloudy", "3.0"))
    assert up.returncode == 0, up.stdout + up.stderr
    r = pip_install(edge.url + "/simple/", tmp_path / "t", "cloudy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_version(tmp_path / "t", "cloudy") == "3.0"
    keys = [
        o["Key"]
        for o in s3_server.client()
        .list_objects_v2(Bucket=s3_server.bucket, Prefix=f"e2e-{os.getpid()}/")
        .get("Contents", [])
    ]
    assert any(k.endswith("cloudy-3.0-py3-none-any.whl") for k in keys)
    assert any(k.endswith(".whl.metadata") for k in keys)


def test_pkgedge_up_runs_everything_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            *edge_command(),
            "up",
            "--data-dir",
            str(data),
            "--port",
            "0",
            "--upstream",
            "off",
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if line.startswith("pkgedge edge: ready"):
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60), "\n".join(lines)
        text = "\n".join(lines)
        index = re.search(r"index URL for pip/uv: (\S+)", text)
        upload = re.search(r"upload URL for twine/uv publish: (\S+)", text)
        assert index and upload, text
        assert re.search(r"admin token \S+", text)
        token = (
            subprocess.run(
                [*edge_command(), "token", "create", "--data-dir", str(data)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        up = twine_upload(upload.group(1), token, build(tmp_path, "upped", "0.3"))
        assert up.returncode == 0, up.stdout + up.stderr
        r = pip_install(index.group(1), tmp_path / "t", "upped")
        assert r.returncode == 0, r.stdout + r.stderr
        edge_file = json.loads((data / "edge.json").read_text())
        assert edge_file["admin"].startswith("http://127.0.0.1:")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    if proc.stdout is not None:
        proc.stdout.close()
    assert code == 0, "\n".join(lines)
    time.sleep(0.5)
    leftover = subprocess.run(
        ["pgrep", "-s", str(proc.pid)], capture_output=True, text=True, check=False
    )
    assert leftover.stdout.strip() == "", "processes left behind"
