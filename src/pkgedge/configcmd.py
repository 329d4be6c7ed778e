"""``pkgedge config``: configuration versions and live tables, on the edge's data directory.

``versions | show N | new | clone N | edit N | validate N|FILE | diff A B | activate N |
rollback | activations | table NAME``. Each works on ``<cache-dir>/config/`` directly (run it
as the edge's user; the edge need not run): a running edge's workers pick up an activation or a
table change within a second. ``config show`` without N still prints the settings.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pkgedge.config import EDGE_OPTIONS, merge_options
from pkgedge.edge.versions import VersionStore
from pkgedge.errors import PkgedgeError

__all__ = ["add_commands", "cmd_show_version"]


def _store(args: argparse.Namespace) -> VersionStore:
    flags = {"cache_dir": getattr(args, "cache_dir", None)}
    config_file = getattr(args, "config", None) or os.environ.get("PKGEDGE_CONFIG")
    values = merge_options(EDGE_OPTIONS, "edge", flags, os.environ, config_file)
    if not (flags["cache_dir"] or config_file or os.environ.get("PKGEDGE_CACHE_DIR")):
        from pkgedge.cliparts import DATA_DIR, recorded

        up = (recorded(DATA_DIR) or {}).get("settings")  # the `pkgedge up` run from here
        if isinstance(up, dict) and up.get("cache_dir"):
            values = {**values, "cache_dir": up["cache_dir"], "backends": up.get("backends")}
    backends = ["origin", *(values.get("backends") or {})]
    return VersionStore(Path(values["cache_dir"]).expanduser().resolve(), backends)


def _author(args: argparse.Namespace) -> str:
    if getattr(args, "author", None):
        return str(args.author)
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _read(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PkgedgeError(f"cannot read {path}: {exc}") from None


def cmd_versions(args: argparse.Namespace) -> int:
    for v in _store(args).listing():
        parent = f"v{v['parent']}" if v["parent"] else "-"
        print(
            f"{v['version']:>4}  {v['status']:<7}  {_when(v['created'])}  {parent:<5}  "
            f"{v['author']}  {v['comment']}"
        )
    return 0


def cmd_show_version(args: argparse.Namespace) -> int:
    store = _store(args)
    version = store.get(int(args.version))
    meta = version.meta()
    print(f"# version {meta['version']} ({store.status(version.number)})")
    print(f"# created {_when(meta['created'])} by {meta['author']}", end="")
    print(f", from v{meta['parent']}" if meta["parent"] else "")
    if meta["comment"]:
        print(f"# {meta['comment']}")
    sys.stdout.write(version.source if version.source.endswith("\n") else version.source + "\n")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    number = _store(args).create(_read(args.file), _author(args), args.comment or "")
    print(f"created draft version {number}")
    return _report(args, number)


def cmd_clone(args: argparse.Namespace) -> int:
    number = _store(args).clone(args.version, _author(args), args.comment or "")
    print(f"created draft version {number} from version {args.version}")
    return 0


def _edit_in_editor(text: str, number: int) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise PkgedgeError("no --file given and neither VISUAL nor EDITOR is set")
    fd, name = tempfile.mkstemp(prefix=f"pkgedge-v{number}-", suffix=".vcl")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            code = subprocess.call([*shlex.split(editor), name])
        except OSError as exc:
            raise PkgedgeError(f"cannot run the editor {editor!r}: {exc}") from None
        if code != 0:
            raise PkgedgeError(f"the editor exited with {code}: version {number} not changed")
        return Path(name).read_text(encoding="utf-8")
    finally:
        os.unlink(name)


def cmd_edit(args: argparse.Namespace) -> int:
    store = _store(args)
    old = store.get(args.version)
    store.check_draft(args.version)
    text = _read(args.file) if args.file else _edit_in_editor(old.source, args.version)
    if text == old.source and args.comment is None:
        print(f"version {args.version} unchanged")
        return 0
    store.edit(args.version, text, _author(args), args.comment)
    print(f"saved draft version {args.version}")
    return _report(args, args.version)


def _report(args: argparse.Namespace, number: int) -> int:
    """Validate a version just saved: 0 if it compiles, else the diagnostics and 1."""
    from pkgedge.rules import RulesError  # here: commands that compile nothing skip the parser

    try:
        (store := _store(args)).compile(store.get(number).source, number)
    except RulesError as exc:
        print(f"version {number} does not compile (it cannot be activated):", file=sys.stderr)
        print(exc, file=sys.stderr)
        return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    target: str = args.target
    store = _store(args)
    if target.isdigit() and not Path(target).exists():
        source, name = store.get(int(target)).source, f"version {target}"
        store.compile(source, int(target))
    else:
        source, name = _read(target), target
        store.compile(source, target)
    print(f"{name}: ok")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    sys.stdout.write(_store(args).diff(args.a, args.b))
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    from pkgedge.rules import RulesError

    try:
        old, new = _store(args).activate(args.version, _author(args))
    except RulesError as exc:
        raise PkgedgeError(
            f"version {args.version} does not compile, not activated:\n{exc}"
        ) from None
    print(f"version {new} is active" + (f" (was {old})" if old != new else " (already)"))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    old, new = _store(args).rollback(_author(args))
    print(f"rolled back: version {new} is active (was {old})")
    return 0


def cmd_activations(args: argparse.Namespace) -> int:
    for a in _store(args).activations():
        old = f"v{a['from']}" if a.get("from") else "-"
        print(f"{_when(a['at'])}  {a.get('action', '')}  {old} -> v{a['to']}  by {a['by']}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    store = _store(args)
    live = store.tables()
    if args.name not in live:
        known = ", ".join(sorted(live)) or "none"
        raise PkgedgeError(f"no table or acl named {args.name!r} (active version has: {known})")
    current: Any = live[args.name]
    data: Any = current
    if args.json:
        try:
            data = json.loads(_read(args.json))
        except ValueError as exc:
            raise PkgedgeError(f"{args.json}: not JSON: {exc}") from None
    if args.set or args.unset:
        if not isinstance(data, dict):
            raise PkgedgeError(f"{args.name} is an acl: use --add-network / --remove-network")
        data = dict(data)
        for item in args.set or ():
            key, eq, value = item.partition("=")
            if not eq:
                raise PkgedgeError(f"--set {item!r}: expected KEY=VALUE")
            data[key] = value
        for key in args.unset or ():
            data.pop(key, None)
    if args.add_network or args.remove_network:
        if not isinstance(data, list):
            raise PkgedgeError(f"{args.name} is a table: use --set KEY=VALUE")
        gone = set(args.remove_network or ())
        data = [n for n in data if n not in gone]
        data += [n for n in args.add_network or () if n not in data]
    if data is current:
        print(json.dumps(current, indent=1))
        return 0
    number = store.set_table(args.name, data, _author(args))
    print(f"{args.name}: {len(data)} entries, live in version {number}")
    return 0


def _common(p: argparse.ArgumentParser, author: bool = False) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (or PKGEDGE_CONFIG)")
    p.add_argument("--cache-dir", metavar="DIR", help="the edge's data directory")
    if author:
        p.add_argument("--author", help="who is recorded (default: your user name)")


def add_commands(csub: Any) -> None:
    """Add the version subcommands to ``pkgedge config``'s subparsers."""

    def sub(name: str, help: str, func: Any, author: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = csub.add_parser(name, help=help)
        _common(p, author)
        p.set_defaults(func=func)
        return p

    sub("versions", "list configuration versions", cmd_versions)
    p = sub("new", "a new draft version from a file", cmd_new, True)
    p.add_argument("--file", required=True, help="rules file ('-': standard input)")
    p.add_argument("--comment", help="what it is for")
    p = sub("clone", "a new draft version from version N", cmd_clone, True)
    p.add_argument("version", type=int)
    p.add_argument("--comment", help="what it is for")
    p = sub("edit", "edit a draft version (--file, else $EDITOR)", cmd_edit, True)
    p.add_argument("version", type=int)
    p.add_argument("--file", help="take the new text from FILE ('-': standard input)")
    p.add_argument("--comment", help="replace the comment")
    p = sub("validate", "check a version or a rules file", cmd_validate)
    p.add_argument("target", metavar="N|FILE")
    p = sub("diff", "unified diff of two versions", cmd_diff)
    p.add_argument("a", type=int)
    p.add_argument("b", type=int)
    p = sub("activate", "make version N active on every worker", cmd_activate, True)
    p.add_argument("version", type=int)
    sub("rollback", "activate the version active before the current one", cmd_rollback, True)
    sub("activations", "the activation log", cmd_activations)
    p = sub("table", "print or change a table / ACL live (no new version)", cmd_table, True)
    p.add_argument("name")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="set an entry")
    p.add_argument("--unset", action="append", metavar="KEY", help="remove an entry")
    p.add_argument("--json", metavar="FILE", help="replace with a JSON object or list")
    p.add_argument("--add-network", action="append", metavar="CIDR", help="add to an ACL")
    p.add_argument("--remove-network", action="append", metavar="CIDR", help="remove from an ACL")
