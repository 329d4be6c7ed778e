"""The edge's option table: every option once, with its parser, default and one-line doc.

From :data:`EDGE_OPTIONS` come the command-line flags, the ``PKGEDGE_*`` environment
variables, the keys of the ``[edge]`` table of the TOML file and ``pkgedge config show``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pkgedge.config.values import (
    parse_backends,
    parse_bool,
    parse_duration,
    parse_float,
    parse_grace,
    parse_int,
    parse_size,
    parse_str,
    parse_url,
)


@dataclass(frozen=True)
class Option:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    doc: str
    metavar: str = "VALUE"
    section: str = "edge"

    @property
    def env(self) -> str:
        infix = "" if self.section == "edge" else self.section.upper() + "_"
        return "PKGEDGE_" + infix + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


EDGE_OPTIONS: tuple[Option, ...] = (
    Option(
        "upstream", parse_url, None, "upstream index URL (default: pip's configured index)", "URL"
    ),
    Option(
        "backends",
        parse_backends,
        {},
        "other backends the rules may choose, NAME=URL[,NAME=URL...]",
        "NAME=URL,...",
    ),
    Option("listen", parse_str, "127.0.0.1:8080", "client listener HOST:PORT", "HOST:PORT"),
    Option("admin", parse_str, "127.0.0.1:8081", "admin listener HOST:PORT", "HOST:PORT"),
    Option("admin_token", parse_str, None, "admin bearer token (default: generated)", "TOKEN"),
    Option("cache_dir", parse_str, "pkgedge-cache", "directory of the disk tier", "DIR"),
    Option(
        "memory_size", parse_size, parse_size("256MB"), "memory tier size (all workers)", "SIZE"
    ),
    Option("disk_size", parse_size, parse_size("10GB"), "disk tier size", "SIZE"),
    Option(
        "memory_object_max",
        parse_size,
        parse_size("1MB"),
        "largest body kept in the memory tier",
        "SIZE",
    ),
    Option("workers", parse_int, 0, "worker processes (0: one per CPU)", "N"),
    Option("connect_timeout", parse_duration, 5.0, "upstream connect timeout", "SECONDS"),
    Option("first_byte_timeout", parse_duration, 30.0, "upstream first-byte timeout", "SECONDS"),
    Option(
        "between_bytes_timeout", parse_duration, 30.0, "upstream between-bytes timeout", "SECONDS"
    ),
    Option("upstream_pool_size", parse_int, 32, "idle keep-alive connections kept per worker", "N"),
    Option(
        "default_ttl",
        parse_duration,
        0.0,
        "TTL for storable responses without freshness info (0: heuristics only)",
        "SECONDS",
    ),
    Option("access_log", parse_str, "-", "access log path ('-' stdout, 'off' none)", "PATH"),
    Option("tls_cert", parse_str, None, "TLS certificate (PEM) for the client listener", "FILE"),
    Option("tls_key", parse_str, None, "TLS private key (PEM) for the client listener", "FILE"),
    Option("http2", parse_bool, True, "offer HTTP/2 (ALPN h2) on the TLS client listener", "BOOL"),
    Option("compress", parse_bool, True, "gzip/brotli compressible responses", "BOOL"),
    Option("header_timeout", parse_duration, 10.0, "deadline to receive a request head", "SECONDS"),
    Option("body_timeout", parse_duration, 60.0, "deadline to receive a request body", "SECONDS"),
    Option(
        "send_timeout",
        parse_duration,
        60.0,
        "how long a client may leave a response unread",
        "SECONDS",
    ),
    Option("idle_timeout", parse_duration, 75.0, "idle keep-alive connection timeout", "SECONDS"),
    Option("max_connections", parse_int, 10_000, "open client connections per worker", "N"),
    Option(
        "max_connections_per_client",
        parse_int,
        256,
        "open connections per client address per worker",
        "N",
    ),
    Option("max_request_line", parse_size, 8192, "longest request target (414 beyond)", "SIZE"),
    Option("max_header_size", parse_size, 65536, "largest request head (431 beyond)", "SIZE"),
    Option("max_headers", parse_int, 100, "most request header fields (431 beyond)", "N"),
    Option(
        "max_body_size",
        parse_size,
        parse_size("110MiB"),
        "largest request body, i.e. upload (413 beyond)",
        "SIZE",
    ),
    Option(
        "protection",
        parse_str,
        "enforce",
        "abuse protection: enforce, observe (log and count only) or off",
        "MODE",
    ),
    Option(
        "trusted_proxies",
        parse_str,
        "",
        "comma-separated CIDRs whose X-Forwarded-For is believed",
        "CIDRS",
    ),
    Option("acl_file", parse_str, None, "allow/deny list file, reloaded when it changes", "FILE"),
    Option(
        "rate_limit",
        parse_str,
        "200/400",
        "per-client token bucket RATE/BURST; a hit costs 1, an origin fetch more",
        "R/B",
    ),
    Option("bot_rate_limit", parse_str, "10/20", "token bucket for crawlers", "R/B"),
    Option(
        "throttled_rate_limit",
        parse_str,
        "2/20",
        "token bucket for clients a behaviour signal throttles",
        "R/B",
    ),
    Option("origin_cost", parse_float, 10.0, "tokens an origin fetch (miss or pass) costs", "N"),
    Option(
        "max_origin_fetches",
        parse_int,
        64,
        "concurrent origin fetches per worker; beyond: stale or 503",
        "N",
    ),
    Option(
        "grace",
        parse_grace,
        86400.0,
        "serve stale index pages this long past freshness when the origin fails",
        "DURATION|unlimited",
    ),
    Option(
        "grace_immutable",
        parse_grace,
        math.inf,
        "the same grace for files (/files/, /+f/, /packages/)",
        "DURATION|unlimited",
    ),
    Option(
        "rewrite_file_hosts",
        parse_bool,
        True,
        "rewrite absolute file URLs in index pages so files go through the edge",
        "BOOL",
    ),
    Option(
        "rules",
        parse_str,
        None,
        "rules file: validated at start, stored and activated as a new version if it differs",
        "FILE",
    ),
    # issue 9: live stats, savings, download analytics
    Option("stats", parse_bool, True, "live stats, rollups and download analytics", "BOOL"),
    Option(
        "downloads_log",
        parse_str,
        "",
        "JSON-lines log of file downloads (default CACHE_DIR/stats/downloads.jsonl; 'off')",
        "PATH",
    ),
    Option("downloads_log_max", parse_size, parse_size("100MB"), "rotate it at", "SIZE"),
    Option(
        "stats_database",
        parse_str,
        "",
        "database of download aggregates (default SQLite in CACHE_DIR/stats; postgresql://...)",
        "URL",
    ),
    Option("egress_price_per_gb", parse_float, 0.09, "origin egress price per GB", "PRICE"),
    Option("energy_joules_per_byte", parse_float, 2e-5, "energy per byte moved", "JOULES"),
    Option("energy_joules_per_request", parse_float, 0.2, "origin energy per request", "JOULES"),
    # -- many nodes (issue 10): pkgedge.cluster, edge/shield.py, edge/director.py ----------
    Option("redis", parse_str, None, "Redis URL shared by the nodes (purges, limits)", "URL"),
    Option("node_name", parse_str, "", "name in Redis (default: host:cache dir)", "NAME"),
    Option("shield", parse_url, None, "send misses to this shield node (a pkgedge edge)", "URL"),
    Option(
        "trusted_edges",
        parse_str,
        "",
        "comma-separated CIDRs of edges this shield trusts (their clients' identity)",
        "CIDRS",
    ),
    Option("fallback", parse_url, None, "fallback index URL when the upstream fails", "URL"),
    Option(
        "purge_timeout", parse_duration, 5.0, "how long a purge waits for every node", "SECONDS"
    ),
    Option(
        "peers",
        parse_str,
        "",
        "this tier's nodes, one fetch per object (rendezvous): NAME=URL,... or redis",
        "NODES",
    ),
    Option("advertise", parse_str, "", "URL the other nodes reach this one at (--peers)", "URL"),
)
