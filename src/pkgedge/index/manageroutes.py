"""The yank and delete API over HTTP: ``POST /api/projects/NAME/VERSION/{yank,unyank}``,
``DELETE /api/projects/NAME/VERSION`` and ``DELETE /api/files/FILENAME`` (``pkgedge yank`` and
``pkgedge delete`` change the catalog directly instead).

Each needs a token whose scope covers the project (:mod:`pkgedge.index.auth`), changes the
catalog in one write, removes the blobs of deleted files, then purges the edge and renders
the project's pages again (:meth:`pkgedge.index.app.Origin.changed`). Answers are JSON.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pkgedge.index import cachepolicy, names
from pkgedge.index.auth import allowed, authenticate
from pkgedge.index.responses import text
from pkgedge.index.storage import BlobNotFound

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

__all__ = ["api_delete_file", "api_delete_release", "api_unyank", "api_yank"]


def _manage(origin: Origin, request: Request, action: Callable[[str, str | None], Any]) -> Response:
    token = authenticate(origin.catalog, request)
    if isinstance(token, Response):
        return token
    name = names.normalize(request.path_params["name"])
    denied = allowed(token, name)
    if denied is not None:
        return denied
    version = request.path_params.get("version")
    if origin.catalog.release(name, version or "") is None:
        return text(404, f"no release {version!r} of {name!r}")
    result = action(name, version)
    origin.changed(name)
    return PlainTextResponse(
        json.dumps(result) + "\n", media_type="application/json", headers=cachepolicy.NO_STORE
    )


async def api_yank(origin: Origin, request: Request) -> Response:
    reason = ""
    with contextlib.suppress(ValueError):
        data = await request.json()
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            reason = data["reason"]

    def act(name: str, version: str | None) -> dict[str, Any]:
        origin.catalog.yank(name, version or "", reason or None)
        return {"yanked": True, "reason": reason}

    return await run_in_threadpool(_manage, origin, request, act)


async def api_unyank(origin: Origin, request: Request) -> Response:
    def act(name: str, version: str | None) -> dict[str, Any]:
        origin.catalog.unyank(name, version or "")
        return {"yanked": False}

    return await run_in_threadpool(_manage, origin, request, act)


async def api_delete_release(origin: Origin, request: Request) -> Response:
    def act(name: str, version: str | None) -> dict[str, Any]:
        rows = origin.catalog.delete_release(name, version or "")
        for row in rows:
            for k in (row.blob_key, row.blob_key + ".metadata"):
                with contextlib.suppress(Exception):
                    origin.storage.delete(k)
        return {"deleted": [r.filename for r in rows]}

    return await run_in_threadpool(_manage, origin, request, act)


def api_delete_file(origin: Origin, request: Request) -> Response:
    token = authenticate(origin.catalog, request)
    if isinstance(token, Response):
        return token
    row = origin.catalog.file_by_name(request.path_params["filename"])
    if row is None:
        return text(404, "no such file")
    denied = allowed(token, row.project)
    if denied is not None:
        return denied
    origin.catalog.delete_file(row.filename)
    for k in (row.blob_key, row.blob_key + ".metadata"):
        with contextlib.suppress(BlobNotFound, OSError):
            origin.storage.delete(k)
    origin.changed(row.project)
    return PlainTextResponse(
        json.dumps({"deleted": [row.filename]}) + "\n", media_type="application/json"
    )
