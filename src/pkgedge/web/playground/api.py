"""The playground on the admin listener.

- ``GET /playground``: the page (public: it asks for the admin token and sends it as a
  bearer header on every call below; no third-party assets).
- ``POST /playground/check`` ``{"config": "..."}`` → ``{"diagnostics": [...]}``: the compile
  errors the editor marks as one types.
- ``POST /playground/run`` (a playground document) → the run's results
  (:func:`pkgedge.web.playground.engine.run_doc`).
- ``POST /playground/save`` (a document) → ``{"id", "url"}``; ``GET /playground/saved/ID``
  → the document (:class:`pkgedge.web.playground.saved.SavedPlaygrounds`).

Every run builds its own isolated edge; at most :data:`MAX_RUNS` run at once per worker
(beyond: 503 with Retry-After). Bad input is a 400 naming the problem.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

from pkgedge.config import EdgeSettings
from pkgedge.edge.context import Client
from pkgedge.http.response import error_response
from pkgedge.rules import RulesError
from pkgedge.web.admin import AdminHandler
from pkgedge.web.playground.doc import MAX_CONFIG, Doc, PlaygroundError, parse_doc
from pkgedge.web.playground.engine import compile_draft, diagnostics, run_doc
from pkgedge.web.playground.saved import SavedPlaygrounds

if TYPE_CHECKING:
    from pkgedge.http.request import Request

MAX_RUNS = 2
#: The page may talk to this listener only; inline script and style are its own.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def page_html() -> bytes:
    return resources.files("pkgedge.web.playground").joinpath("page.html").read_bytes()


class PlaygroundApi:
    def __init__(self, admin: AdminHandler, settings: EdgeSettings) -> None:
        self.admin = admin
        self.settings = settings
        self.saved = SavedPlaygrounds(settings.cache_dir)
        self.running = 0

    def register(self) -> None:
        route = self.admin.route
        route("/playground", self.page, public=True)
        route("/playground/check", self.check)
        route("/playground/run", self.run)
        route("/playground/save", self.save)
        route("/playground/saved/", self.load)

    # -- helpers -------------------------------------------------------------------------
    def _json(self, client: Client, req: Request, data: Any, status: int = 200) -> None:
        self.admin.reply(client, req, status, json.dumps(data).encode())

    def _error(self, client: Client, req: Request, status: int, reason: str) -> None:
        extra = [("allow", "POST")] if status == 405 else []
        client.write(error_response(status, reason, close=not req.keep_alive, extra=extra))

    def _body(self, client: Client, req: Request) -> tuple[bool, Any]:
        """(True, decoded JSON body), or (False, None) once the error is answered."""
        if req.method != "POST":
            self._error(client, req, 405, "use POST with a JSON body")
            return False, None
        try:
            return True, json.loads(req.body)
        except ValueError:
            self._error(client, req, 400, "body must be JSON")
            return False, None

    def _doc(self, client: Client, req: Request) -> Doc | None:
        ok, data = self._body(client, req)
        if not ok:
            return None
        try:
            return parse_doc(data)
        except PlaygroundError as exc:
            self._error(client, req, 400, str(exc))
            return None

    # -- endpoints -----------------------------------------------------------------------
    async def page(self, req: Request, client: Client) -> None:
        if req.method not in ("GET", "HEAD"):
            self._error(client, req, 405, "use GET")
            return
        self.admin.reply(
            client,
            req,
            200,
            page_html(),
            "text/html; charset=utf-8",
            [("content-security-policy", CSP), ("x-content-type-options", "nosniff")],
        )

    async def check(self, req: Request, client: Client) -> None:
        ok, data = self._body(client, req)
        if not ok:
            return
        config = data.get("config") if isinstance(data, dict) else None
        if not isinstance(config, str) or len(config) > MAX_CONFIG:
            self._error(client, req, 400, f"config must be a string of at most {MAX_CONFIG}")
            return
        try:
            await asyncio.to_thread(compile_draft, config, self.settings)
            found: list[dict[str, Any]] = []
        except RulesError as exc:
            found = diagnostics(exc)
        self._json(client, req, {"diagnostics": found})

    async def run(self, req: Request, client: Client) -> None:
        doc = self._doc(client, req)
        if doc is None:
            return
        if self.running >= MAX_RUNS:
            client.write(
                error_response(
                    503,
                    f"{MAX_RUNS} playground runs in progress here; try again",
                    close=not req.keep_alive,
                    extra=[("retry-after", "1")],
                )
            )
            return
        self.running += 1
        try:
            result = await run_doc(doc, self.settings)
        finally:
            self.running -= 1
        self._json(client, req, result)

    async def save(self, req: Request, client: Client) -> None:
        doc = self._doc(client, req)
        if doc is None:
            return
        try:
            ident = self.saved.save(doc)
        except OSError as exc:
            self._error(client, req, 500, f"cannot store the playground: {exc.strerror or exc}")
            return
        self._json(client, req, {"id": ident, "url": f"/playground?id={ident}"})

    async def load(self, req: Request, client: Client) -> None:
        if req.method not in ("GET", "HEAD"):
            self._error(client, req, 405, "use GET")
            return
        ident = req.target.partition("?")[0].rpartition("/")[2]
        try:
            data = self.saved.load(ident)
        except (ValueError, PlaygroundError) as exc:
            self._error(client, req, 500, f"saved playground {ident} is damaged: {exc}")
            return
        if data is None:
            self._error(client, req, 404, f"no saved playground {ident!r}")
            return
        self._json(client, req, data)


def register_playground(admin: AdminHandler, settings: EdgeSettings) -> PlaygroundApi:
    """Add the playground's endpoints to an admin listener."""
    api = PlaygroundApi(admin, settings)
    api.register()
    return api
