"""The origin's web application (Starlette): what its handlers share, and the route table.

:class:`Origin` holds the catalog, blob storage, the purger, the mirror and the render cache,
and the helpers every handler uses (cacheable pages, file URLs, what to do after a change).
The handlers live in one module per part of the URL space, each a function of the origin
and the request:

- :mod:`~pkgedge.index.simpleroutes`: the simple API (PEP 503 / 691), ``/simple/``;
- :mod:`~pkgedge.index.fileroutes`: files, ``/files/``;
- :mod:`~pkgedge.index.jsonroutes`: the legacy JSON API, ``/pypi/NAME/json``;
- :mod:`~pkgedge.index.uploadroutes`: uploads (twine, uv publish), ``POST /legacy/``;
- :mod:`~pkgedge.index.manageroutes`: yank and delete, ``/api/``;
- :mod:`~pkgedge.index.web`: pages for people, ``/`` and ``/project/``.

Heavy lifting lives elsewhere: rows come from :mod:`pkgedge.index.catalog`, bodies from the
pure renderers (:mod:`~pkgedge.index.simple`, :mod:`~pkgedge.index.jsonapi`), bytes from blob
storage, upload checks from :mod:`~pkgedge.index.upload`, tokens are checked by
:mod:`~pkgedge.index.auth`, responses built by :mod:`~pkgedge.index.responses`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pkgedge.index import (
    cachepolicy,
    fileroutes,
    jsonroutes,
    manageroutes,
    names,
    simple,
    simpleroutes,
    uploadroutes,
)
from pkgedge.index.catalog import Catalog
from pkgedge.index.mirror import Mirror
from pkgedge.index.model import FileRow, ProjectRow
from pkgedge.index.pages import PageStore
from pkgedge.index.purge import Purger
from pkgedge.index.responses import cacheable_page
from pkgedge.index.settings import OriginSettings
from pkgedge.index.storage import BlobStorage, storage_from_url

__all__ = ["Origin"]


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
        self.pages = PageStore(data / "pages", partial(simpleroutes.render_page, self))
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

        def on(handler: Callable[[Origin, Request], Any]) -> Callable[[Request], Any]:
            return partial(handler, self)  # starlette looks through the partial: sync or async

        return [
            Route("/simple", on(simpleroutes.simple_redirect)),
            Route("/simple/", on(simpleroutes.project_list)),
            Route("/simple/{name}", on(simpleroutes.simple_redirect)),
            Route("/simple/{name}/", on(simpleroutes.project_page)),
            Route("/files/{key:path}", on(fileroutes.file), methods=["GET", "HEAD"]),
            Route("/pypi/{name}/json", on(jsonroutes.json_project)),
            Route("/pypi/{name}/{version}/json", on(jsonroutes.json_release)),
            Route("/legacy/", on(uploadroutes.upload), methods=["POST"]),
            Route("/", web.home(self), methods=["GET", "HEAD"]),
            Route("/", on(uploadroutes.upload), methods=["POST"]),
            Route("/project/{name}/", web.project(self)),
            Route("/project/{name}/{version}/", web.project(self)),
            Route(
                "/api/projects/{name}/{version}/yank", on(manageroutes.api_yank), methods=["POST"]
            ),
            Route(
                "/api/projects/{name}/{version}/unyank",
                on(manageroutes.api_unyank),
                methods=["POST"],
            ),
            Route(
                "/api/projects/{name}/{version}",
                on(manageroutes.api_delete_release),
                methods=["DELETE"],
            ),
            Route("/api/files/{filename}", on(manageroutes.api_delete_file), methods=["DELETE"]),
            Route("/healthz", lambda r: PlainTextResponse("ok\n")),
        ]

    # -- what the handlers share -------------------------------------------------------------
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
        """A cacheable page with this origin's TTLs and its ETag; answers 304 to a matching
        If-None-Match (:func:`pkgedge.index.responses.cacheable_page`)."""
        return cacheable_page(
            request,
            body,
            media_type,
            keys,
            serial,
            edge_ttl=self.settings.edge_ttl,
            client_ttl=self.settings.client_ttl,
            vary=vary,
            etag=etag,
        )

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

    def changed(self, project: str) -> None:
        """After a commit that changed ``project``: purge its keys at the edge, and render its
        pages again in the background."""
        self.purger.purge(cachepolicy.keys_for_change(project))
        self.prerender(project)

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
