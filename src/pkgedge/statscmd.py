"""``pkgedge stats``: a running edge's live stats (or its counters as JSON), a project's
downloads per day, and the replay of download logs into the aggregates."""

from __future__ import annotations

import argparse
import json
import os

from pkgedge.cliparts import admin_call, edge_settings
from pkgedge.errors import PkgedgeError


def cmd_stats(args: argparse.Namespace) -> int:
    if args.stats_command == "downloads":
        return _stats_downloads(args)
    if args.stats_command == "replay":
        return _stats_replay(args)
    if args.json:
        print(json.dumps(admin_call(args, "GET", "/stats"), indent=2))
        return 0
    from pkgedge.stats.view import show

    show(lambda: admin_call(args, "GET", "/stats/live"), watch=args.watch)
    return 0


def _stats_downloads(args: argparse.Namespace) -> int:
    from urllib.parse import quote, urlencode

    from pkgedge.stats.view import downloads_table

    query = {"days": args.days, **({"by": args.by} if args.by else {})}
    path = f"/stats/downloads/{quote(args.name, safe='')}?{urlencode(query)}"
    downloads_table(admin_call(args, "GET", path))
    return 0


def _stats_replay(args: argparse.Namespace) -> int:
    from pkgedge.analytics.recorder import downloads_of
    from pkgedge.analytics.replay import replay

    for f in args.files:
        if not os.path.isfile(f):
            raise PkgedgeError(f"no such log file: {f}")
    settings = edge_settings(args, upstream="http://replay.invalid/")
    db = downloads_of(settings)
    try:
        done = replay(db, args.files)
    except OSError as exc:
        raise PkgedgeError(f"cannot read the logs: {exc}") from None
    finally:
        db.close()
    print(
        f"replayed {done.lines} line(s): {done.downloads} download(s) over {len(done.days)} "
        f"day(s) ({', '.join(done.days) or 'none'}); {done.skipped} line(s) skipped"
    )
    return 0
