"""The edge's frozen, validated settings (:class:`EdgeSettings`) and how they are built from the
option table and its sources (:func:`build_edge_settings`), with the checks that span options."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pkgedge.config.options import EDGE_OPTIONS
from pkgedge.config.sources import merge_options, pip_index_url
from pkgedge.config.values import parse_backends, parse_hostport, parse_rate, parse_url
from pkgedge.errors import ConfigError


@dataclass(frozen=True)
class EdgeSettings:
    upstream: str
    backends: dict[str, str]
    listen: str
    admin: str
    admin_token: str
    cache_dir: str
    memory_size: int
    disk_size: int
    memory_object_max: int
    workers: int
    connect_timeout: float
    first_byte_timeout: float
    between_bytes_timeout: float
    upstream_pool_size: int
    default_ttl: float
    access_log: str
    tls_cert: str | None
    tls_key: str | None
    http2: bool
    compress: bool
    header_timeout: float
    body_timeout: float
    send_timeout: float
    idle_timeout: float
    max_connections: int
    max_connections_per_client: int
    max_request_line: int
    max_header_size: int
    max_headers: int
    max_body_size: int
    protection: str
    trusted_proxies: str
    acl_file: str | None
    rate_limit: str
    bot_rate_limit: str
    throttled_rate_limit: str
    origin_cost: float
    max_origin_fetches: int
    grace: float
    grace_immutable: float
    rewrite_file_hosts: bool
    rules: str | None
    stats: bool = True
    downloads_log: str = ""
    downloads_log_max: int = 100_000_000
    stats_database: str = ""
    egress_price_per_gb: float = 0.09
    energy_joules_per_byte: float = 2e-5
    energy_joules_per_request: float = 0.2
    redis: str | None = None
    node_name: str = ""
    shield: str | None = None
    trusted_edges: str = ""
    fallback: str | None = None
    peers: str = ""
    advertise: str = ""
    purge_timeout: float = 5.0

    @property
    def listen_addr(self) -> tuple[str, int]:
        return parse_hostport(self.listen)

    @property
    def admin_addr(self) -> tuple[str, int]:
        return parse_hostport(self.admin)

    def replace(self, **changes: Any) -> EdgeSettings:
        """A new settings object with ``changes`` applied (settings are never mutated)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self, *, redact: bool = True) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in ("grace", "grace_immutable"):  # as the flag spells it (JSON has no inf)
            if data[name] == math.inf:
                data[name] = "unlimited"
        if redact:
            data["admin_token"] = "***"
            url = urlsplit(data["stats_database"])
            if url.password:  # the stats database's password (issue 9)
                netloc = url.netloc.replace(f":{url.password}@", ":***@", 1)
                data["stats_database"] = url._replace(netloc=netloc).geturl()
        return data


def build_edge_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    resolve_upstream: Callable[[], str] = pip_index_url,
) -> EdgeSettings:
    """Merge defaults, file, environment and flags into validated :class:`EdgeSettings`."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get("PKGEDGE_CONFIG")
    values = merge_options(EDGE_OPTIONS, "edge", flags, environ, config_file)
    for name in ("listen", "admin"):
        parse_hostport(values[name])
    if not values["upstream"] and values["shield"]:
        values["upstream"] = values["shield"] + "simple/"  # a shield serves the index there
    if not values["upstream"]:
        values["upstream"] = parse_url(resolve_upstream())
    if not values["admin_token"]:
        values["admin_token"] = secrets.token_urlsafe(24)
    if not values["workers"]:
        values["workers"] = os.cpu_count() or 1
    if values["protection"] not in ("enforce", "observe", "off"):
        raise ConfigError("protection must be enforce, observe or off")
    for name in ("rate_limit", "bot_rate_limit", "throttled_rate_limit"):
        parse_rate(values[name], name)
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise ConfigError("tls_cert and tls_key must be given together")
    values["cache_dir"] = str(Path(values["cache_dir"]).expanduser().resolve())
    if values["redis"] and urlsplit(values["redis"]).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"redis: not a redis:// URL: {values['redis']!r}")
    for cidr in (c.strip() for c in values["trusted_edges"].split(",")):
        try:
            ipaddress.ip_network(cidr, strict=False) if cidr else None
        except ValueError:
            raise ConfigError(f"trusted_edges: not an address or network: {cidr!r}") from None
    if not values["node_name"]:
        values["node_name"] = f"{socket.gethostname()}:{values['cache_dir']}"
    _check_peers(values)
    return EdgeSettings(**values)


def _check_peers(values: dict[str, Any]) -> None:
    """``--peers`` (edge/peers.py): a node list naming this node, or ``redis`` with --redis;
    the peers must trust each other (they pass each other the edge-only fields)."""
    if values["advertise"]:
        values["advertise"] = parse_url(values["advertise"])
    peers = values["peers"].strip()
    values["peers"] = peers
    if not peers:
        return
    if not values["trusted_edges"]:
        raise ConfigError("peers: needs trusted_edges covering the peers' addresses")
    if peers == "redis":
        if not values["redis"]:
            raise ConfigError("peers: 'redis' takes the node list from --redis, which is not set")
        return
    try:
        nodes = parse_backends(peers)
    except ConfigError as exc:
        raise ConfigError(f"peers: expected NAME=URL,... ({exc})") from None
    if values["node_name"] not in nodes:
        raise ConfigError(
            f"peers: this node ({values['node_name']!r}, its --node-name) is not in the list"
        )
