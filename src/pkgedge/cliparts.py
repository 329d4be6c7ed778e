"""Pieces of the ``pkgedge`` command that are not its parser: the top-level description,
option help with defaults, usage errors per sub-command, what ``pkgedge up`` recorded in its
data directory, the client of the edge's admin API (``stats``, ``purge``) and the edge's
settings from the command line."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pkgedge.config import EDGE_OPTIONS, Option, build_edge_settings, parse_grace, parse_size
from pkgedge.errors import PkgedgeError
from pkgedge.index.edgelink import EDGE_FILE

#: Where ``pkgedge up`` keeps its data unless told otherwise (also ``yank``'s default).
DATA_DIR = "pkgedge-data"

DESCRIPTION = """\
pkgedge: a self-hostable Python package index (the origin) and the caching CDN edge in
front of it.

Start here:
  pkgedge up                      index + edge + admin on this machine (data in pkgedge-data)
  pkgedge token create            an upload token for twine / uv publish
  pkgedge config show             the settings `up` (or `edge`) runs with
Then: pip install --index-url http://127.0.0.1:8080/simple/ NAME

Each command has its own --help. Options are also PKGEDGE_* environment variables and keys
of the [edge], [origin] and [up] tables of a TOML file (--config or PKGEDGE_CONFIG)."""


def default_text(opt: Option) -> str:
    """An option's default as its flag would spell it ("" when the doc says it already)."""
    value = opt.default
    if value is None or "default" in opt.doc:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif opt.parse is parse_size and isinstance(value, int) and value:
        text = str(value)
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("GB", 10**9), ("MB", 10**6)):
            if value % size == 0:
                text = f"{value // size}{unit}"
                break
    elif isinstance(value, float) and opt.metavar in ("SECONDS", "DURATION|unlimited"):
        text = "unlimited" if value == parse_grace("unlimited") else f"{value:g}s"
        for unit, size in (("h", 3600), ("m", 60)):
            if value and value != float("inf") and value % size == 0:
                text = f"{value / size:g}{unit}"
                break
    elif value == "":
        text = "none"
    else:
        text = str(value)
    return f" (default: {text})"


def option_help(opt: Option) -> str:
    return f"{opt.doc}{default_text(opt)} [env {opt.env}]".replace("%", "%%")


def recorded(data_dir: str) -> dict[str, Any] | None:
    """What ``pkgedge up`` recorded in ``DATA_DIR/edge.json`` (None when nothing)."""
    try:
        found = json.loads((Path(data_dir).expanduser() / EDGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def admin_call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    data_dir = (
        getattr(args, "data_dir", None) or os.environ.get("PKGEDGE_ORIGIN_DATA_DIR") or DATA_DIR
    )
    up = recorded(data_dir) or {}  # what `pkgedge up` wrote there, as yank finds it
    named = args.admin_url or os.environ.get("PKGEDGE_ADMIN_URL")
    if named and named.rstrip("/") != str(up.get("admin", "")).rstrip("/"):
        up = {}  # another edge than that `up`'s: its token is not this one's
    token = args.token or os.environ.get("PKGEDGE_ADMIN_TOKEN") or up.get("token")
    if not token:
        raise PkgedgeError(
            f"no admin token: pass --token, set PKGEDGE_ADMIN_TOKEN, or give the --data-dir "
            f"of a `pkgedge up` (none recorded in {data_dir})"
        )
    admin = (
        args.admin_url
        or os.environ.get("PKGEDGE_ADMIN_URL")
        or up.get("admin")
        or "http://127.0.0.1:8081"
    )
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        admin.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip()
        raise PkgedgeError(f"admin API answered {exc.code}: {reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise PkgedgeError(f"cannot reach the admin API at {admin}: {why}") from None


def leaf_parsers(p: argparse.ArgumentParser) -> None:
    """Remember in every sub-command's defaults which parser it is, so an unknown flag is
    reported with that sub-command's usage rather than the top-level one."""
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(_parser=sub)
                leaf_parsers(sub)


def edge_settings(args: argparse.Namespace, **overrides: Any) -> Any:
    flags = {o.name: getattr(args, o.name, None) for o in EDGE_OPTIONS}
    flags.update({k: v for k, v in overrides.items() if v is not None})
    return build_edge_settings(flags, config_file=args.config)
