"""Blob storage in an S3-protocol bucket (AWS S3, MinIO, Ceph, moto): :class:`S3Storage`.

It implements :class:`pkgedge.index.storage.BlobStorage` (keys, errors and the atomic ``put``
are described there); :func:`pkgedge.index.storage.storage_from_url` builds it from an
``s3://`` URL. boto3 is imported when the first one is made, so a local origin never loads it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, BinaryIO, cast

from pkgedge.errors import ConfigError
from pkgedge.index.storage import (
    CHUNK,
    BlobNotFound,
    FullReader,
    StorageError,
    validate_key,
)

__all__ = ["S3Storage"]


class S3Storage:
    """Blobs in an S3-protocol bucket, under an optional key *prefix*.

    Large bodies use multipart uploads (``upload_fileobj``: 8 MiB parts); S3 makes an object
    visible only when its upload completes, so ``put`` is atomic. Path-style addressing is used
    whenever an explicit *endpoint_url* is given (MinIO, Ceph and moto need it)."""

    def __init__(
        self,
        endpoint_url: str | None,
        bucket: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        prefix: str = "",
        session_token: str | None = None,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        if not bucket:
            raise ConfigError("S3 storage needs a bucket name")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        if self.prefix:
            validate_key(self.prefix.rstrip("/"))
        config = Config(
            region_name=region,
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or None,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=8 * CHUNK, multipart_chunksize=8 * CHUNK, max_concurrency=4
        )
        self._endpoint = endpoint_url

    def __repr__(self) -> str:
        return f"S3Storage({self._endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, exc: Exception, what: str, key: str) -> StorageError:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return BlobNotFound(f"no blob {key!r}")
        return StorageError(f"S3 {what} of {key!r} in bucket {self.bucket!r} failed: {exc}")

    def put(self, key: str, src: BinaryIO | Path, *, size: int | None = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        s3_key = self._key(key)
        with contextlib.ExitStack() as stack:
            stream = stack.enter_context(src.open("rb")) if isinstance(src, Path) else src
            stream = self._checked(stream, size)
            try:
                self._client.upload_fileobj(stream, self.bucket, s3_key, Config=self._transfer)
            except (BotoCoreError, ClientError) as exc:
                raise self._fail(exc, "upload", key) from exc

    @staticmethod
    def _checked(stream: BinaryIO, size: int | None) -> BinaryIO:
        """A seekable stream is measured up front against *size* (and uploaded as it is, with
        parallel part uploads); any other stream is wrapped in a full-read :class:`FullReader` that
        counts it, failing (thus aborting) the upload on a size mismatch."""
        try:
            seekable = stream.seekable()
            if seekable:
                start = stream.tell()
                end = stream.seek(0, os.SEEK_END)
                stream.seek(start)
        except (OSError, ValueError, AttributeError):
            seekable = False
        if not seekable:
            return cast(BinaryIO, FullReader(stream, size))
        if size is not None and end - start != size:
            raise StorageError(f"source is {end - start} bytes, declared size is {size}")
        return stream

    def open(self, key: str) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, "download", key) from exc
        return cast(BinaryIO, response["Body"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except BlobNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            err = self._fail(exc, "delete", key)
            if not isinstance(err, BlobNotFound):
                raise err from exc

    def size(self, key: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, "stat", key) from exc
        return int(head["ContentLength"])

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None
