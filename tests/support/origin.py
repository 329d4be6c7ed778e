"""A real ``pkgedge origin`` process for tests, and helpers to upload with real clients."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .edge import edge_command

_LISTEN_RE = re.compile(r"^pkgedge origin: listening on (https?://\S+)\s*$")
_READY_RE = re.compile(r"^pkgedge origin: ready\s*$")


class OriginStartError(RuntimeError):
    pass


class OriginProcess:
    """``pkgedge origin`` on 127.0.0.1:0 (or ``listen``) with its own data directory.

    Args:
        data_dir: catalog and files (kept across :meth:`restart`).
        upstream: index to mirror, or ``"off"`` (the default: tests never reach other hosts).
        edge: an :class:`~support.edge.EdgeProcess` whose admin API the origin purges.
        extra_args: more flags, e.g. ``["--database", url]``.
        listen: ``--listen HOST:PORT`` (a fixed port keeps the URL across :meth:`restart`).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        upstream: str = "off",
        edge_admin: str | None = None,
        edge_token: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.listen = listen
        self.upstream = upstream
        self.edge_admin = edge_admin
        self.edge_token = edge_token
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.url = ""
        self.output: list[str] = []
        self.returncode: int | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()

    def command(self) -> list[str]:
        cmd = [
            *edge_command(),
            "origin",
            "--listen",
            self.listen,
            "--data-dir",
            str(self.data_dir),
            "--upstream",
            self.upstream,
        ]
        if self.edge_admin:
            cmd += ["--edge-admin", self.edge_admin, "--edge-admin-token", self.edge_token or ""]
        return cmd + self.extra_args

    def start(self, timeout: float = 30.0) -> OriginProcess:
        self._ready.clear()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PKGEDGE_")}
        env.update(self.env)
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        threading.Thread(target=self._read, args=(self._proc,), daemon=True).start()
        if not self._ready.wait(timeout):
            self.stop()
            raise OriginStartError("pkgedge origin did not start:\n" + "\n".join(self.output))
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            self.output.append(line)
            if m := _LISTEN_RE.match(line):
                self.url = m.group(1)
            elif _READY_RE.match(line):
                self._ready.set()
        self._ready.set()

    @property
    def index_url(self) -> str:
        return self.url + "/simple/"

    def stop(self) -> int | None:
        proc = self._proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.returncode = proc.returncode
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None
        return self.returncode

    def restart(self) -> OriginProcess:
        self.stop()
        return self.start()

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]

    def token(self, project: str | None = None) -> str:
        """Create an API token with the CLI (as an operator would)."""
        cmd = [
            *edge_command(),
            "token",
            "create",
            "--data-dir",
            str(self.data_dir),
            *[a for a in self.extra_args if a.startswith("--database")],
            *self._database_value(),
        ]
        if project:
            cmd += ["--project", project]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.strip().splitlines()[-1]

    def _database_value(self) -> list[str]:
        args = self.extra_args
        for i, a in enumerate(args):
            if a == "--database" and i + 1 < len(args):
                return [args[i + 1]]
        return []


def twine_upload(
    repository_url: str, token: str, files: Sequence[Path], *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--disable-progress-bar",
            "--non-interactive",
            "--repository-url",
            repository_url,
            "-u",
            "__token__",
            "-p",
            token,
            *extra,
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TWINE_NON_INTERACTIVE": "1"},
    )


def uv_publish(
    publish_url: str, token: str, files: Sequence[Path], *extra: str
) -> subprocess.CompletedProcess[str]:
    uv = Path(sys.executable).parent / "uv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["UV_NO_CONFIG"] = "1"
    return subprocess.run(
        [
            str(uv),
            "publish",
            "--publish-url",
            publish_url,
            "--token",
            token,
            *extra,
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False
