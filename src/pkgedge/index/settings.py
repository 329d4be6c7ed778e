"""Frozen settings of the origin (the ``[origin]`` table, ``PKGEDGE_ORIGIN_*``, flags)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pkgedge.config import (
    Option,
    merge_options,
    parse_duration,
    parse_hostport,
    parse_size,
    pip_index_url,
)
from pkgedge.errors import ConfigError


def _str(value: Any) -> str:
    return str(value)


def _upstream(value: Any) -> str:
    text = str(value).strip()
    if text.lower() in ("off", "none", ""):
        return "off"
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"not an http(s) URL (or 'off'): {text!r}")
    return text if text.endswith("/") else text + "/"


ORIGIN_OPTIONS: tuple[Option, ...] = (
    Option("listen", _str, "127.0.0.1:8090", "origin listener HOST:PORT", "HOST:PORT", "origin"),
    Option("data_dir", _str, "pkgedge-data", "catalog and files directory", "DIR", "origin"),
    Option(
        "database",
        _str,
        None,
        "catalog URL (default: sqlite:///DATA_DIR/catalog.db; "
        "postgresql+psycopg://... for PostgreSQL)",
        "URL",
        "origin",
    ),
    Option(
        "storage",
        _str,
        None,
        "blob storage: a path (default DATA_DIR/files) or s3://bucket/prefix?endpoint=URL",
        "URL",
        "origin",
    ),
    Option(
        "upstream",
        _upstream,
        None,
        "index to mirror for projects not hosted here "
        "(default: pip's configured index; 'off' to disable)",
        "URL",
        "origin",
    ),
    Option(
        "edge_admin", _str, None, "admin URL of the edge to purge after changes", "URL", "origin"
    ),
    Option("edge_admin_token", _str, None, "the edge's admin token", "TOKEN", "origin"),
    Option(
        "max_upload_size",
        parse_size,
        parse_size("100MiB"),
        "largest accepted file",
        "SIZE",
        "origin",
    ),
    Option(
        "edge_ttl",
        parse_duration,
        86400.0,
        "edge TTL of index pages (Surrogate-Control)",
        "SECONDS",
        "origin",
    ),
    Option(
        "client_ttl",
        parse_duration,
        600.0,
        "client TTL of index pages (Cache-Control)",
        "SECONDS",
        "origin",
    ),
    Option(
        "mirror_ttl",
        parse_duration,
        600.0,
        "freshness of mirrored pages when the upstream gives none",
        "SECONDS",
        "origin",
    ),
    Option(
        "base_url",
        _str,
        None,
        "public base URL of the index (for links in the JSON API)",
        "URL",
        "origin",
    ),
    Option(
        "access_log",
        _str,
        "off",
        "access log, one line per request ('off', '-' stdout, or a file path)",
        "PATH",
        "origin",
    ),
)


@dataclass(frozen=True)
class OriginSettings:
    listen: str
    data_dir: str
    database: str
    storage: str
    upstream: str  # "off" or a URL
    edge_admin: str | None
    edge_admin_token: str | None
    max_upload_size: int
    edge_ttl: float
    client_ttl: float
    mirror_ttl: float
    base_url: str | None
    access_log: str = "off"

    @property
    def listen_addr(self) -> tuple[str, int]:
        return parse_hostport(self.listen)

    @property
    def mirroring(self) -> bool:
        return self.upstream != "off"

    def replace(self, **changes: Any) -> OriginSettings:
        return dataclasses.replace(self, **changes)

    def as_dict(self, *, redact: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if redact and data["edge_admin_token"]:
            data["edge_admin_token"] = "***"
        return data


def build_origin_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    resolve_upstream: Callable[[], str] = pip_index_url,
) -> OriginSettings:
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("PKGEDGE_CONFIG")
    values = merge_options(ORIGIN_OPTIONS, "origin", flags, environ, config_file)
    parse_hostport(values["listen"])
    data_dir = Path(values["data_dir"]).expanduser().resolve()
    values["data_dir"] = str(data_dir)
    if not values["database"]:
        values["database"] = f"sqlite:///{data_dir / 'catalog.db'}"
    if not values["storage"]:
        values["storage"] = str(data_dir / "files")
    if values["upstream"] is None:
        values["upstream"] = _upstream(resolve_upstream())
    return OriginSettings(**values)
