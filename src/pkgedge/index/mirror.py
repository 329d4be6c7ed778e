"""Pull-through mirroring of an upstream index for projects not hosted here.

Pages are fetched from the upstream (PEP 691 JSON preferred, PEP 503 HTML understood), kept
in a small SQLite file with the upstream's freshness and validators, and re-rendered by the
same renderers as hosted projects, with every file under our content-addressed ``/files/``
URLs. A file (or its ``.metadata``) is fetched on first request, verified against the
upstream's sha256, and stored in blob storage. When the upstream is down, what is known is
served stale, with a ``Warning`` header. Files without a sha256 in the upstream's page are
left out: they cannot be content-addressed or verified.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import logging
import re
import sqlite3
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from starlette.requests import Request
from starlette.responses import Response

from pkgedge.http.cachecontrol import delta_seconds, parse_cache_control
from pkgedge.index import cachepolicy, names, simple
from pkgedge.index.model import FileRow, ProjectRow
from pkgedge.index.responses import text
from pkgedge.index.settings import OriginSettings
from pkgedge.index.storage import BlobStorage
from pkgedge.sqlite import use_wal

if TYPE_CHECKING:
    from pkgedge.index.app import Origin

log = logging.getLogger("pkgedge.origin.mirror")
MIRROR_KEY = "mirror"
_TIMEOUT = 20.0
_STALE_WARNING = '110 pkgedge "Response is Stale"'


class UpstreamDown(Exception):
    pass


class _Anchors(html.parser.HTMLParser):
    """Collect PEP 503 anchors with their data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, dict[str, str | None], str]] = []
        self._current: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            d = dict(attrs)
            self._current = (d.get("href") or "", d)
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current[0], self._current[1], "".join(self._text).strip()))
            self._current = None


def _meta_sha(value: Any) -> str | None:
    if isinstance(value, dict):
        sha = value.get("sha256")
        return str(sha) if sha else None
    if isinstance(value, str) and value.startswith("sha256="):
        return value[7:]
    return None


def _safe_key(f: dict[str, Any]) -> str | None:
    """The blob key of an upstream file, or None when its name or hash is unusable."""
    try:
        names.parse_filename(f["filename"])
        return names.blob_key(str(f["sha256"]).lower(), f["filename"])
    except (ValueError, KeyError):
        return None


def parse_upstream_page(body: bytes, ctype: str, page_url: str) -> dict[str, Any]:
    """A simple-API page (JSON or HTML) → {"name", "versions", "files": [...]}."""
    files: list[dict[str, Any]] = []
    if "json" in ctype:
        doc = json.loads(body)
        for f in doc.get("files", []):
            sha = (f.get("hashes") or {}).get("sha256")
            if not sha:
                continue
            files.append(
                {
                    "filename": f["filename"],
                    "url": urljoin(page_url, f["url"]),
                    "sha256": sha,
                    "requires_python": f.get("requires-python"),
                    "yanked": f.get("yanked", False),
                    "size": f.get("size"),
                    "upload_time": f.get("upload-time"),
                    "metadata_sha256": _meta_sha(
                        f.get("core-metadata", f.get("dist-info-metadata"))
                    ),
                }
            )
        return {"name": doc.get("name", ""), "versions": doc.get("versions"), "files": files}
    parser = _Anchors()
    parser.feed(body.decode("utf-8", "replace"))
    for href, attrs, label in parser.anchors:
        url, _, fragment = href.partition("#")
        m = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        if not m:
            continue
        yanked: bool | str = False
        if "data-yanked" in attrs:
            yanked = attrs["data-yanked"] or True
        files.append(
            {
                "filename": label or url.rsplit("/", 1)[-1],
                "url": urljoin(page_url, url),
                "sha256": m.group(1).lower(),
                "requires_python": attrs.get("data-requires-python"),
                "yanked": yanked,
                "size": None,
                "upload_time": None,
                "metadata_sha256": _meta_sha(
                    attrs.get("data-core-metadata") or attrs.get("data-dist-info-metadata")
                ),
            }
        )
    return {"name": "", "versions": None, "files": files}


class Mirror:
    def __init__(self, settings: OriginSettings, storage: BlobStorage, root: Path) -> None:
        self.settings = settings
        self.index_url = settings.upstream
        self.storage = storage
        root.mkdir(parents=True, exist_ok=True)
        self.tmp = root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self._db = sqlite3.connect(
            root / "mirror.db", check_same_thread=False, isolation_level=None
        )
        use_wal(self._db)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS pages (project TEXT PRIMARY KEY, "
            "fetched REAL, expires REAL, etag TEXT, data TEXT)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files (blob_key TEXT PRIMARY KEY, "
            "url TEXT, sha256 TEXT, meta_sha256 TEXT)"
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Mirror {self.index_url}>"

    def close(self) -> None:
        self._db.close()

    # -- pages -----------------------------------------------------------------------------
    def _fetch(self, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, headers={"User-Agent": "pkgedge-mirror", **headers})
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (304, 404, 410):
                return exc.code, {k.lower(): v for k, v in exc.headers.items()}, b""
            raise UpstreamDown(f"upstream answered {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UpstreamDown(f"upstream unreachable: {exc}") from None

    def _freshness(self, headers: dict[str, str]) -> float:
        cc = parse_cache_control(headers.get("cache-control"))
        age = delta_seconds(cc.get("max-age")) if "max-age" in cc else None
        return float(age) if age is not None else self.settings.mirror_ttl

    def page(self, name: str) -> tuple[dict[str, Any], bool] | None:
        """(page data, stale?) for a project, or None if the upstream does not have it."""
        with self._lock:
            row = self._db.execute(
                "SELECT expires, etag, data FROM pages WHERE project=?", (name,)
            ).fetchone()
        now = time.time()
        if row is not None and now < row[0]:
            return json.loads(row[2]), False
        url = self.index_url + name + "/"
        headers = {"Accept": f"{simple.JSON_V1}, {simple.HTML_V1};q=0.2, text/html;q=0.1"}
        if row is not None and row[1]:
            headers["If-None-Match"] = row[1]
        try:
            status, rh, body = self._fetch(url, headers)
        except UpstreamDown as exc:
            log.warning("mirror %s: %s", name, exc)
            if row is not None:
                return json.loads(row[2]), True
            raise
        if status in (404, 410):
            return None
        if status == 304 and row is not None:
            with self._lock:
                self._db.execute(
                    "UPDATE pages SET fetched=?, expires=? WHERE project=?",
                    (now, now + self._freshness(rh), name),
                )
            return json.loads(row[2]), False
        data = parse_upstream_page(body, rh.get("content-type", ""), url)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pages VALUES (?,?,?,?,?)",
                (name, now, now + self._freshness(rh), rh.get("etag"), json.dumps(data)),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                [
                    (
                        names.blob_key(f["sha256"], f["filename"]),
                        f["url"],
                        f["sha256"],
                        f.get("metadata_sha256"),
                    )
                    for f in data["files"]
                ],
            )
        return data, False

    def rows(self, name: str, data: dict[str, Any]) -> tuple[list[FileRow], list[str]]:
        rows = []
        for f in data["files"]:
            key = _safe_key(f)
            if key is None:
                continue
            _, version, ptype, pyver = names.parse_filename(f["filename"])
            yanked = f.get("yanked") or False
            uploaded = f.get("upload_time")
            when = (
                datetime.fromisoformat(uploaded.replace("Z", "+00:00"))
                if uploaded
                else datetime.fromtimestamp(0, UTC)
            )
            rows.append(
                FileRow(
                    project=name,
                    version=version,
                    filename=f["filename"],
                    packagetype=ptype,
                    python_version=pyver,
                    size=int(f.get("size") or 0),
                    sha256=f["sha256"],
                    upload_time=when,
                    blob_key=key,
                    requires_python=f.get("requires_python"),
                    yanked=bool(yanked),
                    yanked_reason=yanked if isinstance(yanked, str) else None,
                    metadata_sha256=f.get("metadata_sha256"),
                )
            )
        versions = data.get("versions") or sorted({r.version for r in rows})
        return rows, list(versions)

    def project_page(self, request: Request, name: str, media: str, origin: Origin) -> Response:
        try:
            found = self.page(name)
        except UpstreamDown as exc:
            return text(502, f"upstream index unavailable and {name!r} not mirrored yet: {exc}")
        if found is None:
            return text(
                404,
                f"no project named {name!r} here or upstream",
                cachepolicy.page_headers(60, 60, [cachepolicy.project_key(name)]),
            )
        data, stale = found
        rows, versions = self.rows(name, data)
        project = ProjectRow(
            project=name,
            display_name=data.get("name") or name,
            last_serial=0,
            created=datetime.fromtimestamp(0, UTC),
        )
        body = simple.render_project_page(
            project, rows, versions, media, file_url=names.file_url_path
        )
        resp = origin.page(request, body, media, [cachepolicy.project_key(name), MIRROR_KEY], 0)
        if stale:
            resp.headers["Warning"] = _STALE_WARNING
            resp.headers["Surrogate-Control"] = "max-age=60, stale-if-error=86400"
        else:
            ttl = int(min(self.settings.edge_ttl, self.settings.mirror_ttl))
            resp.headers["Surrogate-Control"] = (
                f"max-age={ttl}, stale-while-revalidate=60, stale-if-error=86400"
            )
        return resp

    def json_api(self, request: Request, name: str, version: str | None) -> Response:
        return text(404, f"the JSON API is served for hosted projects only ({name!r} is mirrored)")

    # -- files -----------------------------------------------------------------------------
    def fetch_file(self, key: str) -> bool:
        """Fetch, verify and store a mirrored file (or its .metadata). False if unknown."""
        metadata = key.endswith(".metadata")
        base = key.removesuffix(".metadata")
        with self._lock:
            row = self._db.execute(
                "SELECT url, sha256, meta_sha256 FROM files WHERE blob_key=?", (base,)
            ).fetchone()
        if row is None or (metadata and not row[2]):
            return False
        url, sha = row[0], row[1]
        if metadata:
            url = url.split("#", 1)[0] + ".metadata"
            sha = row[2]
        req = urllib.request.Request(url.split("#", 1)[0], headers={"User-Agent": "pkgedge-mirror"})
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.tmp) as tmp:
            try:
                with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                    while block := resp.read(1 << 20):
                        digest.update(block)
                        tmp.write(block)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("mirror file %s: %s", key, exc)
                return False
            tmp.flush()
            if sha and digest.hexdigest() != sha:
                log.warning("mirror file %s: sha256 mismatch, not stored", key)
                return False
            self.storage.put(key, Path(tmp.name))
        return True
