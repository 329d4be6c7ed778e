"""The upload handler: the legacy upload API that twine, uv publish and poetry use.

``POST /legacy/`` (and ``POST /``) with a multipart form: the token is checked first, the
form parsed (one file, ``content``), the file spooled to ``DATA_DIR/incoming`` and checked by
:func:`pkgedge.index.upload.validate_upload`. Blobs are stored before the catalog records
the file; if the catalog refuses it, the blobs it does not reference are removed again. As
the public index does, an identical re-upload is a 200 and a different file under a taken
name a 400 "File already exists". After the commit the edge is purged and the project's
pages are rendered again (:meth:`pkgedge.index.app.Origin.changed`).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pkgedge.errors import HTTPError
from pkgedge.index import names
from pkgedge.index.auth import allowed, authenticate
from pkgedge.index.catalog.errors import FileExists, FilenameConflict
from pkgedge.index.model import FileRow, TokenRow
from pkgedge.index.responses import text
from pkgedge.index.upload import UploadError, ValidatedUpload, validate_upload

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

__all__ = ["upload"]


async def upload(origin: Origin, request: Request) -> Response:
    auth = await run_in_threadpool(authenticate, origin.catalog, request)
    if isinstance(auth, Response):
        return auth
    length = request.headers.get("content-length")
    limit = origin.settings.max_upload_size
    if length and length.isdigit() and int(length) > limit + (1 << 20):
        return text(
            413,
            f"File too large. Limit is {limit / 1e6:g} MB. "
            "Ask the administrators of this index to raise the limit.",
        )
    try:
        form = await request.form(max_files=1, max_fields=2000)
    except Exception as exc:  # python-multipart's and starlette's parse errors
        return text(400, f"malformed multipart upload: {exc}")
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(form.close)
        content = form.get("content")
        if not isinstance(content, UploadFile) or not content.filename:
            return text(400, "Upload payload does not have a file named 'content'.")
        fields: dict[str, str | list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                prev = fields.get(key)
                if prev is None:
                    fields[key] = value
                elif isinstance(prev, list):
                    prev.append(value)
                else:
                    fields[key] = [prev, value]
        return await run_in_threadpool(_store_upload, origin, auth, fields, content)
    raise AssertionError("unreachable")  # pragma: no cover


def _store_upload(
    origin: Origin, token: TokenRow, fields: dict[str, str | list[str]], content: UploadFile
) -> Response:
    with tempfile.NamedTemporaryFile(dir=origin.tmp_dir, delete=True) as tmp:
        content.file.seek(0)
        shutil.copyfileobj(content.file, tmp, 1 << 20)
        tmp.flush()
        try:
            up = validate_upload(
                fields,
                content.filename or "",
                Path(tmp.name),
                max_size=origin.settings.max_upload_size,
            )
        except UploadError as exc:
            return text(exc.status, exc.reason)
        denied = allowed(token, up.project)
        if denied is not None:
            return denied
        hosted = origin.catalog.get_project(up.project)
        if hosted is not None and hosted.status in ("archived", "quarantined"):
            return text(
                400,
                f"Project {up.project!r} is {hosted.status}: it does not accept new uploads.",
            )
        key = names.blob_key(up.sha256, up.filename)
        existing = origin.catalog.file_by_name(up.filename)
        if existing is not None and existing.sha256 == up.sha256:
            # as the public index: 200, so twine and uv publish count it as uploaded
            return PlainTextResponse("OK (identical file already uploaded)\n")
        put: list[str] = []
        try:
            origin.storage.put(key, Path(tmp.name), size=up.size)
            put.append(key)
            if up.core_metadata is not None:
                mpath = Path(tmp.name + ".metadata")
                mpath.write_bytes(up.core_metadata)
                try:
                    origin.storage.put(key + ".metadata", mpath)
                finally:
                    mpath.unlink(missing_ok=True)
                put.append(key + ".metadata")
            row = _file_row(up, key)
            origin.catalog.add_file(up.display_name, up.metadata, row)
        except FileExists:
            return PlainTextResponse("OK (identical file already uploaded)\n")
        except FilenameConflict as exc:
            # as the public index: 400 "File already exists ..." (what twine's and uv
            # publish's checks look for), and a link to what this index has
            _discard(origin, put)
            base = (origin.settings.base_url or "").rstrip("/")
            page = f"{base}/project/{up.project}/{up.version}/"
            return text(exc.status, f"{exc.reason} See {page} for the files of this release.")
        except HTTPError as exc:  # UploadError, FilenameReused, ...
            _discard(origin, put)
            return text(exc.status, exc.reason)
        except Exception:
            _discard(origin, put)
            raise
    origin.changed(up.project)
    return PlainTextResponse("OK\n")


def _file_row(up: ValidatedUpload, key: str) -> FileRow:
    meta_sha = (
        hashlib.sha256(up.core_metadata).hexdigest() if up.core_metadata is not None else None
    )
    return FileRow(
        project=up.project,
        version=up.version,
        filename=up.filename,
        packagetype=up.packagetype,
        python_version=up.python_version,
        size=up.size,
        sha256=up.sha256,
        upload_time=datetime.now(UTC),
        blob_key=key,
        requires_python=up.requires_python,
        blake2b_256=up.blake2b_256,
        md5=up.md5,
        metadata_sha256=meta_sha,
    )


def _discard(origin: Origin, keys: list[str]) -> None:
    """Remove blobs this upload stored that no catalog row references (after a refusal)."""
    for key in keys:
        with contextlib.suppress(Exception):
            if origin.catalog.file_by_blob_key(key.removesuffix(".metadata")) is None:
                origin.storage.delete(key)
