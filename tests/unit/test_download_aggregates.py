"""Download analytics (issue 9) on SQLite and PostgreSQL: what a download is, records, upserts
from several writers, idempotent replay, and API answers equal to the aggregates."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgedge.analytics import api, record
from pkgedge.analytics.db import Downloads
from pkgedge.analytics.keys import key_of
from pkgedge.analytics.log import DownloadLog
from pkgedge.analytics.replay import replay
from support.postgres import PostgresServer

PIP = (
    'pip/24.0 {"ci":null,"installer":{"name":"pip","version":"24.0"},"python":"3.11.4",'
    '"implementation":{"name":"CPython"},"system":{"name":"Linux","release":"6.1"}}'
)
UV = (
    'uv/0.4.1 {"installer":{"name":"uv","version":"0.4.1"},"python":"3.12.1",'
    '"system":{"name":"Darwin","release":"23"},"ci":true}'
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Downloads]:
    if request.param == "sqlite":
        d = Downloads(f"sqlite:///{tmp_path / 'downloads.sqlite3'}")
        yield d
        d.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    d = Downloads(server.url(name))
    yield d
    d.close()
    server.drop_database(name)


def test_what_is_a_download() -> None:
    assert record.is_download("GET", 200, "/files/a/alpha-1.0-py3-none-any.whl")
    assert record.is_download("GET", 200, "/files/g/gamma-0.1.tar.gz")
    assert not record.is_download("GET", 200, "/files/a/alpha-1.0-py3-none-any.whl.metadata")
    assert not record.is_download("GET", 206, "/files/a/alpha-1.0-py3-none-any.whl")
    assert not record.is_download("GET", 304, "/files/a/alpha-1.0-py3-none-any.whl")
    assert not record.is_download("HEAD", 200, "/files/a/alpha-1.0-py3-none-any.whl")
    assert not record.is_download("GET", 200, "/simple/alpha/")


def test_a_record_never_holds_the_address(tmp_path: Path) -> None:
    hasher = record.ClientHasher(tmp_path / "secret")
    now = time.time()
    h = hasher("192.0.2.7", now)
    rec = record.make(now, "/files/x/Foo_Bar-2.0-py3-none-any.whl", PIP, h)
    assert rec is not None
    assert rec["project"] == "foo-bar" and rec["version"] == "2.0"
    assert rec["file_type"] == "bdist_wheel"
    assert (rec["installer"], rec["installer_version"]) == ("pip", "24.0")
    assert (rec["python"], rec["system"], rec["ci"]) == ("3.11", "Linux", False)
    assert "192.0.2.7" not in json.dumps(rec)
    assert hasher("192.0.2.7", now) == h != hasher("192.0.2.8", now)
    assert hasher("192.0.2.7", now + 86400) != h  # the key rotates every day
    assert record.ClientHasher(tmp_path / "secret")("192.0.2.7", now) == h  # same secret
    assert record.make(now, "/files/x/not-a-dist.whl", PIP, h) is None


def test_counts_add_up_and_the_api_answers_the_aggregates(db: Downloads) -> None:
    today = api.day_minus(0)
    now = time.time()
    recs = [record.make(now, "/f/alpha-1.0-py3-none-any.whl", PIP, "h") for _ in range(3)]
    recs += [record.make(now, "/f/alpha-1.0.tar.gz", UV, "h") for _ in range(2)]
    recs += [record.make(now - 3 * 86400, "/f/alpha-0.9.tar.gz", "curl/8.0", "h")]
    counts: Counter[tuple[str, str, str, str, str, str, str, str, bool]] = Counter()
    for rec in recs:
        assert rec is not None
        counts[key_of(rec, record.day_of(rec["time"]))] += 1
    half = Counter(dict(list(counts.items())[:1]))
    db.add(half)  # two writers adding to the same rows
    db.add(counts - half)
    db.add(half)
    by = api.by(db, "alpha", 30, "installer")
    assert by["total"] == 6 + half.total()
    assert by["totals"]["pip"] == 3 + half.total() and by["totals"]["uv"] == 2
    db.replace_days(counts)  # a replay of the same downloads: exactly them again
    by = api.by(db, "alpha", 30, "installer")
    assert by["total"] == 6 and by["totals"] == {"pip": 3, "uv": 2, "library": 1}
    recent = api.answer(db, "alpha", "recent", {})
    assert recent["type"] == "recent_downloads"
    assert recent["data"] == {"last_day": 5, "last_week": 6, "last_month": 6}
    overall = api.answer(db, "alpha", "overall", {"mirrors": "false"})["data"]
    assert sum(r["downloads"] for r in overall) == by["total"]
    major = api.answer(db, "alpha", "python_major", {})["data"]
    assert {(r["category"], r["downloads"]) for r in major if r["date"] == today} == {("3", 5)}
    minor = api.answer(db, "alpha", "python_minor", {"version": "3.12"})["data"]
    assert [(r["category"], r["downloads"]) for r in minor] == [("3.12", 2)]
    system = api.answer(db, "alpha", "system", {})["data"]
    assert {(r["category"], r["downloads"]) for r in system if r["date"] == today} == {
        ("Darwin", 2),
        ("Linux", 3),
    }
    assert [r["category"] for r in system if r["date"] != today] == ["null"]
    assert db.top(api.day_minus(0), ("project",)) == [{"project": "alpha", "downloads": 5}]


def test_replay_is_idempotent_and_reads_both_logs(db: Downloads, tmp_path: Path) -> None:
    now = time.time()
    access = tmp_path / "access.log"
    lines = [
        {"time": now, "method": "GET", "path": "/f/beta-1.1-py3-none-any.whl", "status": 200},
        {"time": now, "method": "GET", "path": "/f/beta-1.1-py3-none-any.whl.metadata",
         "status": 200},
        {"time": now, "method": "GET", "path": "/f/beta-1.1-py3-none-any.whl", "status": 206},
        {"time": now, "method": "GET", "path": "/f/beta-1.1-py3-none-any.whl", "status": 304},
        {"time": now, "method": "HEAD", "path": "/f/beta-1.1-py3-none-any.whl", "status": 200},
    ]  # fmt: skip
    for line in lines:
        line.update(client="192.0.2.1", user_agent=PIP, bytes=10, cache="hit")
    access.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    for _ in range(2):
        done = replay(db, [access])
        assert (done.lines, done.downloads, done.skipped) == (6, 1, 1)
        assert api.by(db, "beta", 1, None)["total"] == 1
    log = DownloadLog(tmp_path / "downloads.jsonl", max_bytes=400)
    recs = [record.make(now, "/f/beta-1.1-py3-none-any.whl", UV, "h") for _ in range(4)]
    for rec in recs:
        assert rec is not None
        log.write([rec])  # rotates past 400 bytes
    log.close()
    files = log.files()
    assert len(files) > 1 and files[-1].name == "downloads.jsonl"
    assert sum(len(f.read_text().splitlines()) for f in files) == 4
    for _ in range(2):
        replay(db, files)
        assert api.by(db, "beta", 1, "installer")["totals"] == {"uv": 4}


def test_stats_database_setting(tmp_path: Path) -> None:
    from pkgedge.analytics.recorder import db_url
    from pkgedge.config import build_edge_settings
    from pkgedge.errors import ConfigError

    flags = {"upstream": "http://127.0.0.1:9/simple/", "cache_dir": str(tmp_path)}
    s = build_edge_settings(flags)
    assert db_url(s) == f"sqlite:///{tmp_path / 'stats' / 'downloads.sqlite3'}"
    s = build_edge_settings({**flags, "stats_database": "postgresql+psycopg://u:pw@db/stats"})
    assert s.as_dict()["stats_database"] == "postgresql+psycopg://u:***@db/stats"
    with pytest.raises(ConfigError, match="stats_database"):
        db_url(build_edge_settings({**flags, "stats_database": "mysql://db/stats"}))


def test_writers_racing_to_create_the_table(tmp_path: Path) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    rec = record.make(time.time(), "/f/delta-1.0-py3-none-any.whl", PIP, "h")
    assert rec is not None
    key = key_of(rec, record.day_of(rec["time"]))
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def write() -> None:
        d = Downloads(url)  # each worker has its own engine
        try:
            start.wait()
            d.add(Counter({key: 1}))
        except BaseException as exc:
            errors.append(exc)
        finally:
            d.close()

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    d = Downloads(url)
    assert api.by(d, "delta", 1, None)["total"] == 6
    d.close()
