"""The ``pkgedge`` command: ``edge``, ``purge``, ``stats``, ``config show``.

Errors are one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from pkgedge import __version__
from pkgedge.config import EDGE_OPTIONS, build_edge_settings
from pkgedge.errors import PkgedgeError


def _add_edge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (or PKGEDGE_CONFIG)")
    for opt in EDGE_OPTIONS:
        p.add_argument(
            opt.flag,
            dest=opt.name,
            metavar=opt.metavar,
            default=None,
            help=f"{opt.doc} [env {opt.env}]",
        )


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    flags = {o.name: getattr(args, o.name, None) for o in EDGE_OPTIONS}
    flags.update({k: v for k, v in overrides.items() if v is not None})
    return build_edge_settings(flags, config_file=args.config)


def cmd_edge(args: argparse.Namespace) -> int:
    from pkgedge.server.workers import run

    settings = _settings(args)
    return run(settings, out=lambda line: print(line, flush=True))


def cmd_config_show(args: argparse.Namespace) -> int:
    settings = _settings(args, upstream=None)
    data = settings.as_dict(redact=not args.show_secrets)
    for key, value in data.items():
        print(f"{key} = {json.dumps(value)}")
    return 0


def _admin_call(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    token = args.token or os.environ.get("PKGEDGE_ADMIN_TOKEN")
    if not token:
        raise PkgedgeError("no admin token: pass --token or set PKGEDGE_ADMIN_TOKEN")
    admin = args.admin_url or os.environ.get("PKGEDGE_ADMIN_URL") or "http://127.0.0.1:8081"
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


def cmd_purge(args: argparse.Namespace) -> int:
    if not (args.key or args.url or args.all):
        raise PkgedgeError("nothing to purge: give --key, --url or --all")
    result = _admin_call(
        args,
        "POST",
        "/purge",
        {
            "keys": args.key or [],
            "urls": args.url or [],
            "all": args.all,
            "soft": args.soft,
        },
    )
    print(f"purged {result['purged']} object(s){' (soft)' if args.soft else ''}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    print(json.dumps(_admin_call(args, "GET", "/stats"), indent=2))
    return 0


def _admin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--admin-url",
        metavar="URL",
        help="admin API base URL [env PKGEDGE_ADMIN_URL, default 127.0.0.1:8081]",
    )
    p.add_argument("--token", metavar="TOKEN", help="admin token [env PKGEDGE_ADMIN_TOKEN]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkgedge", description=__doc__)
    p.add_argument("--version", action="version", version=f"pkgedge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    edge = sub.add_parser("edge", help="run the caching edge in front of an upstream index")
    _add_edge_options(edge)
    edge.set_defaults(func=cmd_edge)
    purge = sub.add_parser("purge", help="purge objects from a running edge")
    _admin_args(purge)
    purge.add_argument("--key", action="append", help="surrogate key (repeatable)")
    purge.add_argument("--url", action="append", help="URL or path (repeatable)")
    purge.add_argument("--all", action="store_true", help="purge everything")
    purge.add_argument(
        "--soft", action="store_true", help="mark stale instead of removing (stale-* still apply)"
    )
    purge.set_defaults(func=cmd_purge)
    stats = sub.add_parser("stats", help="print a running edge's counters")
    _admin_args(stats)
    stats.set_defaults(func=cmd_stats)
    config = sub.add_parser("config", help="configuration")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the effective edge settings")
    _add_edge_options(show)
    show.add_argument("--show-secrets", action="store_true", help="print the admin token")
    show.set_defaults(func=cmd_config_show)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PkgedgeError as exc:
        print(f"pkgedge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
