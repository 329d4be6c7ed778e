"""The pkgedge command as a user runs it: help, one-line errors, non-zero exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.edge import EdgeProcess


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgedge", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize("cmd", [[], ["edge"], ["purge"], ["stats"], ["config", "show"]])
def test_help_on_every_command(cmd: list[str]) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0
    assert "usage: pkgedge" in out.stdout


def test_bad_option_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = run("edge", "--memory-size", "huge", "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("pkgedge: flag --memory-size: not a size")
    assert "Traceback" not in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path, edge: EdgeProcess) -> None:
    port = edge.url.rsplit(":", 1)[1]
    out = run(
        "edge",
        "--upstream",
        "http://127.0.0.1:9/simple/",
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        "127.0.0.1:0",
        "--cache-dir",
        str(tmp_path),
    )
    assert out.returncode != 0
    assert "cannot listen on" in out.stderr and "Traceback" not in out.stderr


def test_config_show_prints_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[edge]\nupstream = "http://127.0.0.1:1/simple/"\nworkers = 3\n')
    out = run("config", "show", "--config", str(cfg), "--memory-size", "2MB")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" = ", 1) for line in out.stdout.splitlines())
    assert lines["workers"] == "3"
    assert lines["memory_size"] == "2000000"
    assert lines["admin_token"] == '"***"'


def test_purge_and_stats_against_a_running_edge(edge: EdgeProcess) -> None:
    env = {"PKGEDGE_ADMIN_TOKEN": edge.token, "PATH": "/usr/bin:/bin"}
    assert edge.get("/simple/alpha/").status_code == 200
    out = run("purge", "--admin-url", edge.admin_url, "--url", "/simple/alpha/", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("purged ")
    out = run("stats", "--json", "--admin-url", edge.admin_url, env=env)
    assert out.returncode == 0 and '"purges"' in out.stdout
    out = run("stats", "--admin-url", edge.admin_url, env=env)  # the terminal view
    assert out.returncode == 0, out.stderr
    assert "hit ratio" in out.stdout and "purges" in out.stdout
    out = run("purge", "--admin-url", edge.admin_url, "--key", "x", "--token", "wrong")
    assert out.returncode == 2 and "401" in out.stderr
    out = run("purge", "--admin-url", "http://127.0.0.1:9", "--all", "--token", "t")
    assert out.returncode == 2 and "cannot reach the admin API" in out.stderr
    out = run("purge", "--admin-url", edge.admin_url, "--token", "t")
    assert out.returncode == 2 and "nothing to purge" in out.stderr
