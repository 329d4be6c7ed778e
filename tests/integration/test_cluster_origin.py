"""Many nodes (issue 10) in front of pkgedge's own origin: the catalog in PostgreSQL, the files
in an S3-protocol server (moto's, in its own process), three edges behind one shield, purges
through Redis. ``test_cluster.py`` shows the cluster's mechanics against the tests' upstream
stand-in; this module shows them end to end with real clients (twine and ``uv publish`` to the
origin, pip and uv installing through an edge).

One topology for the whole module (CI budget), each pkgedge node on its own loopback address:
the edges on 127.0.0.2-4, the shield on 127.0.0.5 (``--trusted-edges``, ``--fallback``), the
primary origin on 127.0.0.6 and a standby origin on 127.0.0.7 (the fallback), both with
``--access-log`` (what reached an origin is counted from its log), Redis on 127.0.0.8;
PostgreSQL and the S3 server are the session's, on 127.0.0.1. The primary origin purges the
shield's admin API after every change (``--edge-admin``); with ``--redis`` that purge goes to
every node, the shield first.

The tests run in file order and share the cluster's state.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from support.clients import run_install
from support.edge import EdgeProcess
from support.origin import OriginProcess, twine_upload, uv_publish, wait_until
from support.packages import make_sdist, make_wheel
from support.postgres import PostgresServer
from support.redis import RedisServer
from support.s3 import S3Server
from support.upstream import PIP_ACCEPT

ONLY_CACHED = {"Cache-Control": "only-if-cached", "Accept": PIP_ACCEPT}
PAGE = {"Accept": PIP_ACCEPT}


@dataclass
class Cluster:
    redis: RedisServer
    origin: OriginProcess
    standby: OriginProcess
    shield: EdgeProcess
    edges: list[EdgeProcess]
    token: str
    dists: Path

    @property
    def nodes(self) -> list[EdgeProcess]:
        return [self.shield, *self.edges]

    def build(self, name: str, version: str) -> list[Path]:
        out = self.dists / f"{name}-{version}"
        out.mkdir()
        return [make_wheel(out, name, version), make_sdist(out, name, version)]


def _addresses(*hosts: str) -> list[str]:
    """A free ``HOST:PORT`` on each host (all probed at once: no port is handed out twice)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in hosts]
        for sock, host in zip(socks, hosts, strict=True):
            sock.bind((host, 0))
        return [f"{host}:{sock.getsockname()[1]}" for sock, host in zip(socks, hosts, strict=True)]


def _node(
    tmp: Path,
    name: str,
    host: str,
    upstream: str,
    redis: str,
    extra: list[str],
    listen: str | None = None,
    admin: str | None = None,
) -> EdgeProcess:
    return EdgeProcess(
        upstream,
        tmp / name,
        listen=listen or f"{host}:0",
        admin=admin or f"{host}:0",
        workers=2 if name == "shield" else 1,
        ready_timeout=60,
        extra_args=[
            "--redis",
            redis,
            "--node-name",
            name,
            "--rate-limit",
            "1000/2000",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    s3_server: S3Server,
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster-origin")
    database = postgres_server.url(postgres_server.create_database())
    storage = f"s3://{s3_server.bucket}/cluster-{os.getpid()}?endpoint={s3_server.endpoint}"
    both = ["--database", database, "--storage", storage]
    keys = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    # fixed ports, so that every node can be told the others' addresses and all start at once
    shield_at, admin_at, origin_at, standby_at = _addresses(
        "127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.7"
    )
    with tempfile.TemporaryDirectory(prefix="pkgedge-redis-") as redis_dir:
        redis = RedisServer(Path(redis_dir), host="127.0.0.8").start()
        shield = _node(
            tmp,
            "shield",
            "127.0.0.5",
            f"http://{origin_at}/simple/",
            redis.url,
            ["--trusted-edges", "127.0.0.0/8", "--fallback", f"http://{standby_at}/simple/"],
            listen=shield_at,
            admin=admin_at,
        )
        edges = [
            _node(
                tmp,
                f"edge{i}",
                f"127.0.0.{i + 2}",
                f"http://{shield_at}/simple/",
                redis.url,
                ["--shield", f"http://{shield_at}/"],
            )
            for i in range(3)
        ]
        origin = OriginProcess(
            tmp / "origin",
            edge_admin=f"http://{admin_at}",
            edge_token=shield.token,
            extra_args=[*both, "--access-log", "-"],
            env=keys,
            listen=origin_at,
        )
        standby = OriginProcess(
            tmp / "standby",
            extra_args=[*both, "--access-log", str(tmp / "standby-access.log")],
            env=keys,
            listen=standby_at,
        )
        procs: list[EdgeProcess | OriginProcess] = [shield, *edges, origin, standby]
        try:
            with ThreadPoolExecutor(len(procs)) as pool:
                list(pool.map(lambda p: p.start(), procs))
            dists = tmp / "dists"
            dists.mkdir()
            yield Cluster(redis, origin, standby, shield, edges, origin.token(), dists)
        finally:
            with ThreadPoolExecutor(len(procs)) as pool:
                list(pool.map(lambda p: p.stop(), procs))
            redis.stop()


_GET = re.compile(r'"GET (\S+) HTTP/1\.1" (\d+)')


def _log(origin: OriginProcess) -> list[str]:
    """The origin's access log: its output (``--access-log -``) or the file it names."""
    where = origin.extra_args[origin.extra_args.index("--access-log") + 1]
    return list(origin.output) if where == "-" else Path(where).read_text().splitlines()


def gets(origin: OriginProcess, path: str) -> int:
    """Answered GETs of ``path`` in the origin's access log, up to now: a request of our own
    to a unique target is logged after every earlier one, so once it is read, all of them
    are."""
    mark = f"/healthz?mark={os.urandom(6).hex()}"
    assert origin.get(mark).status_code == 200
    assert wait_until(lambda: any(mark in line for line in _log(origin))), _log(origin)[-5:]
    return sum(
        1
        for line in _log(origin)
        if (m := _GET.search(line)) and m.group(1) == path and m.group(2) in ("200", "304")
    )


def _cached(node: EdgeProcess, path: str) -> bool:
    status = node.get(path, headers=ONLY_CACHED).status_code
    assert status in (200, 504), status
    return status == 200


def _installed(target: Path, dist: str) -> str:
    found = sorted(target.glob(f"{dist}-*.dist-info"))
    assert found, f"{dist} not installed in {target}: {list(target.iterdir())}"
    return found[0].name[len(dist) + 1 : -len(".dist-info")]


def _file_path(listing: httpx.Response, filename: str) -> str:
    """The URL path of ``filename`` on a PEP 691 project page."""
    urls = [f["url"] for f in listing.json()["files"] if f["filename"] == filename]
    assert urls, f"{filename} not on {listing.url}: {listing.text}"
    return urlsplit(urljoin(str(listing.url), urls[0])).path


def test_concurrent_misses_on_every_edge_make_one_origin_request_each(cluster: Cluster) -> None:
    up = twine_upload(cluster.origin.url + "/legacy/", cluster.token, cluster.build("herd", "1.0"))
    assert up.returncode == 0, up.stdout + up.stderr
    page = "/simple/herd/"
    wheel = _file_path(cluster.origin.get(page, headers=PAGE), "herd-1.0-py3-none-any.whl")
    pages, files = gets(cluster.origin, page), gets(cluster.origin, wheel)
    calls = [(e, p) for e in cluster.edges for p in (page, wheel) for _ in range(4)]
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda c: c[0].get(c[1], headers=PAGE), calls))
    assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]
    blob = next(r.content for r, (_, p) in zip(answers, calls, strict=True) if p == wheel)
    assert blob == (cluster.dists / "herd-1.0" / "herd-1.0-py3-none-any.whl").read_bytes()
    # 24 requests on three edges: one request per object reached the origin
    assert gets(cluster.origin, page) == pages + 1
    assert gets(cluster.origin, wheel) == files + 1


def test_an_upload_is_listed_by_every_edge_when_the_upload_returns(
    cluster: Cluster, tmp_path: Path
) -> None:
    page = "/simple/herd/"
    assert all(_cached(n, page) for n in cluster.nodes)  # herd 1.0, from the test before
    before = gets(cluster.origin, page)
    up = uv_publish(cluster.origin.url + "/legacy/", cluster.token, cluster.build("herd", "1.1"))
    assert up.returncode == 0, up.stdout + up.stderr
    # the origin's purge went to the shield, which published it to every node through Redis
    # and answered once all had applied it: no node lists the old page any more
    for node in [*cluster.edges, cluster.shield]:
        listing = node.get(page, headers=PAGE).text
        assert "herd-1.1-py3-none-any.whl" in listing, (node.url, listing)
    # the shield purged before its edges: the three edges refilled through it, one origin GET
    assert gets(cluster.origin, page) == before + 1
    pip = run_install("pip", cluster.edges[1].url + "/simple/", tmp_path / "pip", "herd")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert _installed(tmp_path / "pip", "herd") == "1.1"
    uv = run_install("uv", cluster.edges[2].url + "/simple/", tmp_path / "uv", "herd")
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert _installed(tmp_path / "uv", "herd") == "1.1"


def test_primary_origin_down_files_come_from_the_standby_origin(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The fallback is a standby ``pkgedge origin``: a second process on its own address that
    reads the same PostgreSQL catalog and the same S3 bucket, as an operator runs a second
    index server. The primary's process is stopped; the shield's director sends the fills
    the primary cannot answer to the standby (the edges know only the shield)."""
    up = twine_upload(cluster.origin.url + "/legacy/", cluster.token, cluster.build("spare", "2.0"))
    assert up.returncode == 0, up.stdout + up.stderr
    sdist = (cluster.dists / "herd-1.1" / "herd-1.1.tar.gz").read_bytes()
    sdist_path = _file_path(cluster.edges[0].get("/simple/herd/", headers=PAGE), "herd-1.1.tar.gz")
    assert gets(cluster.standby, sdist_path) == 0
    cluster.origin.stop()
    try:
        # a file nobody fetched yet (herd's sdist: pip and uv took the wheel)
        r = cluster.edges[0].get(sdist_path)
        assert r.status_code == 200 and r.content == sdist
        assert gets(cluster.standby, sdist_path) == 1
        # and a project nobody asked for yet, installed with uv through an edge
        uv = run_install("uv", cluster.edges[1].url + "/simple/", tmp_path / "uv", "spare")
        assert uv.returncode == 0, uv.stdout + uv.stderr
        assert _installed(tmp_path / "uv", "spare") == "2.0"
        assert gets(cluster.standby, "/simple/spare/") >= 1
    finally:
        cluster.origin.start()
