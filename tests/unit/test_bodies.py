"""Body files: temp files, installing, reads, encoded copies, fills' head sidecars."""

from __future__ import annotations

import gzip
import marshal
import os
from pathlib import Path

import pytest

from pkgedge.cache.bodies import BodyFiles
from pkgedge.http.response import compress


@pytest.fixture
def files(tmp_path: Path) -> BodyFiles:
    f = BodyFiles(tmp_path / "cache")
    f.prepare()
    return f


def stored(files: BodyFiles, objid: str, body: bytes) -> Path:
    fd, tmp = files.open_tmp(objid)
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    return files.install(objid, tmp)


def test_a_temp_file_is_installed_under_its_id(files: BodyFiles) -> None:
    fd, tmp = files.open_tmp("ab12")
    os.write(fd, b"body")
    os.close(fd)
    assert tmp == files.tmp_path("ab12") and tmp.read_bytes() == b"body"
    dest = files.install("ab12", tmp)
    assert dest == files.objects_dir / "ab" / "ab12" == files.body_path("ab12")
    assert dest.read_bytes() == b"body" and not tmp.exists()


def test_read_returns_none_when_missing_or_of_another_size(files: BodyFiles) -> None:
    assert files.read("ab12", 4) is None
    stored(files, "ab12", b"body")
    assert files.read("ab12", 4) == b"body"
    assert files.read("ab12", 5) is None
    assert files.read("ab12", 3) is None


def test_an_encoded_copy_is_made_once_then_read(files: BodyFiles) -> None:
    stored(files, "ab12", b"x" * 1000)
    calls: list[str] = []

    def counting(body: bytes, coding: str) -> bytes:
        calls.append(coding)
        return compress(body, coding)

    first = files.read_encoded("ab12", "gzip", counting)
    assert first is not None and gzip.decompress(first) == b"x" * 1000
    assert files.encoded_path("ab12", "gzip").read_bytes() == first
    assert files.read_encoded("ab12", "gzip", counting) == first
    assert files.read_encoded("ab12", "br", counting) is not None
    assert calls == ["gzip", "br"]
    names = sorted(p.name for p in files.body_path("ab12").parent.iterdir())
    assert names == ["ab12", "ab12.br", "ab12.gz"]  # no per-process temp names left


def test_encoded_reads_of_missing_bodies_and_unknown_codings(files: BodyFiles) -> None:
    assert files.read_encoded("ab12", "gzip", compress) is None
    assert not files.encoded_path("ab12", "gzip").exists()
    stored(files, "ab12", b"body")
    with pytest.raises(ValueError, match="content coding 'zstd'"):
        files.read_encoded("ab12", "zstd", compress)


def test_unlink_removes_the_body_and_its_copies(files: BodyFiles) -> None:
    stored(files, "ab12", b"body")
    stored(files, "ab34", b"other")
    files.read_encoded("ab12", "gzip", compress)
    files.read_encoded("ab12", "br", compress)
    files.unlink("ab12")
    files.unlink("ab12")  # already gone: fine
    assert [p.name for p in files.body_path("ab12").parent.iterdir()] == ["ab34"]


def test_clear_removes_every_body(files: BodyFiles) -> None:
    stored(files, "ab12", b"body")
    stored(files, "cd34", b"body")
    files.clear()
    assert list(files.objects_dir.iterdir()) == []
    stored(files, "ab12", b"again")
    assert files.read("ab12", 5) == b"again"


def test_head_records_replace_each_other_atomically(files: BodyFiles) -> None:
    assert files.read_head("ab12") is None
    files.publish_head("ab12", ("obj", 200, [("etag", '"1"')], 10, 0.0, 1.5))
    assert files.read_head("ab12") == ("obj", 200, [("etag", '"1"')], 10, 0.0, 1.5)
    files.publish_head("ab12", ("pass", 403, [], None, 0.0, 1.5))
    assert files.read_head("ab12") == ("pass", 403, [], None, 0.0, 1.5)
    assert sorted(p.name for p in files.tmp_dir.iterdir()) == ["ab12.head"]  # no .part


def test_unreadable_heads_read_as_none(files: BodyFiles) -> None:
    head = files.tmp_dir / "ab12.head"
    head.write_bytes(b"\x00garbage")
    assert files.read_head("ab12") is None
    head.write_bytes(marshal.dumps(["a", "list"]))
    assert files.read_head("ab12") is None
    head.write_bytes(b"")
    assert files.read_head("ab12") is None


def test_a_head_record_must_be_marshalable(files: BodyFiles) -> None:
    with pytest.raises(ValueError, match="not marshal-able"):
        files.publish_head("ab12", (object(),))
    assert files.read_head("ab12") is None


def test_drop_tmp_removes_the_temp_file_and_its_head(files: BodyFiles) -> None:
    fd, _ = files.open_tmp("ab12")
    os.close(fd)
    files.publish_head("ab12", ("obj", 200, [], 0, 0.0, 0.0))
    os.close(files.open_tmp("cd34")[0])
    files.drop_tmp("ab12")
    files.drop_tmp("ab12")  # nothing left: fine
    assert [p.name for p in files.tmp_dir.iterdir()] == ["cd34"]


def test_prepare_clears_temp_files_and_keeps_bodies(files: BodyFiles) -> None:
    stored(files, "ab12", b"body")
    os.close(files.open_tmp("cd34")[0])
    files.publish_head("cd34", ("obj", 200, [], 4, 0.0, 0.0))
    files.prepare()
    assert list(files.tmp_dir.iterdir()) == []
    assert files.read("ab12", 4) == b"body"


def test_object_ids_are_checked(files: BodyFiles) -> None:
    for bad in ("", "..", "../etc", "a/b", "ab\x00"):
        with pytest.raises(ValueError, match="not an object id"):
            files.body_path(bad)
        with pytest.raises(ValueError, match="not an object id"):
            files.publish_head(bad, ())
