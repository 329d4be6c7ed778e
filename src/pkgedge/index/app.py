"""The origin's web application (Starlette): simple API, JSON API, files, uploads, yanking.

Heavy lifting lives elsewhere: rows come from :mod:`pkgedge.index.catalog`, bodies from the
pure renderers (:mod:`~pkgedge.index.simple`, :mod:`~pkgedge.index.jsonapi`), bytes from blob
storage, upload checks from :mod:`~pkgedge.index.upload`. This module routes, negotiates,
authenticates, sets cache headers and purges the edge after each commit.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from pkgedge.errors import HTTPError
from pkgedge.http.headers import REASON_FIELD, reason_phrase
from pkgedge.index import cachepolicy, jsonapi, names, simple
from pkgedge.index.catalog import Catalog
from pkgedge.index.catalog.errors import FileExists, FilenameConflict
from pkgedge.index.mirror import Mirror
from pkgedge.index.model import FileRow, ProjectRow, TokenRow
from pkgedge.index.pages import PageStore
from pkgedge.index.purge import Purger
from pkgedge.index.settings import OriginSettings
from pkgedge.index.storage import BlobNotFound, BlobStorage, storage_from_url
from pkgedge.index.upload import UploadError, validate_upload

SERIAL_HEADER = "X-PyPI-Last-Serial"


def text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    """A plain-text error: a status and one clear reason (tools print it), which is also the
    status line's reason phrase (twine shows only that; :mod:`pkgedge.index.reason`)."""
    fields = {**cachepolicy.NO_STORE, **(headers or {})}
    if status >= 400:
        fields[REASON_FIELD] = reason_phrase(reason)
    return PlainTextResponse(reason.rstrip("\n") + "\n", status_code=status, headers=fields)


class Origin:
    """Everything the origin's routes share. ``Origin(settings).app`` is the ASGI app."""

    def __init__(
        self,
        settings: OriginSettings,
        *,
        catalog: Catalog | None = None,
        storage: BlobStorage | None = None,
    ) -> None:
        self.settings = settings
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = data / "incoming"
        self.tmp_dir.mkdir(exist_ok=True)
        self.catalog = catalog or Catalog(settings.database)
        self.catalog.migrate()
        self.storage = storage or storage_from_url(settings.storage)
        from pkgedge.index.edgelink import locate_edge

        self.purger = Purger(
            settings.edge_admin,
            settings.edge_admin_token,
            data / "purge-queue.json",
            locate=lambda: locate_edge(settings.data_dir),
        )
        self.mirror: Mirror | None = None
        if settings.mirroring:
            self.mirror = Mirror(settings, self.storage, data / "mirror")
        self.pages = PageStore(data / "pages", self._render)
        self.app = Starlette(routes=self.routes(), lifespan=self._lifespan)

    def __repr__(self) -> str:
        return f"<Origin {self.settings.listen} {self.catalog!r} {self.purger!r}>"

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.purger.start()
        try:
            yield
        finally:
            self.purger.stop()
            if self.mirror is not None:
                self.mirror.close()

    def routes(self) -> list[Route]:
        from pkgedge.index import web

        return [
            Route("/simple", self.simple_redirect),
            Route("/simple/", self.project_list),
            Route("/simple/{name}", self.simple_redirect),
            Route("/simple/{name}/", self.project_page),
            Route("/files/{key:path}", self.file, methods=["GET", "HEAD"]),
            Route("/pypi/{name}/json", self.json_project),
            Route("/pypi/{name}/{version}/json", self.json_release),
            Route("/legacy/", self.upload, methods=["POST"]),
            Route("/", web.home(self), methods=["GET", "HEAD"]),
            Route("/", self.upload, methods=["POST"]),
            Route("/project/{name}/", web.project(self)),
            Route("/project/{name}/{version}/", web.project(self)),
            Route("/api/projects/{name}/{version}/yank", self.api_yank, methods=["POST"]),
            Route("/api/projects/{name}/{version}/unyank", self.api_unyank, methods=["POST"]),
            Route("/api/projects/{name}/{version}", self.api_delete_release, methods=["DELETE"]),
            Route("/api/files/{filename}", self.api_delete_file, methods=["DELETE"]),
            Route("/healthz", lambda r: PlainTextResponse("ok\n")),
        ]

    # -- helpers ---------------------------------------------------------------------------
    def page(
        self,
        request: Request,
        body: bytes,
        media_type: str,
        keys: list[str],
        serial: int,
        *,
        vary: bool = True,
        etag: str | None = None,
    ) -> Response:
        """A cacheable page with its ETag; answers 304 to a matching If-None-Match."""
        etag = etag or simple.etag_for(body)
        headers = cachepolicy.page_headers(self.settings.edge_ttl, self.settings.client_ttl, keys)
        headers["ETag"] = etag
        headers[SERIAL_HEADER] = str(serial)
        if vary:
            headers["Vary"] = "Accept"
        inm = request.headers.get("if-none-match")
        if inm and etag in [t.strip() for t in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    def file_url(self, row: FileRow) -> str:
        return names.file_url_path(row)

    def absolute_file_url(self, row: FileRow) -> str:
        """For the JSON API, whose clients fetch ``url`` as is: absolute when the public base
        URL is configured (``--base-url``), else a path on this host."""
        base = self.settings.base_url
        path = names.file_url_path(row)
        return base.rstrip("/") + path if base else path

    def hosted(self, project: str) -> ProjectRow | None:
        return self.catalog.get_project(project)

    # -- simple API (PEP 503 / 691) ----------------------------------------------------------
    def simple_redirect(self, request: Request) -> Response:
        name = request.path_params.get("name")
        target = "/simple/" if name is None else f"/simple/{names.normalize(name)}/"
        return Response(
            status_code=301, headers={"Location": target, "Cache-Control": "max-age=86400, public"}
        )

    def _media_type(self, request: Request) -> str | None:
        return simple.negotiate(request.headers.get("accept"), request.query_params.get("format"))

    def project_list(self, request: Request) -> Response:
        media = self._media_type(request)
        if media is None:
            return text(
                406, f"no acceptable representation: ask for {simple.JSON_V1} or {simple.HTML_V1}"
            )
        projects = self.catalog.list_projects()
        serial = self.catalog.last_serial()
        body = simple.render_project_list(projects, media, serial)
        return self.page(request, body, media, [cachepolicy.ALL_PROJECTS], serial)

    def project_page(self, request: Request) -> Response:
        raw = request.path_params["name"]
        name = names.normalize(raw)
        if name != raw:
            return Response(
                status_code=301,
                headers={"Location": f"/simple/{name}/", "Cache-Control": "max-age=86400, public"},
            )
        media = self._media_type(request)
        if media is None:
            return text(
                406, f"no acceptable representation: ask for {simple.JSON_V1} or {simple.HTML_V1}"
            )
        project = self.hosted(name)
        if project is None:
            if self.mirror is not None:
                return self.mirror.project_page(request, name, media, self)
            return text(
                404,
                f"no project named {name!r}",
                cachepolicy.page_headers(60, 60, [cachepolicy.project_key(name)]),
            )
        if self.mirror is not None and self.catalog.allows_upstream(name):
            return self._merged_page(request, project, media)
        body, etag = self._render_once(project, media)
        return self.page(
            request, body, media, [cachepolicy.project_key(name)], project.last_serial, etag=etag
        )

    def _render_once(self, project: ProjectRow, media: str) -> tuple[bytes, str]:
        return self.pages.get(project, media)

    def prerender(self, name: str) -> None:
        """After a change, render the project's pages in the background, so the next request
        (usually the edge's refill after the purge) finds them ready."""

        def work() -> None:
            with contextlib.suppress(Exception):
                project = self.catalog.get_project(name)
                if project is not None:
                    for media in (simple.JSON_V1, simple.HTML_V1, simple.TEXT_HTML):
                        self.pages.get(project, media)

        threading.Thread(target=work, name=f"prerender-{name}", daemon=True).start()

    def _render(self, project: ProjectRow, media: str) -> bytes:
        files = self.catalog.project_files(project.project)
        versions = self.catalog.release_versions(project.project)
        return simple.render_project_page(project, files, versions, media, file_url=self.file_url)

    def _merged_page(self, request: Request, project: ProjectRow, media: str) -> Response:
        """A hosted project the operator allowed to merge upstream releases: local files
        first; upstream files whose filename is not hosted here are added."""
        assert self.mirror is not None
        name = project.project
        files = self.catalog.project_files(name)
        versions = [r.version for r in self.catalog.releases(name)]
        try:
            found = self.mirror.page(name)
        except Exception:  # the upstream is down: the hosted files alone are still right
            found = None
        if found is not None:
            extra, extra_versions = self.mirror.rows(name, found[0])
            local = {f.filename for f in files}
            files += [f for f in extra if f.filename not in local]
            versions += [v for v in extra_versions if v not in versions]
        body = simple.render_project_page(project, files, versions, media, file_url=self.file_url)
        keys = [cachepolicy.project_key(name), "mirror"]
        return self.page(request, body, media, keys, project.last_serial)

    # -- files -------------------------------------------------------------------------------
    def file(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            path = self.storage.local_path(key)
            exists = self.storage.exists(key)
        except ValueError:
            return text(404, "no such file")
        row = self.catalog.file_by_blob_key(key.removesuffix(".metadata"))
        if row is not None:
            project = self.catalog.get_project(row.project)
            if project is not None and project.status == "quarantined":
                # PEP 792: a quarantined project's files are not offered for download
                return text(404, f"project {row.project!r} is quarantined")
        if not exists:
            if self.mirror is not None:
                fetched = self.mirror.fetch_file(key)
                if fetched:
                    path = self.storage.local_path(key)
                    exists = True
            if not exists:
                return text(404, "no such file")
        headers = dict(cachepolicy.FILE_HEADERS)
        digest = key.split("/")[:3]
        if len(digest) == 3:
            headers["ETag"] = '"' + "".join(digest) + ('-m"' if key.endswith(".metadata") else '"')
        media = (
            "text/plain; charset=utf-8" if key.endswith(".metadata") else "application/octet-stream"
        )
        if path is not None:
            return FileResponse(path, headers=headers, media_type=media)
        size = self.storage.size(key)

        def chunks() -> Any:
            with self.storage.open(key) as fh:
                while block := fh.read(1 << 20):
                    yield block

        headers["Content-Length"] = str(size)
        return StreamingResponse(chunks(), headers=headers, media_type=media)

    # -- legacy JSON API ---------------------------------------------------------------------
    def _json(self, request: Request, version: str | None) -> Response:
        name = names.normalize(request.path_params["name"])
        project = self.hosted(name)
        if project is None:
            if self.mirror is not None:
                return self.mirror.json_api(request, name, version)
            return text(404, f"no project named {name!r}")
        releases = self.catalog.releases(name)
        files = self.catalog.project_files(name)
        try:
            body = jsonapi.render_project_json(
                project, releases, files, file_url=self.absolute_file_url, version=version
            )
        except LookupError:
            return text(404, f"no release {version!r} of {name!r}")
        return self.page(
            request,
            body,
            "application/json",
            [cachepolicy.project_key(name)],
            project.last_serial,
            vary=False,
        )

    def json_project(self, request: Request) -> Response:
        return self._json(request, None)

    def json_release(self, request: Request) -> Response:
        return self._json(request, request.path_params["version"])

    # -- authentication ----------------------------------------------------------------------
    def authenticate(self, request: Request) -> TokenRow | Response:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        secret = ""
        if scheme.lower() == "basic":
            try:
                user, _, secret = base64.b64decode(value).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return text(400, "malformed Authorization header")
            if user != "__token__":
                return text(
                    403,
                    "Invalid or non-existent authentication information: "
                    "use the username __token__ and an API token as password",
                )
        elif scheme.lower() == "bearer":
            secret = value.strip()
        if not secret:
            return text(
                401,
                "authentication required: an API token (username __token__)",
                {"WWW-Authenticate": 'Basic realm="pkgedge"'},
            )
        token = self.catalog.verify_token(secret)
        if token is None:
            return text(
                403,
                "Invalid or non-existent authentication information: "
                "the API token is unknown or revoked",
            )
        return token

    @staticmethod
    def allowed(token: TokenRow, project: str) -> Response | None:
        if token.project is not None and token.project != project:
            return text(
                403,
                f"Invalid API Token: this token is scoped to project "
                f"{token.project!r}, not {project!r}",
            )
        return None

    # -- uploads (the legacy upload API used by twine, uv publish, poetry) --------------------
    async def upload(self, request: Request) -> Response:
        auth = await run_in_threadpool(self.authenticate, request)
        if isinstance(auth, Response):
            return auth
        length = request.headers.get("content-length")
        limit = self.settings.max_upload_size
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
            return await run_in_threadpool(self._store_upload, auth, fields, content)
        raise AssertionError("unreachable")  # pragma: no cover

    def _store_upload(
        self, token: TokenRow, fields: dict[str, str | list[str]], content: UploadFile
    ) -> Response:
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, delete=True) as tmp:
            content.file.seek(0)
            shutil.copyfileobj(content.file, tmp, 1 << 20)
            tmp.flush()
            try:
                up = validate_upload(
                    fields,
                    content.filename or "",
                    Path(tmp.name),
                    max_size=self.settings.max_upload_size,
                )
            except UploadError as exc:
                return text(exc.status, exc.reason)
            denied = self.allowed(token, up.project)
            if denied is not None:
                return denied
            hosted = self.catalog.get_project(up.project)
            if hosted is not None and hosted.status in ("archived", "quarantined"):
                return text(
                    400,
                    f"Project {up.project!r} is {hosted.status}: it does not accept new uploads.",
                )
            key = names.blob_key(up.sha256, up.filename)
            existing = self.catalog.file_by_name(up.filename)
            if existing is not None and existing.sha256 == up.sha256:
                # as the public index: 200, so twine and uv publish count it as uploaded
                return PlainTextResponse("OK (identical file already uploaded)\n")
            put: list[str] = []
            try:
                self.storage.put(key, Path(tmp.name), size=up.size)
                put.append(key)
                if up.core_metadata is not None:
                    mpath = Path(tmp.name + ".metadata")
                    mpath.write_bytes(up.core_metadata)
                    try:
                        self.storage.put(key + ".metadata", mpath)
                    finally:
                        mpath.unlink(missing_ok=True)
                    put.append(key + ".metadata")
                row = self._file_row(up, key)
                self.catalog.add_file(up.display_name, up.metadata, row)
            except FileExists:
                return PlainTextResponse("OK (identical file already uploaded)\n")
            except FilenameConflict as exc:
                # as the public index: 400 "File already exists ..." (what twine's and uv
                # publish's checks look for), and a link to what this index has
                self._discard(put)
                base = (self.settings.base_url or "").rstrip("/")
                page = f"{base}/project/{up.project}/{up.version}/"
                return text(exc.status, f"{exc.reason} See {page} for the files of this release.")
            except HTTPError as exc:  # UploadError, FilenameReused, ...
                self._discard(put)
                return text(exc.status, exc.reason)
            except Exception:
                self._discard(put)
                raise
        self.purger.purge(cachepolicy.keys_for_change(up.project))
        self.prerender(up.project)
        return PlainTextResponse("OK\n")

    @staticmethod
    def _file_row(up: Any, key: str) -> FileRow:
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

    def _discard(self, keys: list[str]) -> None:
        for key in keys:
            with contextlib.suppress(Exception):
                if self.catalog.file_by_blob_key(key.removesuffix(".metadata")) is None:
                    self.storage.delete(key)

    # -- yank / delete API -------------------------------------------------------------------
    def _manage(self, request: Request, action: Callable[[str, str | None], Any]) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        name = names.normalize(request.path_params["name"])
        denied = self.allowed(token, name)
        if denied is not None:
            return denied
        version = request.path_params.get("version")
        if self.catalog.release(name, version or "") is None:
            return text(404, f"no release {version!r} of {name!r}")
        result = action(name, version)
        self.purger.purge(cachepolicy.keys_for_change(name))
        self.prerender(name)
        return PlainTextResponse(
            json.dumps(result) + "\n", media_type="application/json", headers=cachepolicy.NO_STORE
        )

    async def api_yank(self, request: Request) -> Response:
        reason = ""
        with contextlib.suppress(ValueError):
            data = await request.json()
            if isinstance(data, dict) and isinstance(data.get("reason"), str):
                reason = data["reason"]

        def act(name: str, version: str | None) -> dict[str, Any]:
            self.catalog.yank(name, version or "", reason or None)
            return {"yanked": True, "reason": reason}

        return await run_in_threadpool(self._manage, request, act)

    async def api_unyank(self, request: Request) -> Response:
        def act(name: str, version: str | None) -> dict[str, Any]:
            self.catalog.unyank(name, version or "")
            return {"yanked": False}

        return await run_in_threadpool(self._manage, request, act)

    async def api_delete_release(self, request: Request) -> Response:
        def act(name: str, version: str | None) -> dict[str, Any]:
            rows = self.catalog.delete_release(name, version or "")
            for row in rows:
                for k in (row.blob_key, row.blob_key + ".metadata"):
                    with contextlib.suppress(Exception):
                        self.storage.delete(k)
            return {"deleted": [r.filename for r in rows]}

        return await run_in_threadpool(self._manage, request, act)

    def api_delete_file(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        row = self.catalog.file_by_name(request.path_params["filename"])
        if row is None:
            return text(404, "no such file")
        denied = self.allowed(token, row.project)
        if denied is not None:
            return denied
        self.catalog.delete_file(row.filename)
        for k in (row.blob_key, row.blob_key + ".metadata"):
            with contextlib.suppress(BlobNotFound, OSError):
                self.storage.delete(k)
        self.purger.purge(cachepolicy.keys_for_change(row.project))
        self.prerender(row.project)
        return PlainTextResponse(
            json.dumps({"deleted": [row.filename]}) + "\n", media_type="application/json"
        )
