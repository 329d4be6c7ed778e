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


def test_catalog_commands_without_a_data_directory_say_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for cmd in (["token", "create"], ["yank", "x", "1.0"], ["project", "status", "x", "archived"]):
        out = run(*cmd, "--data-dir", str(missing))
        assert out.returncode == 2, (cmd, out.stderr)
        assert f"no data directory {missing}: start `pkgedge up" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    assert not missing.exists()  # nothing made behind the user's back


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


def test_top_level_help_is_current_and_plain_text() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("up", "edge", "origin", "token", "yank", "config", "stats", "purge"):
        assert f"\n    {command} " in out.stdout, command
    assert "pkgedge up" in out.stdout and "--index-url" in out.stdout
    assert "``" not in out.stdout and ":data:" not in out.stdout  # no RST markup


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (["edge"], "(default: 256MB)"),
        (["up"], "(default: 8080)"),
        (["origin"], "(default: 100MiB)"),
    ],
)
def test_help_shows_defaults(cmd: list[str], expected: str) -> None:
    out = run(*cmd, "--help")
    assert out.returncode == 0
    assert expected in " ".join(out.stdout.split())


@pytest.mark.parametrize(
    "cmd", [["up"], ["edge"], ["token", "create"], ["config", "show"], ["stats"]]
)
def test_unknown_flag_prints_the_subcommands_usage(cmd: list[str]) -> None:
    out = run(*cmd, "--no-such-flag")
    assert out.returncode == 2
    name = " ".join(cmd)
    assert out.stderr.startswith(f"usage: pkgedge {name} ")
    assert f"pkgedge {name}: error: unrecognized arguments: --no-such-flag" in out.stderr


def test_scripts_run_installs_only_when_pyproject_changed(tmp_path: Path) -> None:
    """scripts/run in a copy of the project whose .venv is a fake that logs its calls."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run").write_bytes((root / "scripts" / "run").read_bytes())
    (tmp_path / "scripts" / "run").chmod(0o755)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    for name in ("python", "pkgedge"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
        (bin_dir / name).chmod(0o755)

    def run_script() -> list[str]:
        log.write_text("")
        out = subprocess.run(
            [str(tmp_path / "scripts" / "run"), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert ".venv/bin/pkgedge" in out.stderr  # says where pkgedge is
        return log.read_text().splitlines()

    first = run_script()
    assert first[0].startswith("python -m pip install") and first[-1].startswith("pkgedge up")
    assert run_script() == ["pkgedge up --data-dir pkgedge-data --port 0"]  # no reinstall
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    assert run_script()[0].startswith("python -m pip install")
