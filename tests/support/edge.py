"""Run the pkgedge edge as a real subprocess, the way an operator would.

:class:`EdgeProcess` starts ``pkgedge edge --upstream URL --listen 127.0.0.1:0 --admin
127.0.0.1:0 --cache-dir DIR --workers N --admin-token TOKEN --access-log ...`` (the console script
next to ``sys.executable``, else ``python -m pkgedge``), waits for its ready lines::

    pkgedge edge: listening on http://127.0.0.1:PORT
    pkgedge edge: admin on http://127.0.0.1:PORT
    pkgedge edge: admin token TOKEN
    pkgedge edge: ready (N workers)

and drives it: workers (children read from /proc), admin ``purge`` / ``stats``, SIGTERM stop,
restart on the same cache directory. :class:`EdgeFactory` starts any number of them in a
temporary directory and stops them all on :meth:`EdgeFactory.close` (the ``edge_factory``
fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = [
    "EdgeFactory",
    "EdgeProcess",
    "EdgeStartError",
    "children_of",
    "edge_command",
    "parse_cache_status",
]

_LISTEN_RE = re.compile(r"^pkgedge edge: listening on (https?://\S+)\s*$")
_ADMIN_RE = re.compile(r"^pkgedge edge: admin on (https?://\S+)\s*$")
_TOKEN_RE = re.compile(r"^pkgedge edge: admin token (\S+)\s*$")
_READY_RE = re.compile(r"^pkgedge edge: ready \((\d+) workers?\)\s*$")

STOP_TIMEOUT = 15.0


class EdgeStartError(RuntimeError):
    """The edge exited, or did not print its ready lines in time."""


def edge_command() -> list[str]:
    """``[.venv/bin/pkgedge]`` if the console script exists, else ``[python, -m, pkgedge]``."""
    script = Path(sys.executable).parent / "pkgedge"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pkgedge"]


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) child processes of *pid*, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 2 and fields[1] == str(pid) and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def parse_cache_status(value: str | None, cache: str = "pkgedge") -> dict[str, str | bool]:
    """The parameters of *cache*'s member of an RFC 9211 ``Cache-Status`` header:
    ``"pkgedge; fwd=miss; stored"`` → ``{"fwd": "miss", "stored": True}``; ``"pkgedge; hit;
    ttl=3591"`` → ``{"hit": True, "ttl": "3591"}``. Empty dict if absent."""
    if not value:
        return {}
    for member in value.split(","):
        items = [i.strip() for i in member.split(";")]
        if items[0].strip('"') != cache:
            continue
        params: dict[str, str | bool] = {}
        for item in items[1:]:
            if not item:
                continue
            key, eq, val = item.partition("=")
            params[key.strip().lower()] = val.strip().strip('"') if eq else True
        return params
    return {}


class EdgeProcess:
    """One edge process (a master and its workers).

    Args:
        upstream: the upstream index URL (e.g. ``UpstreamIndex.index_url``).
        cache_dir: the disk-tier directory (kept across :meth:`restart`).
        workers: ``--workers``.
        admin_token: ``--admin-token`` (default: a random one).
        access_log: ``--access-log`` (``"off"``, ``"-"`` for stdout — lines land in
            :attr:`output` — or a path).
        extra_args: more command-line arguments (e.g. ``["--memory-size", "1MB"]``).
        env: extra environment variables (``PKGEDGE_*`` of the caller's environment are
            dropped so tests are deterministic).
        ready_timeout: seconds to wait for the ready lines.
        log_path: where the edge's stderr goes (default: next to *cache_dir*).
    """

    def __init__(
        self,
        upstream: str,
        cache_dir: str | Path,
        *,
        workers: int = 1,
        admin_token: str | None = None,
        access_log: str = "off",
        listen: str = "127.0.0.1:0",
        admin: str = "127.0.0.1:0",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 20.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.upstream = upstream
        self.cache_dir = Path(cache_dir)
        self.workers = workers
        self.token = admin_token or secrets.token_hex(16)
        self.access_log = access_log
        self.listen = listen
        self.admin = admin
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.log_path = (
            Path(log_path)
            if log_path is not None
            else self.cache_dir.with_name(self.cache_dir.name + "-stderr.log")
        )
        self.url = ""
        self.admin_url = ""
        self.reported_workers = 0
        self.output: collections.deque[str] = collections.deque(maxlen=20000)
        self.leaked_workers: list[int] = []
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._ready = False
        self._http: httpx.Client | None = None
        self._fresh: httpx.Client | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            *edge_command(),
            "edge",
            "--upstream",
            self.upstream,
            "--listen",
            self.listen,
            "--admin",
            self.admin,
            "--cache-dir",
            str(self.cache_dir),
            "--workers",
            str(self.workers),
            "--admin-token",
            self.token,
            "--access-log",
            self.access_log,
        ]
        return cmd + self.extra_args

    def _environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PKGEDGE_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self) -> EdgeProcess:
        """Start the edge and wait for its ready lines (:class:`EdgeStartError` otherwise)."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("edge already running")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.url = self.admin_url = ""
        self.returncode = None
        self._ready = False
        self.output.append(f"--- start: {' '.join(self.command())}")
        with self.log_path.open("ab") as err:
            err.write(f"--- start: {' '.join(self.command())}\n".encode())
            err.flush()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=self._environ(),
                start_new_session=True,  # its own process group: clean-up can reach workers
            )
        self._reader = threading.Thread(
            target=self._read_stdout, args=(self._proc,), name="edge-stdout", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + self.ready_timeout
        with self._cond:
            while not self._ready:
                if self._proc.poll() is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.1))
        if not self._ready:
            exited = self._proc.poll()
            if exited is None:
                self._kill_group()
            code = self._finish()
            state = (
                f"exited with code {exited}"
                if exited is not None
                else f"not ready after {self.ready_timeout:.0f} s (killed, code {code})"
            )
            raise EdgeStartError(f"pkgedge edge {state}\n{self.diagnostics()}")
        return self

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            with self._cond:
                self.output.append(line)
                if m := _LISTEN_RE.match(line):
                    self.url = m.group(1).rstrip("/")
                elif m := _ADMIN_RE.match(line):
                    self.admin_url = m.group(1).rstrip("/")
                elif m := _TOKEN_RE.match(line):
                    self.token = m.group(1)
                elif m := _READY_RE.match(line):
                    self.reported_workers = int(m.group(1))
                    self._ready = bool(self.url and self.admin_url)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("edge not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc is not None else self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to *timeout* s, then SIGKILL (the whole process group). Returns the
        exit code (0 for a graceful stop; negative: killed by that signal). Workers still alive
        after the master exited are killed and listed in :attr:`leaked_workers`."""
        self._close_http()
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            workers = children_of(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.output.append(f"--- did not stop within {timeout} s of SIGTERM: SIGKILL")
                self._kill_group()
            leaked = [pid for pid in workers if _alive(pid)]
            if leaked:
                self.leaked_workers.extend(leaked)
                self._kill_group()
        return self._finish()

    def _kill_group(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # our own session: the master and its workers
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    def _finish(self) -> int | None:
        proc = self._proc
        if proc is None:
            return self.returncode
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL did not take
            pass
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        self.returncode = proc.returncode
        self._proc = None
        self._reader = None
        return self.returncode

    def restart(self, *, same_ports: bool = False, **changes: Any) -> EdgeProcess:
        """Stop and start again on the same cache directory and token. ``same_ports=True``
        listens on the ports of the previous run (else new ones: read :attr:`url` again).
        Keyword *changes* update attributes first (e.g. ``workers=2``, ``upstream=...``)."""
        old_url, old_admin = self.url, self.admin_url
        self.stop()
        if same_ports and old_url:
            self.listen = old_url.split("://", 1)[1]
            self.admin = old_admin.split("://", 1)[1]
        for key, value in changes.items():
            if not hasattr(self, key):
                raise AttributeError(key)
            setattr(self, key, value)
        return self.start()

    def __enter__(self) -> EdgeProcess:
        return self.start() if not self.running else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- workers -----------------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        """PIDs of the master's live child processes (its workers)."""
        return children_of(self.pid) if self.running else []

    def wait_workers(
        self, count: int | None = None, *, exclude: Iterable[int] = (), timeout: float = 15.0
    ) -> list[int]:
        """Wait until *count* (default: ``workers``) workers run, none of them in *exclude*
        (e.g. the ones just killed), and return their PIDs."""
        want = self.workers if count is None else count
        gone = set(exclude)
        deadline = time.monotonic() + timeout
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= want and not gone.intersection(pids):
                return pids
            if not self.running:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"expected {want} workers (not {sorted(gone)}), have {pids}\n{self.diagnostics()}"
        )

    def kill_worker(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Send *sig* (default SIGKILL) to one worker (must be a child of this edge)."""
        if pid not in self.worker_pids():
            raise ValueError(f"{pid} is not a worker of edge {self.pid}")
        os.kill(pid, sig)

    # -- HTTP --------------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> httpx.Client:
        """A new httpx client for the edge's client listener (caller closes it)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, **kwargs)

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=30.0)
        return self._http

    def _close_http(self) -> None:
        for client in (self._http, self._fresh):
            if client is not None:
                client.close()
        self._http = self._fresh = None

    def _fresh_client(self) -> httpx.Client:
        if self._fresh is None:
            # one client (building an SSL context per request costs ~50 ms), no keep-alive
            self._fresh = httpx.Client(
                timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0)
            )
        return self._fresh

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET ``{url}{path}`` on a new connection (``Connection: close``), so successive
        calls may land on different workers."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        return self._fresh_client().get(self.url + path, headers=headers, **kwargs)

    def head(self, path: str, **kwargs: Any) -> httpx.Response:
        """HEAD ``{url}{path}`` on a new connection."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        return self._fresh_client().head(self.url + path, headers=headers, **kwargs)

    def admin_request(
        self, method: str, path: str, *, token: str | None = "", **kwargs: Any
    ) -> httpx.Response:
        """A raw admin request; *token* ``""``: this edge's token, ``None``: no Authorization."""
        headers = dict(kwargs.pop("headers", {}))
        tok = self.token if token == "" else token
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        return self._client().request(method, self.admin_url + path, headers=headers, **kwargs)

    def purge(
        self,
        urls: Iterable[str] | None = None,
        keys: Iterable[str] | None = None,
        all: bool = False,
        soft: bool = False,
    ) -> Any:
        """POST ``{admin}/purge`` ``{"urls", "keys", "all", "soft"}``; the parsed JSON answer.
        Relative *urls* (``/simple/alpha/``) are made absolute on :attr:`url`."""
        body = {
            "urls": [u if "://" in u else self.url + u for u in (urls or ())],
            "keys": list(keys or ()),
            "all": all,
            "soft": soft,
        }
        resp = self.admin_request("POST", "/purge", json=body)
        resp.raise_for_status()
        return resp.json()

    def stats(self) -> dict[str, Any]:
        """GET ``{admin}/stats`` (requests, hits, misses, stale, passes, bytes_to_clients,
        bytes_from_origin, origin_fetches, collapsed, purges, memory_*, disk_*)."""
        resp = self.admin_request("GET", "/stats")
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    # -- diagnostics -------------------------------------------------------------------------

    def stderr_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def diagnostics(self, lines: int = 60) -> str:
        """The last *lines* of stdout and stderr, for failure messages."""
        out = list(self.output)[-lines:]
        err = self.stderr_text().splitlines()[-lines:]
        return (
            f"command: {' '.join(self.command())}\n"
            "--- stdout (tail) ---\n" + "\n".join(out) + "\n"
            "--- stderr (tail) ---\n" + "\n".join(err)
        )

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self._proc else f"stopped ({self.returncode})"
        return f"<EdgeProcess {self.url or '-'} {state}>"


class EdgeFactory:
    """Starts edges in sub-directories of *base_dir*; :meth:`close` stops them all.

    ``factory(upstream=None, **kwargs)`` → a started :class:`EdgeProcess` (kwargs as for
    :class:`EdgeProcess`; ``cache_dir`` defaults to a new directory). *default_upstream* is
    called for the upstream URL when none is given.
    """

    def __init__(
        self, base_dir: str | Path, default_upstream: Callable[[], str] | None = None
    ) -> None:
        self.base_dir = Path(base_dir)
        self.default_upstream = default_upstream
        self.edges: list[EdgeProcess] = []

    def __call__(self, upstream: str | None = None, **kwargs: Any) -> EdgeProcess:
        if upstream is None:
            if self.default_upstream is None:
                raise ValueError("no upstream given and no default")
            upstream = self.default_upstream()
        n = len(self.edges)
        kwargs.setdefault("cache_dir", self.base_dir / f"edge{n}" / "cache")
        kwargs.setdefault("log_path", self.base_dir / f"edge{n}" / "stderr.log")
        Path(kwargs["cache_dir"]).parent.mkdir(parents=True, exist_ok=True)
        edge = EdgeProcess(upstream, **kwargs)
        self.edges.append(edge)
        return edge.start()

    def close(self) -> list[tuple[EdgeProcess, int | None]]:
        """Stop every edge; returns ``(edge, exit code)`` pairs."""
        results = []
        for edge in self.edges:
            try:
                results.append((edge, edge.stop()))
            except Exception as exc:  # keep stopping the others
                edge.output.append(f"--- stop failed: {exc!r}")
                results.append((edge, None))
        return results

    def __enter__(self) -> EdgeFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
