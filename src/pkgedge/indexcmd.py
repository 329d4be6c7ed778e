"""The origin's management commands: ``pkgedge token``, ``yank``, ``delete`` and ``project``
(they work on the catalog and the file store directly, then purge the edge), and the origin's
settings from the command line (also ``pkgedge origin``'s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pkgedge.errors import PkgedgeError


def origin_settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from pkgedge.index.settings import ORIGIN_OPTIONS, build_origin_settings

    flags = {o.name: getattr(args, "origin_" + o.name, None) for o in ORIGIN_OPTIONS}
    flags.update({k: v for k, v in overrides.items() if v is not None})
    return build_origin_settings(flags, config_file=args.config)


def _catalog(args: argparse.Namespace) -> Any:
    from pkgedge.index.catalog import Catalog

    settings = origin_settings(args, upstream="off")
    default_db = f"sqlite:///{Path(settings.data_dir) / 'catalog.db'}"
    if settings.database == default_db and not Path(settings.data_dir).is_dir():
        raise PkgedgeError(
            f"no data directory {settings.data_dir}: start `pkgedge up --data-dir "
            f"{settings.data_dir}` (or `pkgedge origin`) once first, or give --data-dir"
        )
    catalog = Catalog(settings.database)
    catalog.migrate()
    return settings, catalog


def cmd_token(args: argparse.Namespace) -> int:
    from pkgedge.index.names import normalize

    _, catalog = _catalog(args)
    try:
        if args.token_command == "create":
            project = normalize(args.project) if args.project else None
            row, secret = catalog.create_token(args.description or "", project)
            scope = f"project {project}" if project else "all projects"
            print(f"token {row.id} for {scope} (shown once; use username __token__):")
            print(secret)
        elif args.token_command == "list":
            for t in catalog.list_tokens():
                state = "revoked" if t.revoked else "active"
                print(f"{t.id}\t{state}\t{t.project or '*'}\t{t.created:%Y-%m-%d}\t{t.description}")
        elif args.token_command == "revoke":
            if not catalog.revoke_token(args.id):
                raise PkgedgeError(f"no token with id {args.id}")
            print(f"token {args.id} revoked")
    finally:
        catalog.close()
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    from pkgedge.index.names import normalize
    from pkgedge.index.run import edge_link
    from pkgedge.index.storage import storage_from_url

    settings, catalog = _catalog(args)
    settings = edge_link(settings)
    try:
        name = normalize(args.name)
        if catalog.release(name, args.version) is None:
            raise PkgedgeError(f"no release {args.version!r} of {name!r}")
        if args.command == "yank":
            if args.undo:
                catalog.unyank(name, args.version)
                print(f"unyanked {name} {args.version}")
            else:
                catalog.yank(name, args.version, args.reason)
                print(f"yanked {name} {args.version}")
        else:
            rows = catalog.delete_release(name, args.version)
            storage = storage_from_url(settings.storage)
            for row in rows:
                for key in (row.blob_key, row.blob_key + ".metadata"):
                    storage.delete(key)
            print(f"deleted {name} {args.version} ({len(rows)} file(s))")
    finally:
        catalog.close()
    if not _purge_change(settings, name):
        print("warning: the edge could not be purged now; the origin will retry", file=sys.stderr)
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    """Project settings: PEP 792 status, and whether upstream releases may be merged."""
    from pkgedge.index.names import normalize
    from pkgedge.index.run import edge_link

    settings, catalog = _catalog(args)
    settings = edge_link(settings)
    name = normalize(args.name)
    try:
        if args.project_command == "status":
            catalog.set_status(name, args.status, args.reason)
            print(f"{name}: status {args.status}")
        else:
            catalog.set_allow_upstream(name, not args.deny)
            state = "may not" if args.deny else "may"
            print(f"{name}: upstream releases {state} be merged")
    finally:
        catalog.close()
    _purge_change(settings, name)
    return 0


def _purge_change(settings: Any, name: str) -> bool:
    """Purge the edge of what a change to project ``name`` touched (True: done now; else
    queued for the origin to retry, or no edge is configured)."""
    from pkgedge.index import cachepolicy
    from pkgedge.index.purge import Purger

    purger = Purger(
        settings.edge_admin,
        settings.edge_admin_token,
        Path(settings.data_dir) / "purge-queue.json",
    )
    return not purger.enabled or purger.purge(cachepolicy.keys_for_change(name))
