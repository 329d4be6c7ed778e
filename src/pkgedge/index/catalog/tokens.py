"""Upload tokens: made, verified, revoked and listed by the catalog.

A token's secret (``pkgedge-…``) is shown once, when it is made; the catalog keeps only its
sha256, so a copy of the database gives no secret away, and a secret is looked up by its hash.
A token is scoped to one project or to all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import replace
from typing import Final

from packaging.utils import canonicalize_name

from pkgedge.index.catalog.db import Database, new_id, utcnow
from pkgedge.index.catalog.queries import TOKENS
from pkgedge.index.model import TokenRow
from pkgedge.index.tables import tokens

__all__ = ["TOKEN_PREFIX", "CatalogTokens"]

TOKEN_PREFIX: Final = "pkgedge-"


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class CatalogTokens(Database):
    """The token part of :class:`~pkgedge.index.catalog.Catalog`."""

    def create_token(self, description: str, project: str | None = None) -> tuple[TokenRow, str]:
        """A new upload token for one project (any project if None). The secret
        (``pkgedge-…``) is returned only here: the catalog keeps its sha256."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scope = None if project is None else canonicalize_name(project)
        now = utcnow()
        with self._tx(write=True) as conn:
            result = conn.execute(
                tokens.insert().values(
                    description=description, project=scope, created=now,
                    secret_hash=_hash_secret(secret),
                )
            )  # fmt: skip
            token_id = new_id(result)
        return TokenRow(token_id, description, scope, now), secret

    def verify_token(self, secret: str) -> TokenRow | None:
        """The token of this secret, or None (unknown or revoked); records its use. The secret
        is looked up by its hash, so the lookup's timing says nothing about the secret."""
        digest = _hash_secret(secret)
        query = TOKENS.add_columns(tokens.c.secret_hash).where(tokens.c.secret_hash == digest)
        with self._tx() as conn:
            row = conn.execute(query).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            return None
        token = TokenRow(*row[:-1])
        if token.revoked:
            return None
        now = utcnow()
        with self._tx(write=True) as conn:
            conn.execute(tokens.update().where(tokens.c.id == token.id).values(last_used=now))
        return replace(token, last_used=now)

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token (idempotent); False if there is no such token."""
        with self._tx(write=True) as conn:
            query = tokens.update().where(tokens.c.id == token_id).values(revoked=True)
            return bool(conn.execute(query).rowcount)

    def list_tokens(self) -> list[TokenRow]:
        return self._all(TOKENS.order_by(tokens.c.id), TokenRow)
