"""A real, throw-away PostgreSQL server for tests, on 127.0.0.1.

:class:`PostgresServer` runs ``initdb`` and ``pg_ctl`` from the ``postgresql`` Debian package
(any installed major version, the newest first, or whatever is on PATH) in a fresh temporary
directory, listening on a free 127.0.0.1 port with trust authentication, and stops it with
``pg_ctl stop -m fast``. PostgreSQL refuses to run as root, so under root the server runs as
the ``postgres`` system user (``runuser``, or ``setpriv``). Durability is off (``fsync=off``):
it is a test server.

Use the session-scoped fixture :func:`postgres_server`, imported into a test module (or a
conftest), and :meth:`PostgresServer.create_database` for an empty database per test::

    from support.postgres import PostgresServer, postgres_server  # noqa: F401

If the server binaries are missing, the fixture FAILS (it never skips): install ``postgresql``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_pg_bin", "free_port", "postgres_server"]

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: install the Debian package "
    "'postgresql' (apt-get install postgresql); the catalog's conformance tests need a real "
    "server"
)


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest packaged version first)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for directory in candidates:
        if all(os.access(Path(directory, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory: :meth:`start`, :meth:`stop`."""

    user = "postgres"  # the superuser role created by initdb

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="pkgedge-pg-"))
        self.data = self.base / "data"
        self.sockets = self.base / "run"
        self.log = self.base / "server.log"
        self.port = 0
        self._as_user: list[str] = []
        self._counter = itertools.count(1)
        if os.geteuid() == 0:  # initdb and postgres refuse root
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no 'postgres' system user to run PostgreSQL "
                    "as (the Debian package 'postgresql' creates it)"
                ) from None
            if shutil.which("runuser"):
                self._as_user = ["runuser", "-u", "postgres", "--"]
            else:
                self._as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                                 "--init-groups", "--"]  # fmt: skip
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.sockets.mkdir()
        if self._as_user:
            shutil.chown(self.sockets, "postgres", "postgres")

    def __repr__(self) -> str:
        return f"<PostgresServer 127.0.0.1:{self.port} {self.base}>"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [*self._as_user, str(self.bin_dir / args[0]), *args[1:]]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        env.pop("PGDATA", None)
        return subprocess.run(
            cmd,
            check=False,
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return "(no server log)"

    def start(self) -> PostgresServer:
        init = self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        last = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            started = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                "-t", "60", "start",
            )  # fmt: skip
            if started.returncode == 0:
                return self
            last = f"{started.stdout}{started.stderr}\n{self._log_tail()}"
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        raise RuntimeError(f"pg_ctl start failed:\n{last}")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._counter)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the whole session (fails if PostgreSQL is missing)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail(MISSING, pytrace=False)
    try:
        server = PostgresServer(bin_dir)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        server.stop()
        pytest.fail(f"could not start PostgreSQL from {bin_dir}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
