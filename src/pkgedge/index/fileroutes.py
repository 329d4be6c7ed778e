"""The file handler: ``/files/ab/cd/<rest of sha256>/<filename>`` (and its ``.metadata``).

Files live at content-addressed URLs and never change, so they are cached for a year
(:data:`pkgedge.index.cachepolicy.FILE_HEADERS`) with an ETag made of the digest. A file in
local storage goes out with ``FileResponse`` (sendfile), one in S3 is streamed in 1 MiB
blocks. A quarantined project's files are not offered (PEP 792); a file not stored here is
fetched from the upstream when mirroring is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from pkgedge.index import cachepolicy
from pkgedge.index.responses import text

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

__all__ = ["file"]


def file(origin: Origin, request: Request) -> Response:
    key = request.path_params["key"]
    try:
        path = origin.storage.local_path(key)
        exists = origin.storage.exists(key)
    except ValueError:
        return text(404, "no such file")
    row = origin.catalog.file_by_blob_key(key.removesuffix(".metadata"))
    if row is not None:
        project = origin.catalog.get_project(row.project)
        if project is not None and project.status == "quarantined":
            # PEP 792: a quarantined project's files are not offered for download
            return text(404, f"project {row.project!r} is quarantined")
    if not exists:
        if origin.mirror is not None:
            fetched = origin.mirror.fetch_file(key)
            if fetched:
                path = origin.storage.local_path(key)
                exists = True
        if not exists:
            return text(404, "no such file")
    headers = dict(cachepolicy.FILE_HEADERS)
    digest = key.split("/")[:3]
    if len(digest) == 3:
        headers["ETag"] = '"' + "".join(digest) + ('-m"' if key.endswith(".metadata") else '"')
    media = "text/plain; charset=utf-8" if key.endswith(".metadata") else "application/octet-stream"
    if path is not None:
        return FileResponse(path, headers=headers, media_type=media)
    size = origin.storage.size(key)

    def chunks() -> Iterator[bytes]:
        with origin.storage.open(key) as fh:
            while block := fh.read(1 << 20):
                yield block

    headers["Content-Length"] = str(size)
    return StreamingResponse(chunks(), headers=headers, media_type=media)
