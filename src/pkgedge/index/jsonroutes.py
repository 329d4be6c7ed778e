"""The legacy JSON API's handlers: ``/pypi/NAME/json`` and ``/pypi/NAME/VERSION/json``.

A hosted project is rendered from the catalog by :mod:`pkgedge.index.jsonapi` (file URLs are
absolute when ``--base-url`` is set: clients fetch them as they are); a name the catalog does
not host goes to the mirror when mirroring is on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from pkgedge.index import cachepolicy, jsonapi, names
from pkgedge.index.responses import text

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

__all__ = ["json_project", "json_release"]


def json_project(origin: Origin, request: Request) -> Response:
    return _json(origin, request, None)


def json_release(origin: Origin, request: Request) -> Response:
    return _json(origin, request, request.path_params["version"])


def _json(origin: Origin, request: Request, version: str | None) -> Response:
    name = names.normalize(request.path_params["name"])
    project = origin.hosted(name)
    if project is None:
        if origin.mirror is not None:
            return origin.mirror.json_api(request, name, version)
        return text(404, f"no project named {name!r}")
    releases = origin.catalog.releases(name)
    files = origin.catalog.project_files(name)
    try:
        body = jsonapi.render_project_json(
            project, releases, files, file_url=origin.absolute_file_url, version=version
        )
    except LookupError:
        return text(404, f"no release {version!r} of {name!r}")
    return origin.page(
        request,
        body,
        "application/json",
        [cachepolicy.project_key(name)],
        project.last_serial,
        vary=False,
    )
