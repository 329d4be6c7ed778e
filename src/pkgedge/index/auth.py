"""Who may write: the API token of a request, and whether its scope covers a project.

Uploads and the yank/delete API take an API token as twine and uv send it (HTTP Basic with
the username ``__token__``) or as a bearer token. Refusals are the plain-text responses the
handlers return as they are: 400 malformed, 401 no token, 403 unknown, revoked or out of scope.
"""

from __future__ import annotations

import base64
import binascii

from starlette.requests import Request
from starlette.responses import Response

from pkgedge.index.catalog import Catalog
from pkgedge.index.model import TokenRow
from pkgedge.index.responses import text

__all__ = ["allowed", "authenticate"]


def authenticate(catalog: Catalog, request: Request) -> TokenRow | Response:
    """The request's token, or the refusal to answer (blocking: call it from a thread)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    secret = ""
    if scheme.lower() == "basic":
        try:
            user, _, secret = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return text(400, "malformed Authorization header")
        if user != "__token__":
            return text(
                403,
                "Invalid or non-existent authentication information: "
                "use the username __token__ and an API token as password",
            )
    elif scheme.lower() == "bearer":
        secret = value.strip()
    if not secret:
        return text(
            401,
            "authentication required: an API token (username __token__)",
            {"WWW-Authenticate": 'Basic realm="pkgedge"'},
        )
    token = catalog.verify_token(secret)
    if token is None:
        return text(
            403,
            "Invalid or non-existent authentication information: "
            "the API token is unknown or revoked",
        )
    return token


def allowed(token: TokenRow, project: str) -> Response | None:
    """None if the token may change ``project`` (normalised), else the 403 to answer."""
    if token.project is not None and token.project != project:
        return text(
            403,
            f"Invalid API Token: this token is scoped to project "
            f"{token.project!r}, not {project!r}",
        )
    return None
