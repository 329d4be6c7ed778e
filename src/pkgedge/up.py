"""``pkgedge up``: the origin, the edge and its admin API together on one machine.

The origin runs in a child process on a loopback port; the edge listens where clients
connect and uses the origin as its upstream. The edge's admin URL and token, the origin's
URL and the edge's effective settings are recorded in ``DATA_DIR/edge.json`` (mode 600) so
the origin (and ``pkgedge yank`` / ``delete`` / ``stats`` / ``purge`` / ``config show``) find
them. Ctrl-C (or SIGTERM) stops all of it.

Before anything starts, ``up`` takes an exclusive lock on ``DATA_DIR/up.lock`` (a second
``up`` on the same directory is refused) and checks that its ports are free. Its children
die with it, even when it is killed with SIGKILL (``PR_SET_PDEATHSIG``, see
:mod:`pkgedge.server.lifeline`). When its standard output goes away (``pkgedge up | head``)
it carries on without it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pkgedge.config import Option, build_edge_settings, merge_options, parse_hostport
from pkgedge.errors import ConfigError, PkgedgeError
from pkgedge.index import private
from pkgedge.index.run import EDGE_FILE

LOCK_FILE = "up.lock"
#: The environment variable a child reads to ask for a signal when ``up`` dies.
PARENT_ENV = "PKGEDGE_DIE_WITH"


def _port(value: Any) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"not a port number: {value!r}")
    return port


def _text(value: Any) -> str:
    return str(value)


def _workers(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {value!r}")
    return n


#: ``pkgedge up``'s own options: flags, ``PKGEDGE_UP_*`` and the ``[up]`` table of the file.
UP_OPTIONS: tuple[Option, ...] = (
    Option("data_dir", _text, "pkgedge-data", "where everything is kept", "DIR", "up"),
    Option("port", _port, 8080, "the edge's port (clients use it; 0: any free port)", "PORT", "up"),
    Option("admin_port", _port, None, "the edge admin API's port (default: PORT+1)", "PORT", "up"),
    Option("host", _text, "127.0.0.1", "address the edge listens on", "HOST", "up"),
    Option(
        "upstream",
        _text,
        None,
        "index to mirror for projects not hosted here (default: pip's; 'off')",
        "URL|off",
        "up",
    ),
    Option("workers", _workers, None, "edge worker processes (default: one per CPU)", "N", "up"),
)


def up_values(
    flags: Mapping[str, Any], config_file: str | None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``up``'s options from defaults, the ``[up]`` table, ``PKGEDGE_UP_*`` and flags."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("PKGEDGE_CONFIG")
    values = merge_options(UP_OPTIONS, "up", flags, environ, config_file)
    for name in ("port", "admin_port"):
        if values[name] is not None:
            values[name] = _port(values[name])
    if values["admin_port"] is None:
        values["admin_port"] = values["port"] + 1 if values["port"] else 0
    return values


class Output:
    """Lines to standard output that survive its reader going away: after the first
    broken pipe, fd 1 is pointed at /dev/null (so buffered output and children's writes do
    not fail either) and ``up`` carries on."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.closed = False
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.EINVAL, errno.EBADF):
                    raise
                self._detach()

    def _detach(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        with contextlib.suppress(OSError):
            sys.stderr.write("pkgedge up: standard output was closed; carrying on without it\n")
            sys.stderr.flush()


def lock_data_dir(data: Path) -> int:
    """Take the exclusive lock of ``data`` for this process (released when it exits)."""
    path = data / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise PkgedgeError(
            f"{data} is in use by another pkgedge up (pid {holder}): stop it first, "
            "or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse clearly before anything starts when ``host:port`` cannot be bound."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PkgedgeError(
                f"cannot listen on {host}:{port} for the {what}: {exc.strerror} "
                f"(another pkgedge up? choose another with --port/--admin-port)"
            ) from None


def command_hint() -> str:
    """How the user can run this same ``pkgedge`` from their shell: ``pkgedge`` when that is
    what PATH finds, else the path of the running one (relative when under the cwd)."""
    exe = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if exe is None or exe.name != "pkgedge" or not exe.exists():
        exe = Path(sys.executable).parent / "pkgedge"
    exe = exe.resolve()
    on_path = shutil.which("pkgedge")
    if on_path and Path(on_path).resolve() == exe:
        return "pkgedge"
    if not exe.exists():
        return f"{shlex.quote(sys.executable)} -m pkgedge"
    try:
        rel = exe.relative_to(Path.cwd().resolve())
        return shlex.quote(str(rel))
    except ValueError:
        return shlex.quote(str(exe))


def _start_origin(
    values: dict[str, Any], config: str | None, data: Path, say: Output
) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "pkgedge",
        "origin",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data),
    ]
    if values["upstream"]:
        cmd += ["--upstream", values["upstream"]]
    if config:
        cmd += ["--config", config]
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        say(line.rstrip())
        if "listening on " in line:
            url = line.rsplit("listening on ", 1)[1].strip()
        if line.startswith("pkgedge origin: ready"):
            break
    else:
        proc.wait()
        raise PkgedgeError(f"the origin did not start (exit {proc.returncode})")

    def forward() -> None:
        assert proc.stdout is not None
        for rest in proc.stdout:
            say(rest.rstrip())

    threading.Thread(target=forward, daemon=True).start()
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_up(flags: Mapping[str, Any], config: str | None) -> int:
    from pkgedge.app import run_edge as run

    values = up_values(flags, config)
    say = Output()
    data = Path(values["data_dir"]).expanduser().resolve()
    private.make_dir(data)
    for warning in private.check(data):
        print(f"pkgedge up: warning: {warning}", file=sys.stderr, flush=True)
    lock = lock_data_dir(data)  # before anything starts: a second `up` stops here
    parse_hostport(f"{values['host']}:{values['port']}")
    check_port_free(values["host"], values["port"], "edge")
    check_port_free("127.0.0.1", values["admin_port"], "edge admin API")
    edge_file = data / EDGE_FILE
    try:
        token = str(json.loads(edge_file.read_text())["token"])
    except (OSError, ValueError, KeyError, TypeError):
        token = secrets.token_urlsafe(24)
    proc, origin_url = _start_origin(values, config, data, say)
    edge_flags: dict[str, Any] = {
        "upstream": origin_url + "/simple/",
        "listen": f"{values['host']}:{values['port']}",
        "admin": f"127.0.0.1:{values['admin_port']}",
        "admin_token": token,
        "cache_dir": str(data / "cache"),
        "workers": values["workers"],
    }
    try:
        settings = build_edge_settings(edge_flags, config_file=config)
    except PkgedgeError:
        _stop(proc)
        raise
    record: dict[str, Any] = {"token": token, "origin": origin_url, "pid": os.getpid()}
    pkgedge = command_hint()

    def out(line: str) -> None:
        say(line)
        if line.startswith("pkgedge edge: admin on "):
            record["admin"] = line.rsplit(" ", 1)[1]
        if line.startswith("pkgedge edge: listening on "):
            base = line.rsplit(" ", 1)[1]
            record["listen"] = base
            say(f"pkgedge up: index URL for pip/uv: {base}/simple/")
            say(f"pkgedge up: upload URL for twine/uv publish: {base}/legacy/")
            say(f"pkgedge up: create an upload token: {pkgedge} token create --data-dir {data}")
        if line.startswith("pkgedge edge: ready"):
            say(f"pkgedge up: its settings: {pkgedge} config show --data-dir {data}")
        if "admin" in record and "listen" in record and "settings" not in record:
            host, port = parse_hostport(record["listen"].split("//", 1)[1])
            admin_port = parse_hostport(record["admin"].split("//", 1)[1])[1]
            actual = settings.replace(listen=f"{host}:{port}", admin=f"127.0.0.1:{admin_port}")
            record["settings"] = actual.as_dict(redact=False)
            private.write_secret(edge_file, json.dumps(record, indent=1))

    try:
        return run(settings, out=out)
    finally:
        _stop(proc)
        os.close(lock)
