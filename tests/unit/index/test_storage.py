"""One conformance suite for every BlobStorage backend.

``LocalStorage`` runs on a temporary directory; ``S3Storage`` runs against a real S3-protocol
server (moto's server mode on 127.0.0.1, see ``tests/support/s3.py``), each test under its own
key prefix.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from pkgedge.errors import ConfigError, PkgedgeError
from pkgedge.index.s3storage import S3Storage
from pkgedge.index.storage import (
    BlobNotFound,
    BlobStorage,
    InvalidKey,
    LocalStorage,
    StorageError,
    storage_from_url,
)
from support.s3 import S3Server

KEY = "ab/cd/ef0123456789/demo-1.0-py3-none-any.whl"


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStorage:
    if request.param == "local":
        return LocalStorage(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    return cast(BlobStorage, server.storage())


def read_all(storage: BlobStorage, key: str) -> bytes:
    with storage.open(key) as f:
        return f.read()


class Stream:
    """A non-seekable stream yielding *parts* one after another; before each part after the
    first it signals ``reached`` and waits for ``gate`` (set it up front for no blocking).
    If *fail* is set, it raises instead of yielding the last part."""

    def __init__(self, *parts: bytes, block: bool = False, fail: bool = False) -> None:
        self.parts = [p for p in parts if p]
        self.index = 0  # the part being read
        self.offset = 0  # within that part
        self.reached = threading.Event()
        self.gate = threading.Event()
        self.fail = fail
        if not block:
            self.gate.set()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int | None = -1) -> bytes:
        if self.index >= len(self.parts):
            return b""
        if self.index == 1 and not self.reached.is_set():
            self.reached.set()
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail and self.index == len(self.parts) - 1:
            raise RuntimeError("client went away")
        rest = self.parts[self.index][self.offset :]
        chunk = rest if n is None or n < 0 else rest[:n]
        self.offset += len(chunk)
        if self.offset >= len(self.parts[self.index]):
            self.index, self.offset = self.index + 1, 0
        return chunk


def as_io(stream: Stream) -> BinaryIO:
    return cast(BinaryIO, stream)


# -- round trips -----------------------------------------------------------------------------


def test_satisfies_protocol(storage: BlobStorage) -> None:
    assert isinstance(storage, BlobStorage)


def test_put_open_exists_size_delete(storage: BlobStorage) -> None:
    assert not storage.exists(KEY)
    storage.put(KEY, io.BytesIO(b"wheel bytes"))
    assert storage.exists(KEY)
    assert storage.size(KEY) == 11
    assert read_all(storage, KEY) == b"wheel bytes"
    storage.delete(KEY)
    assert not storage.exists(KEY)
    with pytest.raises(BlobNotFound):
        storage.open(KEY)


def test_put_from_path(storage: BlobStorage, tmp_path: Path) -> None:
    src = tmp_path / "upload.whl"
    src.write_bytes(b"from a file")
    storage.put(KEY, src, size=11)
    assert read_all(storage, KEY) == b"from a file"


def test_put_reads_from_current_position(storage: BlobStorage) -> None:
    buf = io.BytesIO(b"HEADERpayload")
    buf.seek(6)
    storage.put(KEY, buf, size=7)
    assert read_all(storage, KEY) == b"payload"


def test_put_from_non_seekable_stream(storage: BlobStorage) -> None:
    storage.put(KEY, as_io(Stream(b"abc", b"def", b"gh")), size=8)
    assert read_all(storage, KEY) == b"abcdefgh"
    assert storage.size(KEY) == 8


def test_empty_blob(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b""), size=0)
    assert storage.exists(KEY)
    assert storage.size(KEY) == 0
    assert read_all(storage, KEY) == b""


def test_overwrite_replaces_content(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b"first version, longer"))
    storage.put(KEY, io.BytesIO(b"second"))
    assert read_all(storage, KEY) == b"second"
    assert storage.size(KEY) == 6


def test_keys_are_independent(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b"file"))
    storage.put(KEY + ".metadata", io.BytesIO(b"Metadata-Version: 2.1\n"))
    storage.delete(KEY)
    assert read_all(storage, KEY + ".metadata") == b"Metadata-Version: 2.1\n"
    # a key's parent "directory" is not a blob
    assert not storage.exists("ab/cd")
    with pytest.raises(BlobNotFound):
        storage.open("ab/cd")
    with pytest.raises(BlobNotFound):
        storage.size("ab/cd")


def test_unicode_filename_in_key(storage: BlobStorage) -> None:
    key = "ab/cd/ef/pkg_ünï-1.0.tar.gz"
    storage.put(key, io.BytesIO(b"x"))
    assert read_all(storage, key) == b"x"


@pytest.mark.parametrize("source", ["path", "stream"])
def test_20_mb_object(storage: BlobStorage, tmp_path: Path, source: str) -> None:
    data = random.Random(658).randbytes(20 * 1024 * 1024 + 123)
    if source == "path":
        src: BinaryIO | Path = tmp_path / "big.whl"
        (tmp_path / "big.whl").write_bytes(data)
    else:  # non-seekable: S3 multipart from buffered chunks
        mb = 1024 * 1024
        src = as_io(Stream(*(data[i : i + 3 * mb] for i in range(0, len(data), 3 * mb))))
    storage.put(KEY, src, size=len(data))
    assert storage.size(KEY) == len(data)
    h = hashlib.sha256()
    with storage.open(KEY) as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()


# -- missing keys, bad keys ------------------------------------------------------------------


def test_missing_key(storage: BlobStorage) -> None:
    assert not storage.exists(KEY)
    with pytest.raises(BlobNotFound) as excinfo:
        storage.open(KEY)
    assert isinstance(excinfo.value, PkgedgeError)
    assert isinstance(excinfo.value, FileNotFoundError)
    assert excinfo.value.status == 404
    with pytest.raises(BlobNotFound):
        storage.size(KEY)
    storage.delete(KEY)  # idempotent
    storage.delete(KEY)


BAD_KEYS = [
    "",
    "/etc/passwd",
    "../escape.whl",
    "ab/../../escape.whl",
    "ab/cd/..",
    "ab/./cd.whl",
    "ab//cd.whl",
    "ab/cd/",
    "ab\\cd.whl",
    "..\\escape.whl",
    "C:\\Windows\\x.whl",
    "ab/cd\x00.whl",
    "ab/cd\n.whl",
    ".",
    "..",
    "a/" * 600 + "x",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_invalid_keys_are_rejected(storage: BlobStorage, key: str) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        storage.put(key, io.BytesIO(b"x"))
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, PkgedgeError)
    for call in (storage.open, storage.exists, storage.delete, storage.size, storage.local_path):
        with pytest.raises(InvalidKey):
            call(key)


# -- failures and atomicity ------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "size"), [(b"abc", 5), (b"abcdef", 3)])
@pytest.mark.parametrize("seekable", [True, False])
def test_size_mismatch_stores_nothing(
    storage: BlobStorage, payload: bytes, size: int, seekable: bool
) -> None:
    src = io.BytesIO(payload) if seekable else as_io(Stream(payload[:2], payload[2:]))
    with pytest.raises(StorageError):
        storage.put(KEY, src, size=size)
    assert not storage.exists(KEY)


def test_failed_put_keeps_previous_blob(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b"old complete blob"))
    with pytest.raises(RuntimeError, match="client went away"):
        storage.put(KEY, as_io(Stream(b"new ", b"partial", fail=True)))
    assert read_all(storage, KEY) == b"old complete blob"


def test_failed_put_of_new_key_stores_nothing(storage: BlobStorage) -> None:
    with pytest.raises(RuntimeError):
        storage.put(KEY, as_io(Stream(b"x" * 1000, b"y", fail=True)))
    assert not storage.exists(KEY)


@pytest.fixture
def slow_put(storage: BlobStorage) -> Iterator[tuple[BlobStorage, Stream, threading.Thread]]:
    """A put of b"first half|second half" blocked after the first half has been read."""
    stream = Stream(b"first half|", b"second half", block=True)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            storage.put(KEY, as_io(stream), size=22)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert stream.reached.wait(30), "put never read the first half"
    yield storage, stream, thread
    stream.gate.set()
    thread.join(30)
    assert not thread.is_alive()
    assert not errors, errors


def test_reader_never_sees_a_partial_new_blob(
    slow_put: tuple[BlobStorage, Stream, threading.Thread],
) -> None:
    storage, stream, thread = slow_put
    assert not storage.exists(KEY)
    with pytest.raises(BlobNotFound):
        storage.open(KEY)
    with pytest.raises(BlobNotFound):
        storage.size(KEY)
    if isinstance(storage, LocalStorage):  # the put is under way in a temporary file
        parent = storage.root / "ab" / "cd" / "ef0123456789"
        temps = [p.name for p in parent.iterdir()]
        assert len(temps) == 1
        assert temps[0].startswith(".") and temps[0].endswith(".tmp")
    stream.gate.set()
    thread.join(30)
    assert read_all(storage, KEY) == b"first half|second half"


def test_reader_sees_old_blob_during_overwrite(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b"the old blob"))
    stream = Stream(b"the new ", b"blob, complete", block=True)
    thread = threading.Thread(target=storage.put, args=(KEY, as_io(stream)), daemon=True)
    thread.start()
    assert stream.reached.wait(30)
    assert read_all(storage, KEY) == b"the old blob"
    assert storage.size(KEY) == 12
    stream.gate.set()
    thread.join(30)
    assert read_all(storage, KEY) == b"the new blob, complete"


# -- local_path ------------------------------------------------------------------------------


def test_local_path(storage: BlobStorage) -> None:
    storage.put(KEY, io.BytesIO(b"sendfile me"))
    path = storage.local_path(KEY)
    if isinstance(storage, LocalStorage):
        assert path is not None
        assert path.read_bytes() == b"sendfile me"
        assert path.is_relative_to(storage.root)
        assert path.stat().st_mode & 0o777 == 0o644
        missing = storage.local_path(KEY + ".missing")  # where it would be; not checked
        assert missing == path.with_name(path.name + ".missing")
        assert not missing.exists()
    else:
        assert path is None
        assert storage.local_path(KEY + ".missing") is None


# -- backend specifics -----------------------------------------------------------------------


def test_local_failed_put_leaves_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    with pytest.raises(StorageError):
        storage.put(KEY, io.BytesIO(b"abc"), size=4)
    with pytest.raises(RuntimeError):
        storage.put(KEY, as_io(Stream(b"abc", b"d", fail=True)))
    leftovers = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert leftovers == []


def test_s3_prefix_and_layout(s3_server: S3Server) -> None:
    storage = s3_server.storage(prefix="/tenant-a/blobs/")
    storage.put(KEY, io.BytesIO(b"x"))
    obj = s3_server.client().get_object(Bucket=s3_server.bucket, Key=f"tenant-a/blobs/{KEY}")
    assert obj["Body"].read() == b"x"
    with pytest.raises(InvalidKey):
        s3_server.storage(prefix="../other")


def test_s3_unreachable_endpoint_raises_storage_error() -> None:
    storage = S3Storage("http://127.0.0.1:9", "bucket", "a", "b")  # discard port: refused
    with pytest.raises(StorageError) as excinfo:
        storage.put(KEY, io.BytesIO(b"x"))
    assert not isinstance(excinfo.value, BlobNotFound)
    with pytest.raises(StorageError):
        storage.exists(KEY)


# -- storage_from_url ------------------------------------------------------------------------


def test_from_url_plain_path_and_file_url(tmp_path: Path) -> None:
    plain = storage_from_url(str(tmp_path / "a"))
    assert isinstance(plain, LocalStorage)
    assert plain.root == tmp_path / "a"
    url = storage_from_url(f"file://{tmp_path}/b%20c")
    assert isinstance(url, LocalStorage)
    assert url.root == tmp_path / "b c"
    url.put(KEY, io.BytesIO(b"ok"))
    assert (tmp_path / "b c" / KEY).read_bytes() == b"ok"


def test_from_url_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    storage = storage_from_url(
        f"s3://{s3_server.bucket}/from-url?endpoint={s3_server.endpoint}&region=us-east-1"
    )
    assert isinstance(storage, S3Storage)
    storage.put(KEY, io.BytesIO(b"via url"))
    obj = s3_server.client().get_object(Bucket=s3_server.bucket, Key=f"from-url/{KEY}")
    assert obj["Body"].read() == b"via url"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://host/path",
        "file://otherhost/srv/blobs",
        "s3:///prefix",
        "s3://user:pw@bucket/prefix",
        "s3://bucket/prefix?endpoint=http://127.0.0.1:9000&colour=blue",
    ],
)
def test_from_url_rejects_bad_urls(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises(ConfigError):
        storage_from_url(url)


def test_from_url_s3_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        storage_from_url("s3://bucket?endpoint=http://127.0.0.1:9000")
