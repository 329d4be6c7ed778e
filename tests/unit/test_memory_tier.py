"""The memory tier: body files mapped from the page cache, one copy for every worker."""

from __future__ import annotations

import os
from pathlib import Path

from pkgedge.cache.memory import MemoryTier


def test_maps_a_body_file_and_keeps_it(tmp_path: Path) -> None:
    body = tmp_path / "obj"
    body.write_bytes(b"abc" * 1000)
    tier = MemoryTier(1 << 20)
    view = tier.map("obj", body, 3000)
    assert view is not None and bytes(view) == b"abc" * 1000
    assert tier.get("obj") is view
    assert len(tier) == 1 and tier.bytes_used == 3000


def test_a_missing_or_wrong_size_file_is_not_mapped(tmp_path: Path) -> None:
    body = tmp_path / "obj"
    body.write_bytes(b"x" * 10)
    tier = MemoryTier(1 << 20)
    assert tier.map("gone", tmp_path / "gone", None) is None
    assert tier.map("obj", body, 11) is None  # half-written or replaced: never served
    assert tier.get("obj") is None
    assert bytes(tier.map("obj", body, None) or b"") == b"x" * 10


def test_an_empty_body_maps_to_an_empty_view(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    view = MemoryTier(100).map("e", tmp_path / "empty", 0)
    assert view is not None and bytes(view) == b""


def test_mappings_are_bounded_by_capacity(tmp_path: Path) -> None:
    tier = MemoryTier(10_000)
    for i in range(20):
        (tmp_path / str(i)).write_bytes(bytes([i]) * 1000)
        assert tier.map(str(i), tmp_path / str(i), 1000) is not None
    assert tier.bytes_used <= 10_000
    assert len(tier) <= 10


def test_a_mapping_outlives_the_unlinked_file_and_eviction(tmp_path: Path) -> None:
    """A purge unlinks the file; a response still being written keeps its bytes."""
    body = tmp_path / "obj"
    body.write_bytes(b"y" * 4096)
    tier = MemoryTier(5000)
    view = tier.map("obj", body, 4096)
    assert view is not None
    os.unlink(body)
    tier.clear()
    assert bytes(view) == b"y" * 4096


def test_another_process_maps_what_this_one_wrote(tmp_path: Path) -> None:
    """Two workers: the body one wrote is readable by the other's mapping, same bytes."""
    body = tmp_path / "obj"
    body.write_bytes(os.urandom(65536))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other worker
        os.close(r)
        view = MemoryTier(1 << 20).map("obj", body, 65536)
        os.write(w, b"ok" if view is not None and bytes(view) == body.read_bytes() else b"no")
        os._exit(0)
    os.close(w)
    answer = os.read(r, 2)
    os.waitpid(pid, 0)
    os.close(r)
    assert answer == b"ok"
