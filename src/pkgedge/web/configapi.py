"""The admin API of configuration versions and live tables (token-protected).

====================================  ==========================================================
``GET /config/versions``              every version: number, status, created, author, parent,
                                      comment
``GET /config/versions/N``            one version, with its ``source``
``POST /config/versions``             a new draft: JSON ``{"source": TEXT}`` or ``{"clone": N}``
                                      (and ``comment``, ``author``), or the text itself
``PUT /config/versions/N``            replace a draft's source (JSON ``{"source"}`` or text);
                                      409 for a version that is or was active
``POST /config/versions/N/validate``  200 ``{"ok": true}`` or 422 with the diagnostics
``GET /config/diff?a=A&b=B``          a unified diff (text)
``POST /config/activate``             ``{"version": N}``: 422 with the diagnostics if N does not
                                      compile; every worker runs N within a second
``POST /config/rollback``             activate the version active before the current one
``GET /config/activations``           the activation log
``GET /config/tables``                the active version's tables and ACLs as they are live
``GET|PUT /config/tables/NAME``       one of them; PUT a JSON object (table) or list (ACL)
``GET /config/running``               what the worker that answers runs (pid, version, serial)
====================================  ==========================================================

Errors are plain text with the reason. The author recorded is the body's ``author``, else
``admin API (ADDRESS)``. File work and compiling run in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pkgedge.edge.versions import VersionError, VersionStore
from pkgedge.errors import PkgedgeError
from pkgedge.rules import RulesError, TableError

if TYPE_CHECKING:
    from pkgedge.edge.context import Client
    from pkgedge.edge.rulewatch import RulesWatcher
    from pkgedge.http.request import Request
    from pkgedge.web.admin import AdminHandler

__all__ = ["ConfigApi"]

_Answer = tuple[int, Any]  # (status, JSON-able value, or str for text)


class _BadRequest(PkgedgeError, ValueError):
    status = 400


def _number(text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise VersionError(f"not a version number: {text!r}", 404)
    return int(text)


def _json(req: Request) -> Any:
    try:
        return json.loads(req.body or b"{}")
    except ValueError:
        raise _BadRequest("the body must be JSON") from None


def _source_and_meta(req: Request) -> dict[str, Any]:
    """A JSON object, or (any other content type) the rules text itself."""
    if req.map.get("content-type", "").partition(";")[0].strip() == "application/json":
        data = _json(req)
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object")
        return data
    try:
        return {"source": (req.body or b"").decode("utf-8")}
    except UnicodeDecodeError:
        raise _BadRequest("the rules text must be UTF-8") from None


class ConfigApi:
    def __init__(self, admin: AdminHandler, store: VersionStore, watcher: RulesWatcher) -> None:
        self.admin = admin
        self.store = store
        self.watcher = watcher

    def register(self) -> None:
        route = self.admin.route
        route("/config/versions", self._wrap(self.versions))
        route("/config/versions/", self._wrap(self.version))
        route("/config/diff", self._wrap(self.diff))
        route("/config/activate", self._wrap(self.activate))
        route("/config/rollback", self._wrap(self.rollback))
        route("/config/activations", self._wrap(self.activations))
        route("/config/tables", self._wrap(self.tables))
        route("/config/tables/", self._wrap(self.table))
        route("/config/running", self._wrap(self.running))

    def _wrap(
        self, fn: Callable[[Request, str], _Answer]
    ) -> Callable[[Request, Client], Awaitable[None]]:
        async def handler(req: Request, client: Client) -> None:
            path = req.target.partition("?")[0]
            try:
                status, value = await asyncio.to_thread(fn, req, path)
            except RulesError as exc:
                status, value = 422, f"the configuration does not compile:\n{exc}"
            except TableError as exc:
                status, value = 400, str(exc)
            except (VersionError, _BadRequest) as exc:
                status, value = exc.status, str(exc)
            except PkgedgeError as exc:
                status, value = 500, str(exc)
            except OSError as exc:
                status, value = 500, f"configuration store: {exc.strerror or exc}"
            if isinstance(value, str):
                ctype = "text/plain; charset=utf-8"
                if status >= 400:
                    self.admin.reply(client, req, status, value.encode())
                    return
                self.admin.reply(client, req, status, value.encode(), ctype)
            else:
                self.admin.reply(client, req, status, json.dumps(value, indent=1).encode())

        return handler

    @staticmethod
    def _method(req: Request, *allowed: str) -> None:
        if req.method not in allowed:
            raise VersionError(f"use {' or '.join(allowed)}", 405)

    @staticmethod
    def _author(req: Request, data: Any = None) -> str:
        if isinstance(data, dict) and isinstance(data.get("author"), str) and data["author"]:
            return str(data["author"])[:200]
        return f"admin API ({req.client})"

    # -- versions -----------------------------------------------------------------------------
    def versions(self, req: Request, path: str) -> _Answer:
        if req.method in ("GET", "HEAD"):
            return 200, {"active": self.store.active(), "versions": self.store.listing()}
        self._method(req, "GET", "POST")
        data = _source_and_meta(req)
        author, comment = self._author(req, data), str(data.get("comment") or "")
        if data.get("clone") is not None:
            source = data["clone"]
            number = self.store.clone(_number(str(source)), author, comment)
        elif isinstance(data.get("source"), str):
            number = self.store.create(data["source"], author, comment)
        else:
            raise _BadRequest('give {"source": TEXT} or {"clone": N}')
        return 201, self._one(number)

    def _one(self, number: int) -> dict[str, Any]:
        version = self.store.get(number)
        return dict(version.meta(), status=self.store.status(number), source=version.source)

    def version(self, req: Request, path: str) -> _Answer:
        rest = path.removeprefix("/config/versions/").strip("/")
        num, _, action = rest.partition("/")
        number = _number(num)
        if action == "validate":
            self._method(req, "POST", "GET")
            self.store.compile(self.store.get(number).source, number)
            return 200, {"version": number, "ok": True}
        if action:
            raise VersionError("no such admin endpoint", 404)
        if req.method == "PUT":
            data = _source_and_meta(req)
            if not isinstance(data.get("source"), str):
                raise _BadRequest('give {"source": TEXT} or the text itself')
            comment = data.get("comment")
            self.store.edit(
                number,
                data["source"],
                self._author(req, data),
                None if comment is None else str(comment),
            )
            return 200, self._one(number)
        self._method(req, "GET", "HEAD", "PUT")
        return 200, self._one(number)

    def diff(self, req: Request, path: str) -> _Answer:
        self._method(req, "GET", "HEAD")
        query = parse_qs(req.target.partition("?")[2])
        a, b = query.get("a", [""])[0], query.get("b", [""])[0]
        if not a or not b:
            raise _BadRequest("give two versions: /config/diff?a=A&b=B")
        return 200, self.store.diff(_number(a), _number(b))

    def activate(self, req: Request, path: str) -> _Answer:
        self._method(req, "POST")
        data = _json(req)
        if not isinstance(data, dict) or data.get("version") is None:
            raise _BadRequest('give {"version": N}')
        old, new = self.store.activate(_number(str(data["version"])), self._author(req, data))
        return 200, {"from": old, "to": new}

    def rollback(self, req: Request, path: str) -> _Answer:
        self._method(req, "POST")
        data = _json(req) if req.body else {}
        old, new = self.store.rollback(self._author(req, data))
        return 200, {"from": old, "to": new}

    def activations(self, req: Request, path: str) -> _Answer:
        self._method(req, "GET", "HEAD")
        return 200, self.store.activations()

    # -- tables -------------------------------------------------------------------------------
    def tables(self, req: Request, path: str) -> _Answer:
        self._method(req, "GET", "HEAD")
        number = self.store.active()
        return 200, {"version": number, "tables": self.store.tables(number)}

    def table(self, req: Request, path: str) -> _Answer:
        name = path.removeprefix("/config/tables/").strip("/")
        if req.method == "PUT":
            data = _json(req)
            if not isinstance(data, dict | list):
                raise _BadRequest("a table is a JSON object, an ACL a JSON list")
            number = self.store.set_table(name, data, self._author(req))
            return 200, {"version": number, "table": name, "entries": len(data)}
        self._method(req, "GET", "HEAD", "PUT")
        live = self.store.tables()
        if name not in live:
            raise VersionError(f"no table or acl named {name!r} in the active version", 404)
        return 200, live[name]

    def running(self, req: Request, path: str) -> _Answer:
        self._method(req, "GET", "HEAD")
        ruleset = self.watcher.pipeline.ruleset
        return 200, {
            "pid": os.getpid(),
            "version": ruleset.version,
            "serial": self.watcher.serial,
            "tables_version": ruleset.tables.version,
            "tables": {  # contents up to 1000 entries, else their number
                name: len(value)
                if len(value) > 1000
                else value
                if isinstance(value, dict)
                else [str(n) for n in value.networks]
                for name, value in ruleset.tables.current.items()
            },
        }
