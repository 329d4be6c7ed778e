"""A real, throw-away Redis server for tests, on a loopback address.

:class:`RedisServer` runs Debian's ``redis-server`` (package ``redis-server``) in a fresh
temporary directory on a free port, append-only file on (``appendfsync always``), so that a
server killed with SIGKILL and started again on the same port keeps its streams: the tests of
pkgedge's cluster kill it mid-run. :meth:`RedisServer.kill` and :meth:`RedisServer.start` do
that; :meth:`RedisServer.stop` shuts it down.

Use :func:`redis_server` (module scoped) in a test module::

    from support.redis import RedisServer, redis_server  # noqa: F401

If ``redis-server`` is missing, the fixture FAILS (it never skips): install ``redis-server``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server"]

MISSING = (
    "redis-server not found: install the Debian package 'redis-server' (apt-get install "
    "redis-server); the cluster tests need a real server"
)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on ``host``:``port`` with its data in ``directory``."""

    def __init__(
        self, directory: Path, host: str = "127.0.0.1", appendfsync: str = "always"
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(MISSING)
        self.binary = binary
        self.directory = directory
        self.host = host
        self.appendfsync = appendfsync  # "everysec": what `--appendonly yes` alone gives
        self.port = _free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n{log}")
            if self.ping():
                return self
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the way a crashed server goes (the append-only file keeps the data)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A running Redis on a free 127.0.0.1 port, in a temporary directory; stopped after the
    module."""
    if shutil.which("redis-server") is None:
        pytest.fail(MISSING)
    with tempfile.TemporaryDirectory(prefix="pkgedge-redis-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            yield server
        finally:
            with contextlib.suppress(Exception):
                server.stop()
