"""Pages for people: the project list and a project page with its rendered README.

Plain HTML with a little CSS, no JavaScript. Cached at the edge like every other page
(tagged with the project's surrogate key, so an upload refreshes them too).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from pkgedge.index import cachepolicy, names

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}a{color:#0b5394}table{border-collapse:collapse;width:100%}td,th{text-align:left;
padding:.25rem .5rem;border-bottom:1px solid #ddd}.yanked{color:#a00}code,pre{background:#f4f4f4}
pre{padding:.5rem;overflow:auto}.muted{color:#666}"""


def _page(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{body}</body></html>"
    ).encode()


def render_readme(text: str, content_type: str | None) -> str:
    """README to safe HTML with readme_renderer (rst, markdown or plain text)."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    rendered: str | None = None
    try:
        if ctype == "text/markdown":
            from readme_renderer.markdown import render as md

            rendered = md(text)
        elif ctype in ("text/x-rst", ""):
            from readme_renderer.rst import render as rst

            rendered = rst(text)
    except Exception:  # a renderer bug must not break the page
        rendered = None
    if rendered is None:
        return f"<pre>{html.escape(text)}</pre>"
    return rendered


def index_url(origin: Origin) -> str:
    """What to give ``pip --index-url`` for this index: from ``--base-url`` when it is set.
    Without it the origin cannot know its public address (behind the edge it sees its own),
    and a page that took it from request headers could be poisoned in a shared cache, so the
    hint then says ``<this index>``."""
    base = origin.settings.base_url
    return (base.rstrip("/") if base else "<this index>") + "/simple/"


def install_hint(origin: Origin, name: str, version: str) -> str:
    command = f"pip install --index-url {index_url(origin)} {name}=={version}"
    return f"<pre>{html.escape(command)}</pre>"


def _not_found(name: str) -> Response:
    return Response(
        _page("Not found", "<h1>No such project</h1>"),
        status_code=404,
        media_type="text/html; charset=utf-8",
        headers=cachepolicy.page_headers(60, 60, [cachepolicy.project_key(name)]),
    )


def mirrored(origin: Origin, request: Request, name: str) -> Response:
    """The page of a project this index mirrors from its upstream: the files of one
    version, the versions, and how to install it from here (no description: the upstream's
    simple page does not carry one)."""
    from pkgedge.index.mirror import MIRROR_KEY, UpstreamDown

    assert origin.mirror is not None
    try:
        found = origin.mirror.page(name)
    except UpstreamDown:
        found = None
    if found is None:
        return _not_found(name)
    data, _ = found
    rows, versions = origin.mirror.rows(name, data)
    display = str(data.get("name") or name)
    with_files = [v for v in versions if any(r.version == v for r in rows)]
    live = [v for v in with_files if any(r.version == v and not r.yanked for r in rows)]
    wanted = request.path_params.get("version")
    version = wanted if wanted in versions else (live or with_files or versions or [""])[-1]
    if wanted and wanted not in versions:
        return _not_found(name)
    file_rows = "".join(
        f"<tr><td><a href='{names.file_url_path(f)}'>{html.escape(f.filename)}</a></td>"
        f"<td>{f.size:,} bytes</td><td><code>{f.sha256[:16]}…</code></td></tr>"
        for f in rows
        if f.version == version
    )
    links = " ".join(
        f"<a href='/project/{name}/{html.escape(v)}/'>{html.escape(v)}</a>"
        for v in reversed(versions)
    )
    body = _page(
        f"{display} {version}",
        f"<p><a href='/'>all projects</a></p>"
        f"<h1>{html.escape(display)} {html.escape(version)}</h1>"
        f"<p class='muted'>Mirrored from the upstream index.</p>"
        f"{install_hint(origin, display, version)}<h2>Files</h2><table>{file_rows}</table>"
        f"<h2>Versions</h2><p>{links}</p>",
    )
    return origin.page(
        request,
        body,
        "text/html; charset=utf-8",
        [cachepolicy.project_key(name), MIRROR_KEY],
        0,
        vary=False,
    )


def home(origin: Origin) -> Callable[[Request], Any]:
    def endpoint(request: Request) -> Response:
        projects = origin.catalog.list_projects()
        rows = "".join(
            f"<tr><td><a href='/project/{p.project}/'>{html.escape(p.display_name)}</a></td>"
            f"<td class='muted'>{p.created:%Y-%m-%d}</td></tr>"
            for p in projects
        )
        body = _page(
            "pkgedge index",
            f"<h1>Package index</h1><p>{len(projects)} project(s). Install with "
            f"<code>pip install --index-url {html.escape(index_url(origin))} NAME</code>.</p>"
            f"<table><tr><th>Project</th><th>Since</th></tr>{rows}</table>",
        )
        serial = origin.catalog.last_serial()
        return origin.page(
            request,
            body,
            "text/html; charset=utf-8",
            [cachepolicy.ALL_PROJECTS],
            serial,
            vary=False,
        )

    return endpoint


def project(origin: Origin) -> Callable[[Request], Any]:
    def endpoint(request: Request) -> Response:
        name = names.normalize(request.path_params["name"])
        proj = origin.catalog.get_project(name)
        if proj is None:
            if origin.mirror is not None and origin.catalog.allows_upstream(name):
                return mirrored(origin, request, name)
            return _not_found(name)
        releases = origin.catalog.releases(name)
        wanted = request.path_params.get("version")
        release = next((r for r in releases if r.version == wanted), None) if wanted else None
        if release is None:
            live = [r for r in releases if not r.yanked]
            release = (live or releases)[-1] if releases else None
        if release is None:
            return Response(status_code=404)
        meta = release.metadata
        files = origin.catalog.release_files(name, release.version)
        file_rows = "".join(
            f"<tr><td><a href='{origin.file_url(f)}'>{html.escape(f.filename)}</a></td>"
            f"<td>{f.size:,} bytes</td><td><code>{f.sha256[:16]}…</code></td></tr>"
            for f in files
        )
        versions = " ".join(
            f"<a class='{'yanked' if r.yanked else ''}' href='/project/{name}/{r.version}/'>"
            f"{html.escape(r.version)}</a>"
            for r in reversed(releases)
        )
        yanked = (
            f"<p class='yanked'>Yanked: {html.escape(release.yanked_reason or 'no reason')}</p>"
            if release.yanked
            else ""
        )
        readme = render_readme(
            str(meta.get("description") or ""), meta.get("description_content_type")
        )
        body = _page(
            f"{proj.display_name} {release.version}",
            f"<p><a href='/'>all projects</a></p>"
            f"<h1>{html.escape(proj.display_name)} {html.escape(release.version)}</h1>"
            f"<p>{html.escape(str(meta.get('summary') or ''))}</p>{yanked}"
            f"{install_hint(origin, proj.display_name, release.version)}"
            f"<h2>Files</h2><table>{file_rows}</table>"
            f"<h2>Versions</h2><p>{versions}</p><h2>Description</h2>{readme}",
        )
        return origin.page(
            request,
            body,
            "text/html; charset=utf-8",
            [cachepolicy.project_key(name)],
            proj.last_serial,
            vary=False,
        )

    return endpoint
