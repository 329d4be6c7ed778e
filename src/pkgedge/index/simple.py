"""The simple repository API, rendered (pure: rows in, bytes out; no I/O, no framework).

Formats: PEP 503 HTML (served as ``text/html`` or PEP 691's
``application/vnd.pypi.simple.v1+html``) and PEP 691 JSON
(``application/vnd.pypi.simple.v1+json``), chosen by :func:`negotiate`.

Per file we emit: the URL with a ``#sha256=`` fragment (PEP 503), ``requires-python``
(PEP 503/691), yanked state and reason (PEP 592), the core metadata's hash (PEP 658/714),
and in JSON ``size`` and ``upload-time`` plus the page's ``versions`` (PEP 700). No
``data-provenance`` / ``provenance`` (PEP 740) and no ``data-gpg-sig``.

Core metadata (PEP 658, renamed by PEP 714). HTML: ``data-core-metadata="sha256=<hex>"``
plus its legacy twin ``data-dist-info-metadata`` (PEP 714: MAY, and the value MUST match),
only when the row has ``metadata_sha256``; without it a file gets neither, since we never
advertise what cannot be served. JSON: ``"core-metadata": {"sha256": ...}`` or ``false``,
and *no* ``dist-info-metadata`` key. PEP 714 says servers should not emit the old JSON key
unless no broken pip can reach them: pip 22.3 to 23.1 fail hard on it, and early Python 3.11
releases still bundle those versions.

API version: ``"1.4"``. The version is what the response implements (PEP 629), and the
minor versions are cumulative: 1.1 is PEP 700 (``versions``, ``size``, ``upload-time``), 1.2
is PEP 708 (``tracks``, ``alternate-locations``), 1.3 is PEP 740 (``provenance``), 1.4 is
PEP 792 (project status). PEP 714 only renamed a key and bumped nothing. We emit PEP 792's
project status: ``<meta name="pypi:project-status">`` and ``pypi:project-status-reason`` in
HTML, and the top-level ``"project-status": {"status", "reason"}`` object in JSON (the PEP's
worked example, and what clients parse; the PEP's prose says ``state``, which nobody emits).
PEP 792 says a per-project response carrying these MUST declare ``1.4``; it was "1.1" before
(issue 12), which told feature-detecting clients to ignore the status we sent. Declaring 1.4
also claims 1.2 and 1.3, whose additions are all optional for an index: PEP 708's keys MAY be
given (we have no tracked or alternate locations), and PEP 740's ``provenance`` /
``data-provenance`` is present only for files with attestations (our uploads take none, so
we emit none). The project list carries the same version: PEP 792 changes no root response,
and one index answering one version is what PEP 629 readers expect. pip and uv read any 1.x.
We honour PEP 792's index semantics in the renderer: a ``quarantined`` project lists no files
(its versions stay listed, as in the PEP's example), and uploads to an archived or
quarantined project are refused.

Speed: no template engine and no ``json.dumps`` (about twice as slow here). Pages are built
from f-string pieces and joined once. Whether a column of values (all filenames, all URLs,
...) needs any escaping is decided by one C-speed scan over the column. Only if that scan
finds something is each value escaped; a filename that passed
:mod:`pkgedge.index.names` never needs it. Attribute and key fragments that repeat
(``requires-python``, yanked state) are cached per page. Output is deterministic: files
sorted by filename, projects by normalised name, versions in the caller's order with
duplicates dropped.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Callable
from datetime import UTC
from functools import lru_cache
from operator import attrgetter
from urllib.parse import quote

from pkgedge.index.model import FileRow, ProjectRow

__all__ = [
    "API_VERSION",
    "HTML_V1",
    "JSON_V1",
    "TEXT_HTML",
    "content_type_header",
    "etag_for",
    "negotiate",
    "render_project_list",
    "render_project_page",
]

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
#: PEP 691: a client may ask for "latest"; the server answers with the concrete version.
JSON_LATEST = "application/vnd.pypi.simple.latest+json"
HTML_LATEST = "application/vnd.pypi.simple.latest+html"

API_VERSION = "1.4"

_ALIASES = {
    JSON_V1: JSON_V1,
    HTML_V1: HTML_V1,
    TEXT_HTML: TEXT_HTML,
    JSON_LATEST: JSON_V1,
    HTML_LATEST: HTML_V1,
}
#: Offers, in the order used to break ties among *explicitly named* types of equal q: a
#: client that names JSON understands it, and only JSON carries PEP 700's fields.
_OFFERS = (JSON_V1, HTML_V1, TEXT_HTML)
_EXPLICIT_RANK = {JSON_V1: 2, HTML_V1: 1, TEXT_HTML: 0}
#: ...and among types matched only by a wildcard: ``*/*`` (browsers, curl, no header) gets
#: plain HTML, ``application/*`` the versioned HTML.
_WILDCARD_RANK = {TEXT_HTML: 2, HTML_V1: 1, JSON_V1: 0}

_BY_FILENAME = attrgetter("filename")
_JSON_SAFE_BYTES = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
_NORMALISED_NAME_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789-"
_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _needs_html_escape(value: str) -> bool:
    # Substring tests are memchr-fast; a regex character class is ~100x slower on long text.
    return "&" in value or "<" in value or ">" in value or '"' in value or "'" in value


def _needs_json_escape(value: str) -> bool:
    # Safe: printable ASCII other than '"' and '\\'. Deleting the safe bytes leaves the
    # unsafe ones; bytes.translate is a C table loop (str.isprintable is ~5x slower).
    if not value.isascii():
        return True
    return bool(value.encode("ascii").translate(None, _JSON_SAFE_BYTES))


def _esc(value: str) -> str:
    """HTML-escape for text and double-quoted attributes; fast path when nothing to do."""
    return html.escape(value) if _needs_html_escape(value) else value


# --- content negotiation -----------------------------------------------------------------


def _parse_q(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


@lru_cache(maxsize=512)
def _negotiate_accept(accept: str) -> str | None:
    # For each offer: (q, specificity) of the most specific matching range (RFC 9110 §12.5.1).
    best: dict[str, tuple[int, float]] = {}
    for item in accept.split(","):
        media, *params = item.split(";")
        media = media.strip().lower()
        if not media:
            continue
        media = _ALIASES.get(media, media)
        q = _parse_q(params)
        kind, _, sub = media.partition("/")
        for offer in _OFFERS:
            if media == offer:
                spec = 2
            elif sub == "*" and (kind == "*" or offer.startswith(kind + "/")):
                spec = 0 if kind == "*" else 1
            else:
                continue
            seen = best.get(offer)
            if seen is None or spec > seen[0] or (spec == seen[0] and q > seen[1]):
                best[offer] = (spec, q)
    choice: str | None = None
    choice_key: tuple[float, int, int] = (0.0, -1, -1)
    for offer, (spec, q) in best.items():
        if q <= 0.0:
            continue
        rank = _EXPLICIT_RANK[offer] if spec == 2 else _WILDCARD_RANK[offer]
        key = (q, 1 if spec == 2 else 0, rank)
        if key > choice_key:
            choice, choice_key = offer, key
    return choice


def negotiate(accept: str | None, format_param: str | None) -> str | None:
    """The media type to answer with, or None (the app answers 406 Not Acceptable).

    ``?format=`` wins when it names a type we serve (PEP 691 "URL parameter"); an unknown
    value falls back to the Accept header. No Accept header (or an empty one) is ``*/*``,
    which gets ``text/html``. Otherwise the highest q wins; a type named explicitly beats
    one matched by a wildcard; among explicit types of equal q JSON beats HTML, among
    wildcard matches ``text/html`` beats the versioned HTML beats JSON. ``latest`` types
    answer with their v1 type. q=0 means "not acceptable".
    """
    if format_param:
        chosen = _ALIASES.get(format_param.strip().lower())
        if chosen is not None:
            return chosen
    if accept is None or not accept.strip():
        return TEXT_HTML
    return _negotiate_accept(accept)


def content_type_header(media_type: str) -> str:
    """The Content-Type field value for a negotiated media type (HTML gets a charset)."""
    return media_type if media_type == JSON_V1 else media_type + "; charset=utf-8"


def etag_for(body: bytes) -> str:
    """A strong ETag (quoted) from a 128-bit BLAKE2b digest of the body."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


# --- rendering ---------------------------------------------------------------------------


_TWO_DIGITS = [f"{i:02d}" for i in range(60)]


def _upload_times(files: list[FileRow]) -> list[str]:
    """PEP 700 ``upload-time`` of each file: ``yyyy-mm-ddThh:mm:ss.ffffffZ`` in UTC.

    Naive datetimes are taken as UTC. The date part is cached per day, and the time is put
    together from a two-digit table. That is about a third faster than ``isoformat()``,
    which matters at 10,000 files.
    """
    days: dict[int, str] = {}
    out: list[str] = []
    append = out.append
    two = _TWO_DIGITS
    for f in files:
        dt = f.upload_time
        tz = dt.tzinfo
        if tz is not UTC and tz is not None:
            dt = dt.astimezone(UTC)
        ordinal = dt.toordinal()
        day = days.get(ordinal)
        if day is None:
            day = days[ordinal] = dt.date().isoformat()
        append(f"{day}T{two[dt.hour]}:{two[dt.minute]}:{two[dt.second]}.{dt.microsecond:06d}Z")
    return out


def _html_head(title: str, extra_meta: str = "") -> list[str]:
    return [
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"{extra_meta}"
        f"    <title>{title}</title>\n  </head>\n  <body>\n"
    ]


_HTML_TAIL = "  </body>\n</html>\n"


def render_project_list(projects: list[ProjectRow], media_type: str, last_serial: int) -> bytes:
    """The projects list (``/simple/``) as PEP 503 HTML or PEP 691 JSON, sorted by name."""
    ordered = sorted(projects, key=attrgetter("project"))
    names = [p.display_name for p in ordered]
    if media_type == JSON_V1:
        items = ",".join([f'{{"name":{n}}}' for n in _json_strings(names)])
        return (
            f'{{"meta":{{"_last-serial":{int(last_serial)},"api-version":"{API_VERSION}"}},'
            f'"projects":[{items}]}}'
        ).encode()
    # Relative links (``<normalised>/``) work wherever the app mounts the index. A stored
    # name that is not a normalised one is percent-encoded, so that it can never read as a
    # scheme ("javascript:") or a path ("../").
    hrefs = [p.project for p in ordered]
    if "".join(hrefs).encode("ascii", "replace").translate(None, _NORMALISED_NAME_BYTES):
        hrefs = [quote(h, safe="") for h in hrefs]
    if _needs_html_escape("".join(names)):
        names = [html.escape(n) for n in names]
    parts = _html_head("Simple index")
    parts.extend([f'    <a href="{h}/">{n}</a><br />\n' for h, n in zip(hrefs, names, strict=True)])
    parts.append(_HTML_TAIL)
    return "".join(parts).encode()


def _project_versions(versions: list[str], files: list[FileRow]) -> list[str]:
    """PEP 700: every version once; every file's version among them."""
    out = dict.fromkeys(versions)
    for f in files:
        if f.version not in out:
            out[f.version] = None
    return list(out)


def render_project_page(
    project: ProjectRow,
    files: list[FileRow],
    versions: list[str],
    media_type: str,
    *,
    file_url: Callable[[FileRow], str],
) -> bytes:
    """A project's page (``/simple/<project>/``) as PEP 503 HTML or PEP 691/700 JSON."""
    # PEP 792: for a quarantined project the index MUST NOT offer any distributions.
    quarantined = project.status == "quarantined"
    files = [] if quarantined else sorted(files, key=_BY_FILENAME)
    if media_type == JSON_V1:
        return _render_project_json(project, files, _project_versions(versions, files), file_url)
    return _render_project_html(project, files, file_url)


def _html_prefix(requires_python: str | None, yanked: bool, reason: str | None) -> str:
    out = ""
    if requires_python is not None:
        out = f' data-requires-python="{html.escape(requires_python)}"'
    if yanked:
        out += f' data-yanked="{html.escape(reason or "")}"'
    return out


def _render_project_html(
    project: ProjectRow, files: list[FileRow], file_url: Callable[[FileRow], str]
) -> bytes:
    name = _esc(project.display_name)
    meta = f'    <meta name="pypi:project-status" content="{_esc(project.status)}">\n'
    if project.status_reason is not None:
        meta += (
            f'    <meta name="pypi:project-status-reason" '
            f'content="{html.escape(project.status_reason)}">\n'
        )
    parts = _html_head(f"Links for {name}", meta)
    parts.append(f"    <h1>Links for {name}</h1>\n")
    # Each column of values is scanned once; values are escaped one by one only if the
    # scan finds something to escape.
    search = _needs_html_escape
    escape = html.escape
    hrefs = [f"{file_url(f)}#sha256={f.sha256}" for f in files]
    if search("".join(hrefs)):
        hrefs = [escape(h) for h in hrefs]
    names = [f.filename for f in files]
    if search("".join(names)):
        names = [escape(n) for n in names]
    md_esc = search("".join([f.metadata_sha256 for f in files if f.metadata_sha256]))
    cache: dict[tuple[str | None, bool, str | None], str] = {}
    attrs: list[str] = []
    append = attrs.append
    for f in files:
        key = (f.requires_python, f.yanked, f.yanked_reason)
        prefix = cache.get(key)
        if prefix is None:
            prefix = cache[key] = _html_prefix(*key)
        md = f.metadata_sha256
        if not md:
            append(prefix)
        else:
            if md_esc:
                md = escape(md)
            append(
                f'{prefix} data-core-metadata="sha256={md}" data-dist-info-metadata="sha256={md}"'
            )
    parts.extend(
        [
            f'    <a href="{h}"{a}>{n}</a><br />\n'
            for h, a, n in zip(hrefs, attrs, names, strict=True)
        ]
    )
    parts.append(_HTML_TAIL)
    return "".join(parts).encode()


def _json_strings(values: list[str]) -> list[str]:
    """JSON string literals; one scan decides whether any value needs escaping."""
    if _needs_json_escape("".join(values)):
        return [_encode_str(v) for v in values]
    return [f'"{v}"' for v in values]


def _json_tail(requires_python: str | None, yanked: bool, reason: str | None) -> str:
    rp = "" if requires_python is None else f',"requires-python":{_encode_str(requires_python)}'
    y = (_encode_str(reason) if reason else "true") if yanked else "false"
    return f'{rp},"yanked":{y}'


def _render_project_json(
    project: ProjectRow,
    files: list[FileRow],
    versions: list[str],
    file_url: Callable[[FileRow], str],
) -> bytes:
    names = _json_strings([f.filename for f in files])
    urls = _json_strings([file_url(f) for f in files])
    shas = _json_strings([f.sha256 for f in files])
    times = _upload_times(files)
    mds = [f.metadata_sha256 for f in files]
    md_values = iter(_json_strings([md for md in mds if md]))
    core_metadata = [f'{{"sha256":{next(md_values)}}}' if md else "false" for md in mds]
    cache: dict[tuple[str | None, bool, str | None], str] = {}
    items: list[str] = []
    append = items.append
    for f, name, url, sha, when, md in zip(
        files, names, urls, shas, times, core_metadata, strict=True
    ):
        key = (f.requires_python, f.yanked, f.yanked_reason)
        tail = cache.get(key)
        if tail is None:
            tail = cache[key] = _json_tail(*key)
        append(
            f'{{"filename":{name},"url":{url},"hashes":{{"sha256":{sha}}},"size":{f.size},'
            f'"upload-time":"{when}"{tail},"core-metadata":{md}}}'
        )
    status = f'{{"status":{_encode_str(project.status)}'
    if project.status_reason is not None:
        status += f',"reason":{_encode_str(project.status_reason)}'
    return (
        f'{{"meta":{{"_last-serial":{int(project.last_serial)},"api-version":"{API_VERSION}"}},'
        f'"name":{_encode_str(project.project)},"project-status":{status}}},'
        f'"versions":[{",".join([_encode_str(v) for v in versions])}],'
        f'"files":[{",".join(items)}]}}'
    ).encode()
