"""``pkgedge up`` as a new user meets it (issue 12): the commands it prints work, its data
directory is private and locked, a second ``up`` or a taken port is refused before anything
starts, ``stats`` / ``purge`` / ``config show`` find the running ``up``, a closed standard
output does not crash it, and its children die with it, even by SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.clients import clean_env
from support.edge import children_of, edge_command
from support.origin import wait_until

#: A PATH without this virtualenv's bin: the user's shell before `source .venv/bin/activate`.
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


def up_command(data: Path, *extra: str) -> list[str]:
    return [
        *edge_command(),
        "up",
        "--data-dir",
        str(data),
        "--port",
        "0",
        "--upstream",
        "off",
        "--workers",
        "1",
        *extra,
    ]


def pkgedge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*edge_command(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=clean_env(PATH=PLAIN_PATH),
    )


@dataclass
class Up:
    proc: subprocess.Popen[str]
    data: Path
    cwd: Path
    lines: list[str] = field(default_factory=list)

    def line(self, pattern: str) -> re.Match[str]:
        found = re.search(pattern, "\n".join(self.lines), re.M)
        assert found, "\n".join(self.lines)
        return found

    @property
    def index(self) -> str:
        return self.line(r"index URL for pip/uv: (\S+)").group(1)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cwd = tmp_path_factory.mktemp("home")
    data = cwd / "pkgedge-data"
    proc = subprocess.Popen(
        up_command(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=clean_env(PATH=PLAIN_PATH),
        start_new_session=True,
    )
    running = Up(proc, data, cwd)
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            running.lines.append(line.rstrip())
            if line.startswith("pkgedge up: its settings"):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(60) and proc.poll() is None, "\n".join(running.lines)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_printed_commands_work_without_pkgedge_on_path(up: Up) -> None:
    create = up.line(r"create an upload token: (.+)$").group(1)
    assert shlex.split(create)[0] != "pkgedge"  # not on this PATH: the path that works
    out = subprocess.run(
        create,
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=up.cwd,
        env=clean_env(PATH=PLAIN_PATH),
    )
    assert out.returncode == 0, out.stderr
    assert "shown once" in out.stdout
    show = up.line(r"its settings: (.+)$").group(1)
    out = subprocess.run(
        show, shell=True, capture_output=True, text=True, timeout=60, check=False, cwd=up.cwd
    )
    assert out.returncode == 0, out.stderr


def test_data_directory_and_secrets_are_private(up: Up) -> None:
    assert stat.S_IMODE(up.data.stat().st_mode) == 0o700
    for name in ("edge.json", "catalog.db"):
        assert stat.S_IMODE((up.data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((up.data / "cache").stat().st_mode) & 0o077 == 0


def test_config_show_stats_and_purge_find_the_running_up(up: Up) -> None:
    recorded = json.loads((up.data / "edge.json").read_text())
    out = pkgedge("config", "show", cwd=up.cwd)  # ./pkgedge-data, as after ./scripts/run
    assert out.returncode == 0, out.stderr
    shown = {k: json.loads(v) for k, v in (ln.split(" = ", 1) for ln in out.stdout.splitlines())}
    assert shown["upstream"] == recorded["origin"] + "/simple/"
    assert shown["cache_dir"] == str(up.data / "cache")
    assert "http://" + shown["listen"] + "/simple/" == up.index
    assert shown["admin_token"] == "***"
    assert httpx.get(up.index, timeout=10).status_code == 200
    out = pkgedge("config", "versions", cwd=up.cwd)  # the versions of the edge `up` runs
    assert out.returncode == 0, out.stderr
    assert not (up.cwd / "pkgedge-cache").exists()  # not `pkgedge edge`'s default cache dir
    out = pkgedge("stats", "--json", cwd=up.cwd)  # no --token, no --admin-url
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["requests"] >= 1
    out = pkgedge("purge", "--all", "--data-dir", str(up.data))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("purged ")
    out = pkgedge("stats", "--data-dir", str(up.data / "nothing-here"))
    assert out.returncode == 2 and "no admin token" in out.stderr


def test_a_second_up_on_the_same_data_dir_is_refused_before_it_starts(up: Up) -> None:
    secret = up.data / "edge.json"
    secret.chmod(0o644)  # as an older pkgedge made it: `up` warns on start
    try:
        out = subprocess.run(
            up_command(up.data), capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        secret.chmod(0o600)
    assert f"warning: {secret} is mode 644" in out.stderr
    assert f"chmod 600 {secret}" in out.stderr
    assert out.returncode == 2
    assert f"{up.data} is in use by another pkgedge up (pid {up.proc.pid})" in out.stderr
    assert "pkgedge origin" not in out.stdout  # nothing was started
    assert "Traceback" not in out.stderr


def test_a_taken_port_is_refused_before_anything_starts(up: Up, tmp_path: Path) -> None:
    port = up.index.split(":")[-1].split("/")[0]
    out = subprocess.run(
        [*up_command(tmp_path / "other"), "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} for the edge" in out.stderr
    assert "pkgedge origin" not in out.stdout
    assert not (tmp_path / "other" / "catalog.db").exists()


def test_closed_stdout_is_no_crash_and_sigkill_leaves_no_child(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = " ".join(map(shlex.quote, up_command(data))) + " 2>stderr.txt | head -3"
    shell = subprocess.Popen(
        ["sh", "-c", command],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
        start_new_session=True,
    )
    try:
        assert shell.stdout is not None
        head = [shell.stdout.readline() for _ in range(3)]  # then head exits, closing the pipe
        assert all(line.startswith("pkgedge origin: ") for line in head), head

        def serving() -> bool:
            with contextlib.suppress(OSError, ValueError, KeyError):
                base = json.loads((data / "edge.json").read_text())["listen"]
                return httpx.get(base + "/simple/", timeout=5).status_code == 200
            return False

        assert wait_until(serving, 60), (tmp_path / "stderr.txt").read_text()
        errors = (tmp_path / "stderr.txt").read_text()
        assert "Traceback" not in errors and "BrokenPipeError" not in errors
        assert "standard output was closed; carrying on" in errors
        up_pid = int((data / "up.lock").read_text())
        children = children_of(up_pid)
        assert len(children) >= 2  # the origin and one edge worker
        os.kill(up_pid, signal.SIGKILL)
        assert wait_until(lambda: not any(_alive(pid) for pid in children), 30), [
            pid for pid in children if _alive(pid)
        ]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        shell.wait(10)
        if shell.stdout is not None:
            shell.stdout.close()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
