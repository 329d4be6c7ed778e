"""A real upstream package index for tests: HTTP/1.1 on 127.0.0.1, PEP 503/691/658/700.

:class:`UpstreamIndex` serves the distributions of a directory::

    /simple/                      project list (HTML, or PEP 691 JSON when Accept prefers it)
    /simple/<name>/               project page, links with #sha256=, data-requires-python,
                                  data-dist-info-metadata / data-core-metadata (PEP 658/714)
    /files/<name>/<filename>      the distribution (Range, HEAD)
    /files/<name>/<filename>.metadata   core metadata of a wheel (PEP 658)
    /big/<nbytes>                 generated deterministic body of nbytes, streamed (Range, HEAD,
                                  ``?rate=BYTES_PER_S`` throttle)

Every 200/206/304 carries ETag and Last-Modified, and If-None-Match / If-Modified-Since /
If-Range are honoured. Cache headers are the PyPI-like defaults of :data:`DEFAULT_PAGE_HEADERS`
and :data:`DEFAULT_FILE_HEADERS`, overridable per path prefix (:meth:`UpstreamIndex.set_headers`).
Every request is logged (:attr:`UpstreamIndex.log`, :meth:`UpstreamIndex.count`), faults can be
injected per path prefix (:meth:`UpstreamIndex.fail`, :meth:`UpstreamIndex.hang`, ...), and the
server can be stopped and started again on the same port.

With ``file_host=True`` the files live on a second server (:attr:`UpstreamIndex.file_server`) and
index pages link to them with absolute URLs, the way PyPI links to its file host; the index server
then answers 404 for ``/files/`` and ``/big/``.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import html
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .packages import (
    canonicalize_name,
    make_sdist,
    make_wheel,
    parse_filename,
    read_metadata,
)

__all__ = [
    "BIG_BLOCK",
    "DEFAULT_FILE_HEADERS",
    "DEFAULT_PAGE_HEADERS",
    "JSON_CT",
    "PIP_ACCEPT",
    "Fault",
    "FileEntry",
    "LoggedRequest",
    "UpstreamIndex",
    "big_chunks",
    "expected_bytes",
    "populate_default",
    "sha256_of_big",
]

JSON_CT = "application/vnd.pypi.simple.v1+json"
HTML_V1_CT = "application/vnd.pypi.simple.v1+html"
#: The Accept header pip sends for index pages.
PIP_ACCEPT = f"{JSON_CT}, {HTML_V1_CT}; q=0.1, text/html; q=0.01"

DEFAULT_PAGE_HEADERS: dict[str, str] = {
    "Cache-Control": "max-age=60, public",
    "Surrogate-Control": "max-age=3600, stale-while-revalidate=60, stale-if-error=86400",
}
DEFAULT_FILE_HEADERS: dict[str, str] = {
    "Cache-Control": "max-age=31536000, immutable, public",
}
DEFAULT_ERROR_HEADERS: dict[str, str] = {"Cache-Control": "no-store"}

# --------------------------------------------------------------------------------------------
# Generated large bodies
# --------------------------------------------------------------------------------------------

#: Size of the repeating unit of /big/ bodies.
BIG_BLOCK = 64 * 1024
_BIG_PATTERN = b"".join(
    hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BIG_BLOCK // 32)
)


def _big_block(k: int) -> bytes:
    """Block *k* of every /big/ body: the pattern with its first 8 bytes replaced by *k*, so
    blocks differ and a client that skips or repeats a block gets different bytes."""
    return k.to_bytes(8, "big") + _BIG_PATTERN[8:]


def big_chunks(nbytes: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The bytes ``[start, end]`` (inclusive, HTTP style; ``end=None``: to the last byte) of the
    /big/<nbytes> body, in chunks of at most :data:`BIG_BLOCK` bytes, never all at once."""
    last = nbytes - 1 if end is None else min(end, nbytes - 1)
    pos = start
    while pos <= last:
        k, off = divmod(pos, BIG_BLOCK)
        take = min(BIG_BLOCK - off, last - pos + 1)
        yield _big_block(k)[off : off + take]
        pos += take


def expected_bytes(nbytes: int, start: int = 0, end: int | None = None) -> bytes:
    """What a client must receive for ``Range: bytes=start-end`` of /big/<nbytes>."""
    return b"".join(big_chunks(nbytes, start, end))


_big_sha_cache: dict[int, str] = {}


def sha256_of_big(nbytes: int) -> str:
    """Hex sha256 of the whole /big/<nbytes> body (computed in chunks, cached)."""
    if nbytes not in _big_sha_cache:
        h = hashlib.sha256()
        for chunk in big_chunks(nbytes):
            h.update(chunk)
        _big_sha_cache[nbytes] = h.hexdigest()
    return _big_sha_cache[nbytes]


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


class LoggedRequest(NamedTuple):
    method: str
    path: str  # as requested, query string included
    headers: dict[str, str]  # names lower-cased


@dataclass
class FileEntry:
    """One file of a project, as the index lists it."""

    project: str  # canonical name
    filename: str
    path: Path | None  # None for generated (/big/) files
    sha256: str
    size: int
    last_modified: int  # epoch seconds
    requires_python: str | None = None
    metadata: bytes | None = None  # PEP 658 core metadata (wheels)
    yanked: str | bool = False
    big: int | None = None  # nbytes of a /big/ file

    @property
    def url_path(self) -> str:
        if self.big is not None:
            return f"/big/{self.big}"
        return f"/files/{self.project}/{quote(self.filename)}"

    @property
    def metadata_sha256(self) -> str | None:
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None

    @property
    def etag(self) -> str:
        return f'"{self.sha256[:32]}"'


@dataclass
class Project:
    name: str  # canonical
    display_name: str
    files: list[FileEntry] = field(default_factory=list)
    last_modified: int = 0


@dataclass
class Fault:
    """An injected failure for requests whose path starts with ``prefix``.

    ``kind``: ``"status"`` (answer ``status`` with a small body), ``"hang"`` (send nothing until
    ``seconds`` pass, :meth:`UpstreamIndex.clear_faults` or stop; then close), ``"reset"`` (close
    the connection without answering), ``"truncate"`` (send the real headers, then only
    ``after_bytes`` of the body and close). ``times``: how many requests it hits (None: all).
    """

    prefix: str
    kind: str = "status"
    status: int = 503
    seconds: float | None = None
    times: int | None = None
    after_bytes: int = 0
    methods: frozenset[str] | None = None
    hits: int = 0


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _parse_http_date(value: str) -> float | None:
    try:
        dt = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return dt.timestamp() if dt is not None else None


def _parse_accept(value: str | None) -> list[tuple[str, float]]:
    if not value:
        return []
    out: list[tuple[str, float]] = []
    for part in value.split(","):
        items = [p.strip() for p in part.split(";")]
        media = items[0].lower()
        if not media:
            continue
        q = 1.0
        for param in items[1:]:
            key, _, val = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        out.append((media, q))
    return out


def negotiate(accept: str | None) -> str | None:
    """Pick the representation of an index page for an Accept header: ``JSON_CT``,
    ``HTML_V1_CT`` or ``"text/html"``; ``None`` if nothing acceptable (406). Ties go to HTML."""
    offers = _parse_accept(accept)
    if not offers:
        return "text/html"
    ranked = {"text/html": 0.0, HTML_V1_CT: 0.0, JSON_CT: 0.0}
    for media, q in offers:
        targets: tuple[str, ...]
        if media in ("application/vnd.pypi.simple.latest+json", JSON_CT):
            targets = (JSON_CT,)
        elif media in ("application/vnd.pypi.simple.latest+html", HTML_V1_CT):
            targets = (HTML_V1_CT,)
        elif media in ("text/html", "text/*", "*/*"):
            targets = ("text/html",)
        elif media == "application/*":
            targets = (JSON_CT, HTML_V1_CT)
        else:
            continue
        for t in targets:
            ranked[t] = max(ranked[t], q)
    best = max(ranked.values())
    if best <= 0:
        return None
    for choice in ("text/html", HTML_V1_CT, JSON_CT):  # ties: HTML first
        if ranked[choice] == best:
            return choice
    return None


def _parse_range(value: str, size: int) -> tuple[int, int] | bool | None:
    """A single ``bytes=`` range → ``(start, end)`` inclusive; ``None``: ignore the header
    (malformed or multiple ranges); ``False``: unsatisfiable (416)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # suffix: bytes=-N
            n = int(last)
            if n <= 0:
                return False
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return False
    if end < start:
        return None
    return start, min(end, size - 1)


def _etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of an If-None-Match list against *etag*."""
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in header.split(","))


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    owner: _Server

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request)
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # the client (or stop()) went away: not interesting
        super().handle_error(request, client_address)


class _Server:
    """One listening socket (index or file host); start/stop on a stable port."""

    def __init__(self, index: UpstreamIndex, role: str, host: str, port: int) -> None:
        self.index = index
        self.role = role  # "index" | "files"
        self.host = host
        self.port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.release = threading.Event()  # set on stop: wakes hanging handlers

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)

    def start(self) -> None:
        if self._httpd is not None:
            return
        self.release = threading.Event()
        handler = type("Handler", (_Handler,), {"upstream": self.index, "server_role": self})
        deadline = time.monotonic() + 10
        while True:
            try:
                httpd = _HTTPServer((self.host, self.port), handler)
                break
            except OSError:
                # the same port again after stop(): retry briefly (e.g. lingering sockets)
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"upstream-{self.role}-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = None
        self.release.set()
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(5)
        # keep-alive connections outlive serve_forever(): cut them so clients see the origin go
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pkgedge-test-upstream/1.0"
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    upstream: UpstreamIndex
    server_role: _Server

    # quiet
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server_role._untrack(self.connection)

    def do_GET(self) -> None:
        self.upstream._handle(self, head=False)

    def do_HEAD(self) -> None:
        self.upstream._handle(self, head=True)

    def _other(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.upstream._record(self)
        self.close_connection = True
        self.upstream._send_simple(self, 405, b"method not allowed\n", {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


class UpstreamIndex:
    """A PEP 503/691 index of the distributions in *root*, served on 127.0.0.1.

    Args:
        root: directory of distributions (``*.whl``, ``*.tar.gz``); created if missing. Files
            already there are listed; :meth:`add_project` writes new ones into it.
        file_host: serve files from a second server and link to them with absolute URLs.
        absolute_links: link to files with absolute URLs on this server (default: relative
            ``../../files/...``). Implied by *file_host*.
        gzip_pages: gzip index pages for clients that accept it (``Vary: Accept,
            Accept-Encoding``; the ETag gets a ``-gzip`` suffix).
        throttle: bytes/s for every file and /big/ body (None: full speed). Settable later.
        headers: ``{path prefix: {header: value or None}}`` overrides, see :meth:`set_headers`.
        port: the index server port (0: pick one; kept across stop/start).

    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        file_host: bool = False,
        absolute_links: bool = False,
        gzip_pages: bool = False,
        throttle: float | None = None,
        headers: Mapping[str, Mapping[str, str | None]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.file_host = file_host
        self.absolute_links = absolute_links or file_host
        self.gzip_pages = gzip_pages
        self.throttle = throttle
        self._lock = threading.RLock()
        self._projects: dict[str, Project] = {}
        self._overrides: dict[str, dict[str, str | None]] = {}
        self._faults: list[Fault] = []
        self._log: list[LoggedRequest] = []
        self._file_log: list[LoggedRequest] = []
        self._big: dict[int, FileEntry] = {}
        self._root_last_modified = 0
        self.started_at = int(time.time())
        self.index_server = _Server(self, "index", host, port)
        self.file_server: _Server | None = _Server(self, "files", host, 0) if file_host else None
        for prefix, hdrs in (headers or {}).items():
            self.set_headers(prefix, hdrs)
        for path in sorted(self.root.iterdir()):
            if path.name.endswith((".whl", ".tar.gz", ".zip")):
                self.add_file(path)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> UpstreamIndex:
        """Start (or restart, on the same ports) the index server and the file host."""
        self.index_server.start()
        if self.file_server is not None:
            self.file_server.start()
        return self

    def stop(self) -> None:
        """Stop both servers and cut open connections; :meth:`start` brings them back."""
        self.index_server.stop()
        if self.file_server is not None:
            self.file_server.stop()

    def __enter__(self) -> UpstreamIndex:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.index_server.running

    @property
    def port(self) -> int:
        return self.index_server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return self.index_server.url

    @property
    def index_url(self) -> str:
        """``http://127.0.0.1:PORT/simple/``: what an edge or pip is pointed at."""
        return self.url + "/simple/"

    @property
    def files_url(self) -> str:
        """Base URL that file links point to (the file host in ``file_host`` mode)."""
        return self.file_server.url if self.file_server is not None else self.url

    # -- content -----------------------------------------------------------------------------

    def _touch(self, project: Project | None, *, root: bool = False) -> None:
        """Advance Last-Modified by at least one second per change, so conditional requests
        by date see every change even within the same second."""
        now = int(time.time())
        if project is not None:
            project.last_modified = max(now, project.last_modified + 1)
        if root:
            self._root_last_modified = max(now, self._root_last_modified + 1)

    def add_file(
        self,
        path: str | Path,
        *,
        requires_python: str | None = None,
        yanked: str | bool = False,
        project: str | None = None,
    ) -> FileEntry:
        """List an existing distribution (copying it into :attr:`root` if it is elsewhere)."""
        src = Path(path)
        dest = self.root / src.name
        if src.resolve() != dest.resolve():
            dest.write_bytes(src.read_bytes())
        data = dest.read_bytes()
        name, _version = parse_filename(dest.name)
        name = canonicalize_name(project) if project else name
        metadata = read_metadata(dest)
        if requires_python is None and metadata is not None:
            for line in metadata.decode("utf-8", "replace").splitlines():
                if not line.strip():
                    break
                if line.lower().startswith("requires-python:"):
                    requires_python = line.split(":", 1)[1].strip()
        entry = FileEntry(
            project=name,
            filename=dest.name,
            path=dest,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            last_modified=int(time.time()),
            requires_python=requires_python,
            metadata=metadata if dest.name.endswith(".whl") else None,
            yanked=yanked,
        )
        self._register(entry, display_name=name)
        return entry

    def _register(self, entry: FileEntry, *, display_name: str) -> None:
        with self._lock:
            proj = self._projects.get(entry.project)
            new = proj is None
            if proj is None:
                proj = self._projects[entry.project] = Project(entry.project, display_name)
            proj.files = [f for f in proj.files if f.filename != entry.filename] + [entry]
            proj.files.sort(key=lambda f: f.filename)
            self._touch(proj, root=new)

    def add_project(
        self,
        name: str,
        version: str,
        *,
        requires_dist: Iterable[str] = (),
        requires_python: str | None = None,
        extra_files: Mapping[str, str | bytes] | None = None,
        wheel: bool = True,
        sdist: bool = False,
        yanked: str | bool = False,
    ) -> list[FileEntry]:
        """Build and list a release of *name* (a wheel, and/or an sdist). Works while running:
        the project page (and its ETag / Last-Modified) changes, and for a new project the
        /simple/ list too."""
        built = []
        kw: dict[str, Any] = {
            "requires_dist": tuple(requires_dist),
            "requires_python": requires_python,
            "extra_files": extra_files,
        }
        if wheel:
            built.append(make_wheel(self.root, name, version, **kw))
        if sdist:
            built.append(make_sdist(self.root, name, version, **kw))
        return [self.add_file(p, requires_python=requires_python, yanked=yanked) for p in built]

    def add_big_file(self, project: str, nbytes: int, filename: str | None = None) -> FileEntry:
        """List /big/<nbytes> as a file of *project* (linked at ``/big/<nbytes>`` with its real
        sha256). The default filename is ``{project}-big-{nbytes}.bin``; not installable."""
        name = canonicalize_name(project)
        entry = FileEntry(
            project=name,
            filename=filename or f"{name}-big-{nbytes}.bin",
            path=None,
            sha256=sha256_of_big(nbytes),
            size=nbytes,
            last_modified=self.started_at,
            big=nbytes,
        )
        with self._lock:
            self._big[nbytes] = entry
        self._register(entry, display_name=name)
        return entry

    def remove_project(self, name: str) -> None:
        with self._lock:
            if self._projects.pop(canonicalize_name(name), None) is not None:
                self._touch(None, root=True)

    def projects(self) -> list[str]:
        with self._lock:
            return sorted(self._projects)

    def files(self, name: str) -> list[FileEntry]:
        with self._lock:
            proj = self._projects.get(canonicalize_name(name))
            return list(proj.files) if proj else []

    def file(self, filename: str) -> FileEntry:
        """The entry of *filename* (any project)."""
        with self._lock:
            for proj in self._projects.values():
                for f in proj.files:
                    if f.filename == filename:
                        return f
        raise KeyError(filename)

    def file_url(self, filename: str) -> str:
        """Absolute URL of *filename* where it is really served (the file host if any)."""
        return self.files_url + self.file(filename).url_path

    def project_url(self, name: str) -> str:
        return f"{self.index_url}{canonicalize_name(name)}/"

    # -- headers and faults -----------------------------------------------------------------

    def set_headers(self, prefix: str, headers: Mapping[str, str | None]) -> None:
        """Override response headers for paths starting with *prefix* (the longest matching
        prefix wins; it is merged over the defaults). A value of None removes the header.
        Applies to every status; e.g. ``set_headers("/simple/", {"Cache-Control": "no-cache",
        "Surrogate-Control": None})``."""
        with self._lock:
            self._overrides[prefix] = dict(headers)

    def clear_headers(self) -> None:
        with self._lock:
            self._overrides.clear()

    def fail(
        self,
        prefix: str,
        status: int = 503,
        *,
        times: int | None = None,
        methods: Iterable[str] | None = None,
    ) -> Fault:
        """Answer *status* for paths under *prefix* (*times* requests, or until cleared)."""
        return self._add_fault(
            Fault(prefix, "status", status=status, times=times, methods=_methods(methods))
        )

    def hang(self, prefix: str, seconds: float | None = None, *, times: int | None = None) -> Fault:
        """Accept requests under *prefix* but answer nothing for *seconds* (None: until
        :meth:`clear_faults` or :meth:`stop`), then close the connection."""
        return self._add_fault(Fault(prefix, "hang", seconds=seconds, times=times))

    def reset(self, prefix: str, *, times: int | None = None) -> Fault:
        """Close the connection without an answer."""
        return self._add_fault(Fault(prefix, "reset", times=times))

    def truncate(self, prefix: str, after_bytes: int = 0, *, times: int | None = None) -> Fault:
        """Send the real status and headers, then only *after_bytes* of the body, and close."""
        return self._add_fault(Fault(prefix, "truncate", after_bytes=after_bytes, times=times))

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault and wake requests that hang."""
        with self._lock:
            self._faults.clear()
        for srv in (self.index_server, self.file_server):
            if srv is not None:
                srv.release.set()
                srv.release = threading.Event()

    def _take_fault(self, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.prefix):
                    continue
                if fault.methods is not None and method not in fault.methods:
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault
        return None

    # -- request log -------------------------------------------------------------------------

    @property
    def log(self) -> list[LoggedRequest]:
        """Requests the index server received, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def file_log(self) -> list[LoggedRequest]:
        """Requests the file host received (``file_host`` mode), oldest first (a copy)."""
        with self._lock:
            return list(self._file_log)

    def requests(
        self,
        path_prefix: str = "/",
        method: str | None = None,
        *,
        server: str = "any",
        exact: bool = False,
    ) -> list[LoggedRequest]:
        """Logged requests for paths starting with *path_prefix* (equal to it if *exact*,
        query string ignored then), of *method* if given; *server*: ``"any"``, ``"index"``
        or ``"files"``."""
        with self._lock:
            pools = {
                "any": self._log + self._file_log,
                "index": self._log,
                "files": self._file_log,
            }[server]
        return [
            r
            for r in pools
            if (r.path.split("?", 1)[0] == path_prefix if exact else r.path.startswith(path_prefix))
            and (method is None or r.method == method)
        ]

    def count(
        self,
        path_prefix: str = "/",
        method: str | None = None,
        *,
        server: str = "any",
        exact: bool = False,
    ) -> int:
        """How many requests (of *method*, if given) for paths starting with *path_prefix*
        (or equal to it, if *exact*: ``/files/a/a.whl`` without ``/files/a/a.whl.metadata``)
        reached the origin (both servers unless *server* says ``"index"`` or ``"files"``)."""
        return len(self.requests(path_prefix, method, server=server, exact=exact))

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._file_log.clear()

    def _record(self, h: _Handler) -> None:
        entry = LoggedRequest(h.command, h.path, {k.lower(): v for k, v in h.headers.items()})
        with self._lock:
            (self._file_log if h.server_role.role == "files" else self._log).append(entry)

    # -- rendering ---------------------------------------------------------------------------

    def _link(self, entry: FileEntry) -> str:
        if self.absolute_links:
            return self.files_url + entry.url_path
        if entry.big is not None:
            return f"../../big/{entry.big}"
        return f"../../files/{entry.project}/{quote(entry.filename)}"

    def _render_root(self, kind: str) -> bytes:
        with self._lock:
            projects = sorted(self._projects.values(), key=lambda p: p.name)
            if kind == JSON_CT:
                doc = {
                    "meta": {"api-version": "1.1"},
                    "projects": [{"name": p.display_name} for p in projects],
                }
                return json.dumps(doc, indent=1).encode()
            links = "\n".join(
                f'    <a href="{p.name}/">{html.escape(p.display_name)}</a><br/>' for p in projects
            )
        return (
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
            'content="1.1">\n    <title>Simple index</title>\n  </head>\n  <body>\n'
            f"{links}\n  </body>\n</html>\n"
        ).encode()

    def _render_project(self, proj: Project, kind: str) -> bytes:
        with self._lock:
            files = list(proj.files)
        if kind == JSON_CT:
            versions = sorted({_version_of(f) for f in files if _version_of(f)})
            doc = {
                "meta": {"api-version": "1.1"},
                "name": proj.name,
                "versions": versions,
                "files": [
                    {
                        "filename": f.filename,
                        "url": self._link(f),
                        "hashes": {"sha256": f.sha256},
                        "requires-python": f.requires_python,
                        "core-metadata": (
                            {"sha256": f.metadata_sha256} if f.metadata is not None else False
                        ),
                        "dist-info-metadata": (
                            {"sha256": f.metadata_sha256} if f.metadata is not None else False
                        ),
                        "yanked": f.yanked,
                        "size": f.size,
                        "upload-time": time.strftime(
                            "%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(f.last_modified)
                        ),
                    }
                    for f in files
                ],
            }
            return json.dumps(doc, indent=1).encode()
        rows = []
        for f in files:
            attrs = [f'href="{html.escape(self._link(f))}#sha256={f.sha256}"']
            if f.requires_python:
                attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
            if f.metadata is not None:
                attrs.append(f'data-dist-info-metadata="sha256={f.metadata_sha256}"')
                attrs.append(f'data-core-metadata="sha256={f.metadata_sha256}"')
            if f.yanked:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                attrs.append(f'data-yanked="{html.escape(reason)}"')
            rows.append(f"    <a {' '.join(attrs)}>{html.escape(f.filename)}</a><br/>")
        return (
            '<!DOCTYPE html>\n<html>\n  <head>\n    <meta name="pypi:repository-version" '
            f'content="1.1">\n    <title>Links for {html.escape(proj.name)}</title>\n  </head>\n'
            f"  <body>\n    <h1>Links for {html.escape(proj.name)}</h1>\n"
            + "\n".join(rows)
            + "\n  </body>\n</html>\n"
        ).encode()

    def _headers_for(self, path: str, defaults: Mapping[str, str]) -> dict[str, str]:
        out = dict(defaults)
        with self._lock:
            matching = sorted((p for p in self._overrides if path.startswith(p)), key=len)
            for prefix in matching:
                for k, v in self._overrides[prefix].items():
                    for existing in [e for e in out if e.lower() == k.lower()]:
                        del out[existing]
                    if v is not None:
                        out[k] = v
        return out

    # -- serving -----------------------------------------------------------------------------

    def _send_simple(
        self,
        h: _Handler,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        h.send_response(status)
        hdrs = self._headers_for(urlsplit(h.path).path, DEFAULT_ERROR_HEADERS)
        hdrs.update(headers or {})
        hdrs.setdefault("Content-Type", "text/plain; charset=utf-8")
        for k, v in hdrs.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _handle(self, h: _Handler, *, head: bool) -> None:
        self._record(h)
        split = urlsplit(h.path)
        path = unquote(split.path)
        fault = self._take_fault(split.path, h.command)
        if fault is not None and fault.kind != "truncate":
            self._apply_fault(h, fault, head=head)
            return
        cut = fault.after_bytes if fault is not None else None
        role = h.server_role.role
        serves_files = role == "files" or not self.file_host
        if role == "index" and (path == "/simple" or path.startswith("/simple/")):
            self._serve_index(h, path, head=head, cut=cut)
        elif serves_files and path.startswith("/files/"):
            self._serve_file(h, path, head=head, cut=cut)
        elif serves_files and path.startswith("/big/"):
            self._serve_big(h, path, parse_qs(split.query), head=head, cut=cut)
        else:
            self._send_simple(h, 404, b"not found\n", head=head)

    def _apply_fault(self, h: _Handler, fault: Fault, *, head: bool) -> None:
        if fault.kind == "status":
            body = f"injected failure {fault.status}\n".encode()
            self._send_simple(h, fault.status, body, head=head)
        elif fault.kind == "hang":
            release = h.server_role.release
            release.wait(fault.seconds)
            h.close_connection = True
        elif fault.kind == "reset":
            h.close_connection = True
            with contextlib.suppress(OSError):
                # RST rather than FIN where possible
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        else:  # pragma: no cover
            raise AssertionError(fault.kind)

    def _not_modified(self, h: _Handler, etag: str, last_modified: int) -> bool:
        inm = h.headers.get("If-None-Match")
        if inm is not None:
            return _etag_matches(inm, etag)
        ims = h.headers.get("If-Modified-Since")
        if ims is not None:
            ts = _parse_http_date(ims)
            return ts is not None and last_modified <= ts
        return False

    def _send_body(
        self,
        h: _Handler,
        status: int,
        headers: Mapping[str, str],
        chunks: Iterable[bytes],
        length: int,
        *,
        head: bool,
        cut: int | None,
        rate: float | None = None,
    ) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(length))
        if cut is not None:
            h.send_header("Connection", "close")
        h.end_headers()
        if head:
            return
        sent = 0
        started = time.monotonic()
        step = 16 * 1024
        for chunk in chunks:
            pieces = [chunk[i : i + step] for i in range(0, len(chunk), step)] if rate else [chunk]
            for piece in pieces:
                if cut is not None and sent + len(piece) > cut:
                    h.wfile.write(piece[: cut - sent])
                    h.wfile.flush()
                    h.close_connection = True
                    return
                h.wfile.write(piece)
                sent += len(piece)
                if rate:
                    h.wfile.flush()
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        if cut is not None:
            h.close_connection = True

    def _send_304(self, h: _Handler, headers: Mapping[str, str]) -> None:
        """304: validators and cache headers, no Content-Type / Content-Length / body."""
        h.send_response(304)
        for k, v in headers.items():
            if k.lower() not in ("content-type", "content-length", "content-encoding"):
                h.send_header(k, v)
        h.end_headers()

    def _serve_index(self, h: _Handler, path: str, *, head: bool, cut: int | None) -> None:
        if path == "/simple":
            self._redirect(h, "/simple/", head=head)
            return
        rest = path[len("/simple/") :]
        kind = negotiate(h.headers.get("Accept"))
        if rest == "":
            proj = None
            keys = "all-projects"
        else:
            name = rest.rstrip("/")
            if "/" in name:
                self._send_simple(h, 404, b"not found\n", head=head)
                return
            canon = canonicalize_name(name)
            if name != canon or not rest.endswith("/"):
                self._redirect(h, f"/simple/{canon}/", head=head)
                return
            with self._lock:
                proj = self._projects.get(canon)
            if proj is None:
                self._send_simple(h, 404, b"no such project\n", head=head)
                return
            keys = f"project/{canon} all-projects"
        if kind is None:
            self._send_simple(h, 406, b"not acceptable\n", {"Vary": "Accept"}, head=head)
            return
        with self._lock:
            body = self._render_root(kind) if proj is None else self._render_project(proj, kind)
            last_modified = self._root_last_modified if proj is None else proj.last_modified
        ctype = "text/html; charset=utf-8" if kind == "text/html" else kind
        vary = "Accept"
        encoding = None
        if self.gzip_pages:
            vary = "Accept, Accept-Encoding"
            if "gzip" in (h.headers.get("Accept-Encoding") or "").lower():
                encoding = "gzip"
        tag = hashlib.sha256(body).hexdigest()[:24]
        etag = f'"{tag}-gzip"' if encoding else f'"{tag}"'
        base = dict(DEFAULT_PAGE_HEADERS)
        base["Surrogate-Key"] = keys
        headers = self._headers_for(path, base)
        headers.update(
            {
                "Content-Type": ctype,
                "Vary": vary,
                "ETag": etag,
                # several changes within one second get increasing internal stamps (so
                # If-Modified-Since sees each); never announce a date in the future
                "Last-Modified": _http_date(min(last_modified, int(time.time()))),
            }
        )
        if self._not_modified(h, etag, last_modified):
            self._send_304(h, headers)
            return
        if encoding:
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = encoding
        self._send_body(h, 200, headers, [body], len(body), head=head, cut=cut)

    def _redirect(self, h: _Handler, location: str, *, head: bool) -> None:
        self._send_simple(
            h,
            301,
            f"moved to {location}\n".encode(),
            {"Location": location, "Cache-Control": "max-age=60, public"},
            head=head,
        )

    def _serve_file(self, h: _Handler, path: str, *, head: bool, cut: int | None) -> None:
        parts = path.split("/")  # ["", "files", project, filename]
        if len(parts) != 4:
            self._send_simple(h, 404, b"not found\n", head=head)
            return
        _, _, project, filename = parts
        is_meta = filename.endswith(".metadata")
        want = filename.removesuffix(".metadata") if is_meta else filename
        with self._lock:
            proj = self._projects.get(project)
            entry = next((f for f in proj.files if f.filename == want), None) if proj else None
        if entry is None or entry.path is None or (is_meta and entry.metadata is None):
            self._send_simple(h, 404, b"no such file\n", head=head)
            return
        base = dict(DEFAULT_FILE_HEADERS)
        base["Surrogate-Key"] = f"file/{entry.filename} project-files/{entry.project}"
        headers = self._headers_for(path, base)
        if is_meta:
            assert entry.metadata is not None
            data = entry.metadata
            headers["Content-Type"] = "text/plain; charset=utf-8"
            etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
        else:
            data = entry.path.read_bytes()
            headers["Content-Type"] = (
                "application/octet-stream" if filename.endswith(".whl") else "application/x-tar"
            )
            etag = entry.etag

        def chunks(start: int, end: int) -> Iterator[bytes]:
            yield data[start : end + 1]

        self._serve_ranged(
            h,
            headers=headers,
            etag=etag,
            last_modified=entry.last_modified,
            size=len(data),
            chunks=chunks,
            head=head,
            cut=cut,
        )

    def _serve_big(
        self,
        h: _Handler,
        path: str,
        query: dict[str, list[str]],
        *,
        head: bool,
        cut: int | None,
    ) -> None:
        m = re.fullmatch(r"/big/(\d+)", path)
        if m is None:
            self._send_simple(h, 404, b"not found\n", head=head)
            return
        nbytes = int(m.group(1))
        rate: float | None = self.throttle
        if "rate" in query:
            rate = float(query["rate"][0])
        base = dict(DEFAULT_FILE_HEADERS)
        base["Surrogate-Key"] = f"big/{nbytes}"
        headers = self._headers_for(path, base)
        headers["Content-Type"] = "application/octet-stream"

        def chunks(start: int, end: int) -> Iterator[bytes]:
            return big_chunks(nbytes, start, end)

        self._serve_ranged(
            h,
            headers=headers,
            etag=f'"big-{nbytes}"',
            last_modified=self.started_at,
            size=nbytes,
            chunks=chunks,
            head=head,
            cut=cut,
            rate=rate,
        )

    def _serve_ranged(
        self,
        h: _Handler,
        *,
        headers: dict[str, str],
        etag: str,
        last_modified: int,
        size: int,
        chunks: Callable[[int, int], Iterable[bytes]],
        head: bool,
        cut: int | None,
        rate: float | None = None,
    ) -> None:
        rate = rate if rate is not None else self.throttle
        headers.update(
            {"ETag": etag, "Last-Modified": _http_date(last_modified), "Accept-Ranges": "bytes"}
        )
        if self._not_modified(h, etag, last_modified):
            self._send_304(h, headers)
            return
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        if rng is not None and if_range is not None:
            if if_range.strip().startswith(('"', "W/")):
                if if_range.strip() != etag:  # strong comparison
                    rng = None
            else:
                ts = _parse_http_date(if_range)
                if ts is None or int(ts) != last_modified:
                    rng = None
        parsed = _parse_range(rng, size) if rng is not None else None
        if parsed is False:
            self._send_simple(
                h,
                416,
                b"range not satisfiable\n",
                {"Content-Range": f"bytes */{size}", "ETag": etag},
                head=head,
            )
            return
        if isinstance(parsed, tuple):
            start, end = parsed
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send_body(
                h, 206, headers, chunks(start, end), end - start + 1, head=head, cut=cut, rate=rate
            )
            return
        self._send_body(h, 200, headers, chunks(0, size - 1), size, head=head, cut=cut, rate=rate)


def _methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    return frozenset(m.upper() for m in methods) if methods is not None else None


def _version_of(entry: FileEntry) -> str | None:
    try:
        return parse_filename(entry.filename)[1]
    except ValueError:
        return None


def populate_default(index: UpstreamIndex) -> UpstreamIndex:
    """The default projects: ``alpha`` 1.0 (requires ``beta>=1.0``), ``beta`` 1.0 and 1.1
    (1.1 is ``Requires-Python >=3.8``), ``gamma`` 0.1 (wheel and sdist, no dependencies).
    Installing ``alpha`` gives alpha 1.0 and beta 1.1."""
    index.add_project("alpha", "1.0", requires_dist=["beta>=1.0"])
    index.add_project("beta", "1.0")
    index.add_project("beta", "1.1", requires_python=">=3.8")
    index.add_project("gamma", "0.1", sdist=True)
    return index
