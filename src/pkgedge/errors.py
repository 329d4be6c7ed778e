"""The one exception root of pkgedge, shaped by what callers catch.

Every error a caller may want to handle derives from :class:`PkgedgeError`; stdlib bases are
mixed in so that ``except ValueError`` / ``except TimeoutError`` keep working. HTTP-facing errors
carry ``status`` so the server can turn them into a plain-text answer.
"""

from __future__ import annotations


class PkgedgeError(Exception):
    """Root of every pkgedge exception."""

    status: int = 500


class ConfigError(PkgedgeError, ValueError):
    """Invalid configuration (file, flag or environment variable)."""


class HTTPError(PkgedgeError):
    """A request that must be answered with an error status and a plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class UpstreamError(PkgedgeError, ConnectionError):
    """The upstream could not be reached or answered with something unusable."""

    status = 502


class UpstreamTimeout(UpstreamError, TimeoutError):
    """Connect, first-byte or between-bytes timeout talking to the upstream."""

    status = 504


class StoreError(PkgedgeError, OSError):
    """The cache store could not read or write an object."""
