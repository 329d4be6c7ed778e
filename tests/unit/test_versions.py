"""The configuration version store (files in a temp dir) and one worker's watch on it (a real
pipeline over a memory origin)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from pkgedge.edge.rulewatch import RulesWatcher
from pkgedge.edge.versions import VersionError, VersionStore
from pkgedge.rules import RulesError, TableError, default_source
from support.memory import make_pipeline

V = """\
table notes { "a": "1" }
acl staff { "192.0.2.0/24"; }
sub deliver { set resp.http.x-version = "%s"; }
"""


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    return VersionStore(tmp_path / "cache")


def test_first_use_makes_the_default_version_1_active(store: VersionStore) -> None:
    assert store.state() == (0, 0)
    assert store.active() == 1
    assert store.get(1).source == default_source()
    assert store.listing()[0]["status"] == "active"
    assert [(a["from"], a["to"]) for a in store.activations()] == [(None, 1)]
    for path in [store.dir, store.versions_dir, store.tables_dir]:
        assert path.stat().st_mode & 0o777 == 0o700
    for path in [store.active_path, store.log_path, *store.versions_dir.iterdir()]:
        assert path.stat().st_mode & 0o777 == 0o600
    assert not list(store.dir.rglob("*.tmp"))  # atomic writes leave no temp file


def test_drafts_change_and_active_versions_never_do(store: VersionStore) -> None:
    n = store.clone(1, "alice")
    assert store.get(n).parent == 1 and store.status(n) == "draft"
    store.edit(n, V % "a", "bob", "try a")
    assert store.get(n).source == V % "a" and store.get(n).author == "alice, bob"
    assert store.activate(n, "carol") == (1, n)
    for number in (1, n):  # once active (1) and active (n)
        with pytest.raises(VersionError, match="cannot change") as info:
            store.edit(number, "sub recv { }", "dave")
        assert info.value.status == 409
    assert store.get(n).source == V % "a"


def test_a_version_that_does_not_compile_is_never_activated(store: VersionStore) -> None:
    n = store.create("sub recv { set req.nope = 1; }", "alice")
    with pytest.raises(RulesError) as info:
        store.activate(n, "alice")
    assert (info.value.line, info.value.column) == (1, 16)
    assert store.active() == 1 and len(store.activations()) == 1


def test_rollback_goes_to_the_version_active_before(store: VersionStore) -> None:
    with pytest.raises(VersionError, match="nothing to roll back to"):
        store.rollback("x")
    a = store.create(V % "a", "x")
    b = store.create(V % "b", "x")
    store.activate(a, "x")
    store.activate(b, "x")
    assert store.rollback("y") == (b, a)
    assert store.rollback("y") == (a, b)
    log = store.activations()
    assert [(e["from"], e["to"], e["action"]) for e in log[-2:]] == [
        (b, a, "rollback"),
        (a, b, "rollback"),
    ]
    assert store.activate(b, "x") == (b, b)  # already active: nothing recorded
    assert len(store.activations()) == len(log)


def test_adopt_stores_a_new_version_only_when_the_text_differs(store: VersionStore) -> None:
    assert store.adopt(default_source(), "r.vcl") is None
    n = store.adopt(V % "a", "r.vcl")
    assert n == 2 and store.active() == 2 and store.get(2).author == "edge --rules r.vcl"
    assert store.adopt(V % "a", "r.vcl") is None
    with pytest.raises(RulesError, match=r"r\.vcl:1:"):
        store.adopt("sub nope { }", "r.vcl")
    assert store.numbers() == [1, 2]


def test_diff_is_unified(store: VersionStore) -> None:
    a, b = store.create(V % "a", "x"), store.create(V % "b", "x")
    diff = store.diff(a, b)
    assert diff.startswith(f"--- v{a}\n+++ v{b}\n")
    assert '-sub deliver { set resp.http.x-version = "a"; }\n' in diff
    with pytest.raises(VersionError, match="no version 99"):
        store.diff(a, 99)


def test_tables_are_checked_stored_per_version_and_carried_over(store: VersionStore) -> None:
    a = store.create(V % "a", "x")
    store.activate(a, "x")
    store.set_table("notes", {"a": "2", "b": "3"}, "x")
    store.set_table("staff", ["198.51.100.0/24"], "x")
    with pytest.raises(TableError, match="not a network"):
        store.set_table("staff", ["nope"], "x")
    with pytest.raises(TableError, match="no table or acl named 'other'"):
        store.set_table("other", {}, "x")
    with pytest.raises(VersionError, match="not a table name"):
        store.set_table("../x", {}, "x")
    assert store.tables() == {"notes": {"a": "2", "b": "3"}, "staff": ["198.51.100.0/24"]}
    # the next version declares notes unchanged (carried over) and staff differently (not)
    b = store.create(V.replace("192.0.2.0/24", "203.0.113.0/24") % "b", "x")
    serial = store.state()[1]
    store.activate(b, "x")
    assert store.state() == (b, serial + 1)
    assert store.tables() == {"notes": {"a": "2", "b": "3"}, "staff": ["203.0.113.0/24"]}


def test_a_damaged_pointer_is_a_clear_error(store: VersionStore) -> None:
    store.ensure()
    store.active_path.write_text("{")
    with pytest.raises(VersionError, match="damaged"):
        store.state()


def test_watcher_swaps_versions_and_tables(tmp_path: Path) -> None:
    pipeline, _ = make_pipeline(tmp_path)
    store = VersionStore(tmp_path / "data")
    warnings: list[str] = []
    watcher = RulesWatcher(store, pipeline, warnings.append)
    watcher.load()
    assert pipeline.ruleset.version == 1 and watcher.swaps == 1
    assert watcher.poll() is False

    a = store.create(V % "a", "x")
    store.activate(a, "x")
    before = pipeline.ruleset
    assert watcher.poll() is True
    running = pipeline.ruleset
    assert running is not before and running.version == a
    assert running.tables.current["notes"] == {"a": "1"}

    store.set_table("notes", {"a": "live"}, "x")
    assert watcher.poll() is True
    assert pipeline.ruleset is running  # the same version: only the table changed
    assert running.tables.current["notes"] == {"a": "live"}
    loads = watcher.table_loads
    store.set_table("staff", ["10.0.0.0/8"], "x")
    watcher.poll()
    assert watcher.table_loads == loads + 1  # notes' file did not change: not read again
    assert "10.1.2.3" in running.tables.current["staff"]  # type: ignore[operator]

    os.unlink(store.table_files(a)["notes"])  # override removed: declared contents again
    store._point(a)
    watcher.poll()
    assert running.tables.current["notes"] == {"a": "1"}

    # a file damaged behind the store's back: the worker keeps what it runs
    path = store.tables_dir / str(a) / "staff.json"
    path.write_text(json.dumps(["bad"]))
    store._point(a)
    watcher.poll()
    assert "10.1.2.3" in running.tables.current["staff"]  # type: ignore[operator]
    assert warnings and "table staff" in warnings[-1]

    store.rollback("x")
    watcher.poll()
    assert pipeline.ruleset.version == 1
    asyncio.run(pipeline.close())
