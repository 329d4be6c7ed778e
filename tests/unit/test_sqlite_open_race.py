"""Workers opening a fresh SQLite database at once (the download aggregates on an edge's
first download, the rollups, the catalog): each switches it to WAL and creates its table, and
none of them may fail for it. A CI run once answered 500 on ``/stats/downloads`` for this:
the switch to WAL answers "database is locked" at once (no busy timeout) when two
connections need it together, and a check-then-CREATE of the table loses to another worker's
CREATE. The race itself is rare (a few rounds in a hundred); the deterministic check of the
WAL half is ``test_use_wal_waits_for_a_writer_then_switches``."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import traceback
from pathlib import Path

import pytest

from pkgedge.analytics.db import Downloads
from pkgedge.sqlite import use_wal

KEY = ("2026-12-03", "alpha", "1.0", "sdist", "pip", "3.11", "Linux", "", False)
PROCESSES = 4
ROUNDS = 10
THREADS = 2  # one adds, one reads: each its own connection


def _worker(url: str, barrier: object, errors: object) -> None:
    db = Downloads(url)
    sink: list[str] = []

    def run(fn: object) -> None:
        try:
            barrier.wait()  # type: ignore[attr-defined]
            fn()  # type: ignore[operator]
        except Exception:
            sink.append(traceback.format_exc(limit=3))

    threads = [threading.Thread(target=run, args=(lambda: db.add({KEY: 1}),))]
    threads += [
        threading.Thread(target=run, args=(lambda: db.query("alpha", "2026-12-01"),))
        for _ in range(THREADS - 1)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in sink:
        errors.put(e)  # type: ignore[attr-defined]
    db.close()


def test_workers_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'downloads{round_}.sqlite3'}"
        barrier = ctx.Barrier(PROCESSES * THREADS)
        procs = [ctx.Process(target=_worker, args=(url, barrier, errors)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        found = []
        while not errors.empty():
            found.append(errors.get())
        assert not found, "\n".join(found)
        db = Downloads(url)
        assert db.query("alpha", "2026-12-01") == [{"day": "2026-12-03", "downloads": PROCESSES}]
        db.close()


def test_use_wal_waits_for_a_writer_then_switches(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a worker writing: it holds the RESERVED lock
    holder.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode=WAL")  # at once: the busy timeout does not help
    timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    timer.start()
    use_wal(other, wait=10.0)
    timer.join()
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]
    other.close()
    holder.close()


def test_use_wal_gives_up_after_its_wait(tmp_path: Path) -> None:
    path = tmp_path / "w.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0.01)
    try:
        use_wal(other, wait=0.2)
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
    else:
        raise AssertionError("switched to WAL under an exclusive lock")
    finally:
        holder.execute("COMMIT")
        holder.close()
        other.close()
