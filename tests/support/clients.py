"""Real installers (pip, uv) run the way the tests need them: only the index given, no
caches, none of this machine's pip/uv configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without pip/uv/pkgedge settings (this machine's pip config adds local
    indexes and constraints) and without PYTHONPATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "PKGEDGE_")) and k != "PYTHONPATH"
    }
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


def uv_path() -> str:
    local = Path(sys.executable).parent / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.fail("uv is not installed: it is a test dependency ('.[test]')", pytrace=False)
    return found


def installer_command(installer: str, index_url: str, target: Path) -> list[str]:
    """The install command line of ``pip`` or ``uv`` into ``target`` from ``index_url`` only."""
    if installer == "pip":
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--index-url",
            index_url,
            "--target",
            str(target),
        ]
    return [
        uv_path(),
        "pip",
        "install",
        "--no-cache",
        "--python",
        sys.executable,
        "--index-url",
        index_url,
        "--target",
        str(target),
    ]


def run_install(
    installer: str, index_url: str, target: Path, *packages: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*installer_command(installer, index_url, target), *packages],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
        check=False,
    )


def install(installer: str, index_url: str, target: Path, *packages: str) -> str:
    """Install and fail the test with the installer's output if it fails; returns the output."""
    proc = run_install(installer, index_url, target, *packages)
    output = f"$ {' '.join(proc.args)}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, output
    return output
