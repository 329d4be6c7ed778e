"""The simple API's handlers (PEP 503 HTML, PEP 691 JSON): ``/simple/`` and ``/simple/NAME/``.

Each negotiates the media type, reads rows from the catalog and answers a cacheable page. A
hosted project's page comes from the render cache (:mod:`pkgedge.index.pages`, which calls
:func:`render_page`); a name the catalog does not host goes to the mirror when mirroring is
on; a hosted project the operator allowed to merge upstream releases is rendered per request
with them. The bodies are :mod:`pkgedge.index.simple`'s pure renderers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from pkgedge.index import cachepolicy, names, simple
from pkgedge.index.model import ProjectRow
from pkgedge.index.responses import moved, text

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

__all__ = ["project_list", "project_page", "render_page", "simple_redirect"]


def simple_redirect(origin: Origin, request: Request) -> Response:
    """``/simple`` and ``/simple/NAME`` (no slash) to their canonical URL."""
    name = request.path_params.get("name")
    return moved("/simple/" if name is None else f"/simple/{names.normalize(name)}/")


def _media_type(request: Request) -> str | None:
    return simple.negotiate(request.headers.get("accept"), request.query_params.get("format"))


def _not_acceptable() -> Response:
    return text(406, f"no acceptable representation: ask for {simple.JSON_V1} or {simple.HTML_V1}")


def project_list(origin: Origin, request: Request) -> Response:
    media = _media_type(request)
    if media is None:
        return _not_acceptable()
    projects = origin.catalog.list_projects()
    serial = origin.catalog.last_serial()
    body = simple.render_project_list(projects, media, serial)
    return origin.page(request, body, media, [cachepolicy.ALL_PROJECTS], serial)


def project_page(origin: Origin, request: Request) -> Response:
    raw = request.path_params["name"]
    name = names.normalize(raw)
    if name != raw:
        return moved(f"/simple/{name}/")
    media = _media_type(request)
    if media is None:
        return _not_acceptable()
    project = origin.hosted(name)
    if project is None:
        if origin.mirror is not None:
            return origin.mirror.project_page(request, name, media, origin)
        return text(
            404,
            f"no project named {name!r}",
            cachepolicy.page_headers(60, 60, [cachepolicy.project_key(name)]),
        )
    if origin.mirror is not None and origin.catalog.allows_upstream(name):
        return _merged_page(origin, request, project, media)
    body, etag = origin.pages.get(project, media)
    return origin.page(
        request, body, media, [cachepolicy.project_key(name)], project.last_serial, etag=etag
    )


def render_page(origin: Origin, project: ProjectRow, media: str) -> bytes:
    """A hosted project's page, from the catalog (what the render cache stores)."""
    files = origin.catalog.project_files(project.project)
    versions = origin.catalog.release_versions(project.project)
    return simple.render_project_page(project, files, versions, media, file_url=origin.file_url)


def _merged_page(origin: Origin, request: Request, project: ProjectRow, media: str) -> Response:
    """A hosted project the operator allowed to merge upstream releases: local files
    first; upstream files whose filename is not hosted here are added."""
    assert origin.mirror is not None
    name = project.project
    files = origin.catalog.project_files(name)
    versions = [r.version for r in origin.catalog.releases(name)]
    try:
        found = origin.mirror.page(name)
    except Exception:  # the upstream is down: the hosted files alone are still right
        found = None
    if found is not None:
        extra, extra_versions = origin.mirror.rows(name, found[0])
        local = {f.filename for f in files}
        files += [f for f in extra if f.filename not in local]
        versions += [v for v in extra_versions if v not in versions]
    body = simple.render_project_page(project, files, versions, media, file_url=origin.file_url)
    keys = [cachepolicy.project_key(name), "mirror"]
    return origin.page(request, body, media, keys, project.last_serial)
