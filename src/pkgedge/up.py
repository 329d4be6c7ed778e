"""``pkgedge up``: the origin, the edge and its admin API together on one machine.

The origin runs in a child process on a loopback port; the edge listens where clients
connect and uses the origin as its upstream. The edge's admin URL and token are recorded in
``DATA_DIR/edge.json`` so the origin (and ``pkgedge yank`` / ``delete``) can purge it.
Ctrl-C (or SIGTERM) stops all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from pkgedge.config import build_edge_settings
from pkgedge.errors import PkgedgeError
from pkgedge.index.run import EDGE_FILE


def _start_origin(args: argparse.Namespace, data: Path) -> tuple[subprocess.Popen[str], str]:
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
    if args.upstream:
        cmd += ["--upstream", args.upstream]
    if args.config:
        cmd += ["--config", args.config]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        print(line.rstrip(), flush=True)
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
            print(rest.rstrip(), flush=True)

    threading.Thread(target=forward, daemon=True).start()
    return proc, url


def run_up(args: argparse.Namespace) -> int:
    from pkgedge.app import run_edge as run

    data = Path(args.data_dir).expanduser().resolve()
    data.mkdir(parents=True, exist_ok=True)
    edge_file = data / EDGE_FILE
    try:
        token = str(json.loads(edge_file.read_text())["token"])
    except (OSError, ValueError, KeyError, TypeError):
        token = secrets.token_urlsafe(24)
    admin_port = (
        args.admin_port if args.admin_port is not None else (args.port + 1 if args.port else 0)
    )
    proc, origin_url = _start_origin(args, data)
    flags: dict[str, Any] = {
        "upstream": origin_url + "/simple/",
        "listen": f"{args.host}:{args.port}",
        "admin": f"127.0.0.1:{admin_port}",
        "admin_token": token,
        "cache_dir": str(data / "cache"),
        "workers": args.workers,
    }
    try:
        settings = build_edge_settings(flags, config_file=args.config)
    except PkgedgeError:
        proc.terminate()
        raise

    def out(line: str) -> None:
        print(line, flush=True)
        if line.startswith("pkgedge edge: admin on "):
            admin = line.rsplit(" ", 1)[1]
            tmp = edge_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"admin": admin, "token": token}))
            os.replace(tmp, edge_file)
        if line.startswith("pkgedge edge: listening on "):
            index = line.rsplit(" ", 1)[1] + "/simple/"
            upload = line.rsplit(" ", 1)[1] + "/legacy/"
            print(f"pkgedge up: index URL for pip/uv: {index}", flush=True)
            print(f"pkgedge up: upload URL for twine/uv publish: {upload}", flush=True)
            print(
                f"pkgedge up: create an upload token: pkgedge token create --data-dir {data}",
                flush=True,
            )

    try:
        return run(settings, out=out)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
