"""The ``pkgedge`` command: one sub-command per job (see :data:`DESCRIPTION`).

Errors are one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pkgedge import __version__
from pkgedge.cliparts import (
    DATA_DIR,
    DESCRIPTION,
    admin_call,
    edge_settings,
    leaf_parsers,
    option_help,
    recorded,
)
from pkgedge.config import EDGE_OPTIONS, build_edge_settings
from pkgedge.errors import PkgedgeError
from pkgedge.indexcmd import cmd_manage, cmd_project, cmd_token, origin_settings
from pkgedge.statscmd import cmd_stats


def _add_edge_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (or PKGEDGE_CONFIG)")
    for opt in EDGE_OPTIONS:
        p.add_argument(
            opt.flag,
            dest=opt.name,
            metavar=opt.metavar,
            default=None,
            help=option_help(opt),
        )


def _add_origin_options(p: argparse.ArgumentParser, only: tuple[str, ...] = ()) -> None:
    from pkgedge.index.settings import ORIGIN_OPTIONS

    if not any(a.dest == "config" for a in p._actions):
        p.add_argument("--config", metavar="FILE", help="TOML config file (or PKGEDGE_CONFIG)")
    for opt in ORIGIN_OPTIONS:
        if only and opt.name not in only:
            continue
        p.add_argument(
            opt.flag,
            dest="origin_" + opt.name,
            metavar=opt.metavar,
            default=None,
            help=option_help(opt),
        )


def cmd_edge(args: argparse.Namespace) -> int:
    from pkgedge.app import run_edge as run

    settings = edge_settings(args)
    return run(settings, out=lambda line: print(line, flush=True))


def cmd_origin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pkgedge.index import private
    from pkgedge.index.run import serve
    from pkgedge.server.lifeline import die_with_parent
    from pkgedge.up import PARENT_ENV

    settings = origin_settings(args)
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit():  # started by `pkgedge up`, which checked the data directory
        die_with_parent(int(parent))
    else:
        private.make_dir(Path(settings.data_dir))
        for warning in private.check(Path(settings.data_dir)):
            print(f"pkgedge origin: warning: {warning}", file=sys.stderr, flush=True)
    return serve(settings, out=lambda line: print(line, flush=True))


def cmd_up(args: argparse.Namespace) -> int:
    from pkgedge.up import UP_OPTIONS, run_up

    return run_up({o.name: getattr(args, "up_" + o.name) for o in UP_OPTIONS}, args.config)


def cmd_config_show(args: argparse.Namespace) -> int:
    if args.version is not None:  # ``config show N``: a configuration version
        from pkgedge.configcmd import cmd_show_version

        return cmd_show_version(args)
    edge_flags = any(getattr(args, o.name, None) is not None for o in EDGE_OPTIONS)
    found = None
    if args.data_dir is not None or not (edge_flags or args.config):
        found = recorded(args.data_dir or DATA_DIR)
        if args.data_dir is not None and (found is None or "settings" not in found):
            raise PkgedgeError(
                f"no settings recorded in {args.data_dir}: `pkgedge up --data-dir "
                f"{args.data_dir}` records them when it starts"
            )
    if found is not None and isinstance(found.get("settings"), dict):
        where = args.data_dir or DATA_DIR
        print(f"# the settings `pkgedge up` runs with (recorded in {where})", file=sys.stderr)
        data = dict(found["settings"])
        if not args.show_secrets:
            data["admin_token"] = "***"
    else:
        data = edge_settings(args, upstream=None).as_dict(redact=not args.show_secrets)
    for key, value in data.items():
        print(f"{key} = {json.dumps(value)}")
    return 0


def cmd_playground_test(args: argparse.Namespace) -> int:
    from pkgedge.web.playground.testfile import run_file

    settings = None
    if args.upstream or args.config:
        settings = build_edge_settings(
            {"upstream": args.upstream, "workers": "1", "access_log": "off"},
            config_file=args.config,
        )
    return run_file(
        args.file,
        settings,
        lambda line: print(line, flush=True),
        lambda line: print(line, file=sys.stderr, flush=True),
        events=args.events,
    )


def cmd_purge(args: argparse.Namespace) -> int:
    if not (args.key or args.url or args.all):
        raise PkgedgeError("nothing to purge: give --key, --url or --all")
    result = admin_call(
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
    if "nodes" in result:  # through Redis: every live node acknowledged, or the ones that did not
        print(f"applied on {len(result['nodes'])} node(s): {', '.join(sorted(result['nodes']))}")
    if result.get("missing"):
        late = ", ".join(result["missing"])
        queued = " (queued: sent when redis is back)" if result.get("queued") else ""
        print(f"pkgedge: not acknowledged by: {late}{queued}", file=sys.stderr)
        return 1
    return 0


def _admin_args(p: argparse.ArgumentParser, *, keep: bool = False) -> None:
    """``keep``: a sub-command's copy, which must not reset what was given before it."""
    default = argparse.SUPPRESS if keep else None
    p.add_argument(
        "--admin-url",
        metavar="URL",
        default=default,
        help="admin API base URL [env PKGEDGE_ADMIN_URL, default 127.0.0.1:8081]",
    )
    p.add_argument(
        "--token", metavar="TOKEN", default=default, help="admin token [env PKGEDGE_ADMIN_TOKEN]"
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default,
        help="without --admin-url/--token: use the edge `pkgedge up --data-dir DIR` runs "
        f"(default: {DATA_DIR}) [env PKGEDGE_ORIGIN_DATA_DIR]",
    )


def parser() -> argparse.ArgumentParser:
    from pkgedge.up import UP_OPTIONS

    p = argparse.ArgumentParser(
        prog="pkgedge", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
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
    origin = sub.add_parser("origin", help="run the package index (the origin)")
    _add_origin_options(origin)
    origin.set_defaults(func=cmd_origin)
    up = sub.add_parser(
        "up",
        help="run origin, edge and admin together on this machine",
        description="Run the index (origin), the edge in front of it and the edge's admin API "
        "on this machine. Options are also PKGEDGE_UP_* variables and keys of the [up] table; "
        "[edge] and [origin] keys of the --config file apply too.",
    )
    up.add_argument("--config", metavar="FILE", help="TOML config file (or PKGEDGE_CONFIG)")
    for opt in UP_OPTIONS:
        up.add_argument(opt.flag, dest="up_" + opt.name, metavar=opt.metavar, help=option_help(opt))
    up.set_defaults(func=cmd_up)
    token = sub.add_parser("token", help="API tokens for uploads")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION")
    tsub.required = True
    tcreate = tsub.add_parser("create", help="create a token (printed once)")
    tcreate.add_argument("--project", help="scope the token to one project")
    tcreate.add_argument("--description", help="what the token is for")
    tlist = tsub.add_parser("list", help="list tokens")
    trevoke = tsub.add_parser("revoke", help="revoke a token")
    trevoke.add_argument("id", type=int)
    for tp in (tcreate, tlist, trevoke):
        _add_origin_options(tp, only=("data_dir", "database"))
        tp.set_defaults(func=cmd_token)
    yank = sub.add_parser("yank", help="yank (or --undo: unyank) a release")
    yank.add_argument("name")
    yank.add_argument("version")
    yank.add_argument("--reason", help="why (shown to installers)")
    yank.add_argument("--undo", action="store_true", help="unyank")
    delete = sub.add_parser("delete", help="delete a release and its files")
    delete.add_argument("name")
    delete.add_argument("version")
    for mp in (yank, delete):
        _add_origin_options(
            mp, only=("data_dir", "database", "storage", "edge_admin", "edge_admin_token")
        )
        mp.set_defaults(func=cmd_manage)
    project = sub.add_parser("project", help="project settings (status, upstream merging)")
    psub = project.add_subparsers(dest="project_command", metavar="ACTION")
    psub.required = True
    pstatus = psub.add_parser("status", help="set the PEP 792 status of a hosted project")
    pstatus.add_argument("name")
    pstatus.add_argument("status", choices=["active", "archived", "quarantined", "deprecated"])
    pstatus.add_argument("--reason", help="shown to clients")
    pallow = psub.add_parser(
        "allow-upstream", help="let a hosted project also offer the upstream's releases"
    )
    pallow.add_argument("name")
    pallow.add_argument("--deny", action="store_true", help="stop merging (the default)")
    for pp in (pstatus, pallow):
        _add_origin_options(pp, only=("data_dir", "database", "edge_admin", "edge_admin_token"))
        pp.set_defaults(func=cmd_project)
    stats = sub.add_parser("stats", help="a running edge's live stats (--json: its counters)")
    _admin_args(stats)
    stats.add_argument("--watch", action="store_true", help="keep the view live (Ctrl-C ends)")
    stats.add_argument("--json", action="store_true", help="print the counters as JSON")
    stats.set_defaults(func=cmd_stats, stats_command=None)
    ssub = stats.add_subparsers(dest="stats_command", metavar="ACTION")
    sdown = ssub.add_parser("downloads", help="downloads of a project per day")
    sdown.add_argument("name", help="project name")
    sdown.add_argument("--days", type=int, default=30, help="days back (default 30)")
    sdown.add_argument(
        "--by", choices=["installer", "version", "python", "system", "file_type", "ci"]
    )
    _admin_args(sdown, keep=True)
    sreplay = ssub.add_parser(
        "replay", help="rebuild download aggregates from access or download logs (idempotent)"
    )
    sreplay.add_argument("files", nargs="+", metavar="LOG", help="JSON-lines log files")
    _add_edge_options(sreplay)
    config = sub.add_parser("config", help="configuration")
    csub = config.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the effective edge settings, or version N")
    _add_edge_options(show)
    show.add_argument("version", type=int, nargs="?", help="a configuration version")
    show.add_argument("--show-secrets", action="store_true", help="print the admin token")
    show.add_argument(
        "--data-dir",
        metavar="DIR",
        help="show what `pkgedge up --data-dir DIR` runs with (the default when "
        f"{DATA_DIR}/ has a running or past `up` and no edge option is given)",
    )
    show.set_defaults(func=cmd_config_show)
    from pkgedge.configcmd import add_commands

    add_commands(csub)  # versions, clone, edit, validate, diff, activate, rollback, table
    playground = sub.add_parser("playground", help="try configurations on requests")
    pgsub = playground.add_subparsers(dest="playground_command", metavar="ACTION")
    pgsub.required = True
    pgtest = pgsub.add_parser(
        "test", help="run an exported playground; exit 1 on a failed assertion or compile error"
    )
    pgtest.add_argument("file", metavar="FILE", help="playground export (JSON or .toml)")
    pgtest.add_argument("--events", action="store_true", help="print each phase's events")
    pgtest.add_argument("--upstream", help="the upstream for playgrounds with origin=upstream")
    pgtest.add_argument("--config", metavar="FILE", help="edge TOML config (backends, upstream)")
    pgtest.set_defaults(func=cmd_playground_test)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from pkgedge.index.private import private_umask

    private_umask()  # data directories 700, catalogs and secrets 600
    p = parser()
    leaf_parsers(p)
    args, extra = p.parse_known_args(argv)
    if extra:
        getattr(args, "_parser", p).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except PkgedgeError as exc:
        print(f"pkgedge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
