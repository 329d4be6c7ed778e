"""The legacy JSON API (``/pypi/<name>/json`` and ``/pypi/<name>/<version>/json``), rendered.

Pure: rows in, bytes out. This API is not a standard. The shape is the one tools read
today: ``info`` (one release's core metadata), ``last_serial``, ``releases`` (every
version to its files; only on the project endpoint, the public index leaves it out of the
version endpoint), ``urls`` (the files of the release in ``info``) and ``vulnerabilities``
(always empty: we keep no advisory data).

Which release ``info`` describes on the project endpoint: the highest non-yanked
non-prerelease version. Failing that, the highest non-yanked one, prereleases included.
With every release yanked, the same rule over all releases. This is the public index's
rule.

Keys are in alphabetical order (as the public index writes them); ``releases`` is in PEP 440
order, and files within a release by filename, so the output is deterministic. Files of a
``quarantined`` project (PEP 792) are never listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from packaging.version import InvalidVersion, Version

from pkgedge.index.model import FileRow, ProjectRow, ReleaseRow

__all__ = ["render_project_json"]

_ZERO = Version("0")


def _parse(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _order_key(version: str, parsed: Version | None) -> tuple[bool, Version, str]:
    return (parsed is not None, parsed or _ZERO, version)


def _utc_naive(dt: datetime) -> datetime:
    offset = dt.utcoffset()
    if offset:
        dt = dt - offset
    return dt.replace(tzinfo=None)


def _file_dict(f: FileRow, url: str) -> dict[str, Any]:
    digests: dict[str, str] = {}
    if f.blake2b_256:
        digests["blake2b_256"] = f.blake2b_256
    if f.md5:
        digests["md5"] = f.md5
    digests["sha256"] = f.sha256
    when = _utc_naive(f.upload_time)
    return {
        "comment_text": "",
        "digests": digests,
        "downloads": -1,
        "filename": f.filename,
        "has_sig": False,
        "md5_digest": f.md5,
        "packagetype": f.packagetype,
        "python_version": f.python_version,
        "requires_python": f.requires_python,
        "size": f.size,
        "upload_time": when.isoformat(timespec="seconds"),
        "upload_time_iso_8601": when.isoformat(timespec="microseconds") + "Z",
        "url": url,
        "yanked": f.yanked,
        "yanked_reason": f.yanked_reason or None,
    }


def _text(value: Any, sep: str) -> str | None:
    """A metadata value as one string (multiple-use fields joined), None when absent."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return sep.join(str(v) for v in value) or None
    return str(value)


def _list_or_none(value: Any) -> list[Any] | None:
    if not value:
        return None
    return list(value) if isinstance(value, list | tuple) else [value]


def _info(project: ProjectRow, release: ReleaseRow) -> dict[str, Any]:
    md = release.metadata
    base = f"/project/{project.project}/"
    project_urls = md.get("project_urls")
    return {
        "author": md.get("author"),
        "author_email": md.get("author_email"),
        "bugtrack_url": None,
        "classifiers": list(md.get("classifiers") or []),
        "description": md.get("description") or "",
        "description_content_type": md.get("description_content_type"),
        "docs_url": None,
        "download_url": md.get("download_url"),
        "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
        "dynamic": _list_or_none(md.get("dynamic")),
        "home_page": md.get("home_page"),
        "keywords": _text(md.get("keywords"), ","),
        "license": md.get("license"),
        "license_expression": md.get("license_expression"),
        "maintainer": md.get("maintainer"),
        "maintainer_email": md.get("maintainer_email"),
        "name": project.display_name,
        "package_url": base,
        "platform": _text(md.get("platform"), ", "),
        "project_url": base,
        "project_urls": dict(project_urls) if project_urls else None,
        "provides_extra": _list_or_none(md.get("provides_extra")),
        "release_url": f"{base}{release.version}/",
        "requires_dist": _list_or_none(md.get("requires_dist")),
        "requires_python": md.get("requires_python"),
        "summary": md.get("summary"),
        "version": release.version,
        "yanked": release.yanked,
        "yanked_reason": release.yanked_reason or None,
    }


def _select_latest(releases: Iterable[tuple[ReleaseRow, Version | None]]) -> ReleaseRow:
    pool = list(releases)
    candidates = [rp for rp in pool if not rp[0].yanked] or pool

    def key(rp: tuple[ReleaseRow, Version | None]) -> tuple[bool, bool, Version, str]:
        release, parsed = rp
        final = parsed is not None and not parsed.is_prerelease
        return (final, *_order_key(release.version, parsed))

    return max(candidates, key=key)[0]


def render_project_json(
    project: ProjectRow,
    releases: list[ReleaseRow],
    files: list[FileRow],
    *,
    file_url: Callable[[FileRow], str],
    version: str | None = None,
) -> bytes:
    """The legacy JSON document for a project, or for one release when ``version`` is given.

    Raises ``LookupError`` when the project has no releases or ``version`` is not one of
    them (the app answers 404). ``version`` matches a release's version exactly or by
    PEP 440 equality (``1.0`` finds ``1.0.0``).
    """
    parsed = [(r, _parse(r.version)) for r in releases]
    if not parsed:
        raise LookupError(f"project {project.project!r} has no releases")
    if version is None:
        selected = _select_latest(parsed)
    else:
        wanted = _parse(version)
        match = [r for r, p in parsed if r.version == version] or [
            r for r, p in parsed if wanted is not None and p == wanted
        ]
        if not match:
            raise LookupError(f"project {project.project!r} has no release {version!r}")
        selected = match[0]

    # Files under their release's version string (exact, else PEP 440 equal).
    by_string = {r.version: r.version for r, _ in parsed}
    by_parsed = {p: r.version for r, p in parsed if p is not None}
    grouped: dict[str, list[FileRow]] = {r.version: [] for r, _ in parsed}
    if project.status != "quarantined":  # PEP 792: offer no distributions
        for f in sorted(files, key=lambda f: f.filename):
            key = by_string.get(f.version)
            if key is None:
                p = _parse(f.version)
                key = by_parsed.get(p, f.version) if p is not None else f.version
            grouped.setdefault(key, []).append(f)

    def dicts(rows: list[FileRow]) -> list[dict[str, Any]]:
        return [_file_dict(f, file_url(f)) for f in rows]

    doc: dict[str, Any] = {
        "info": _info(project, selected),
        "last_serial": project.last_serial,
    }
    if version is None:
        ordered = sorted(grouped, key=lambda v: _order_key(v, _parse(v)))
        doc["releases"] = {v: dicts(grouped[v]) for v in ordered}
    doc["urls"] = dicts(grouped.get(selected.version, []))
    doc["vulnerabilities"] = []
    return json.dumps(doc, separators=(",", ":")).encode()
