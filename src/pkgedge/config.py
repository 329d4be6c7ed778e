"""Frozen, validated settings for the edge.

One table (:data:`EDGE_OPTIONS`) declares every option once: its type, default and a one-line
doc. From it come the command-line flags, the ``PKGEDGE_*`` environment variables, the keys of
the ``[edge]`` table of the TOML file, and ``pkgedge config show``. Precedence, highest first:
flag, environment, file, default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pkgedge.errors import ConfigError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_size(value: str | int) -> int:
    """``"256MB"`` → 256_000_000, ``"1GiB"`` → 1_073_741_824, ``123`` → 123."""
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"size must not be negative: {value}")
        return value
    m = _SIZE_RE.match(value)
    if not m:
        raise ConfigError(f"not a size: {value!r} (examples: 512MB, 10GB, 1GiB, 4096)")
    number, unit = float(m.group(1)), (m.group(2) or "").lower()
    letter = unit[:1] if unit[:1] in "kmgt" and unit else ""
    mult = 1024 ** ("kmgt".index(letter) + 1) if letter and "i" in unit else _UNITS[letter]
    return int(number * mult)


def parse_duration(value: str | float | int) -> float:
    """``"30s"``, ``"5m"``, ``"250ms"`` or a number of seconds."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"duration must not be negative: {value}")
        return float(value)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", value)
    if not m:
        raise ConfigError(f"not a duration: {value!r} (examples: 500ms, 30s, 5m)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_grace(value: str | float | int) -> float:
    """A duration (``"24h"``, ``"2d"``, seconds) or ``"unlimited"`` (``math.inf``)."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("unlimited", "inf", "forever"):
            return math.inf
        if low.endswith("d") and low[:-1].strip().replace(".", "", 1).isdigit():
            return float(low[:-1]) * 86400.0
    return parse_duration(value)


def parse_rate(value: str, name: str = "rate") -> tuple[float, float]:
    """``"200/400"`` → (200.0 tokens per second, burst 400.0)."""
    rate, sep, burst = value.partition("/")
    try:
        r, b = float(rate), float(burst if sep else rate)
    except ValueError:
        raise ConfigError(f"{name}: not RATE/BURST: {value!r}") from None
    if r <= 0 or b <= 0:
        raise ConfigError(f"{name}: RATE and BURST must be positive: {value!r}")
    return r, b


def parse_hostport(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` / ``"[::1]:80"`` / ``":8080"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"not a HOST:PORT address: {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _parse_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not an http(s) URL: {value!r}")
    return value if value.endswith("/") else value + "/"


def parse_backends(value: str | dict[str, str]) -> dict[str, str]:
    """``"mirror=http://10.0.0.2/simple/,archive=http://..."`` (or a TOML table) → names to
    index URLs. ``origin`` is the upstream's own name and cannot be redefined."""
    items = (
        value.items()
        if isinstance(value, dict)
        else (part.partition("=")[::2] for part in str(value).split(",") if part.strip())
    )
    out: dict[str, str] = {}
    for raw, url in items:
        name = str(raw).strip()
        if not name.replace("_", "").replace("-", "").isalnum() or name == "origin":
            raise ConfigError(f"backends: {name!r} is not a usable backend name")
        out[name] = _parse_url(str(url).strip())
    return out


def _parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def _parse_int(value: str | int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {value!r}")
    return n


def _parse_float(value: str | float) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a number: {value!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {value!r}")
    return n


def _parse_str(value: str) -> str:
    return str(value)


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
        "upstream", _parse_url, None, "upstream index URL (default: pip's configured index)", "URL"
    ),
    Option(
        "backends",
        parse_backends,
        {},
        "other backends the rules may choose, NAME=URL[,NAME=URL...]",
        "NAME=URL,...",
    ),
    Option("listen", _parse_str, "127.0.0.1:8080", "client listener HOST:PORT", "HOST:PORT"),
    Option("admin", _parse_str, "127.0.0.1:8081", "admin listener HOST:PORT", "HOST:PORT"),
    Option("admin_token", _parse_str, None, "admin bearer token (default: generated)", "TOKEN"),
    Option("cache_dir", _parse_str, "pkgedge-cache", "directory of the disk tier", "DIR"),
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
    Option("workers", _parse_int, 0, "worker processes (0: one per CPU)", "N"),
    Option("connect_timeout", parse_duration, 5.0, "upstream connect timeout", "SECONDS"),
    Option("first_byte_timeout", parse_duration, 30.0, "upstream first-byte timeout", "SECONDS"),
    Option(
        "between_bytes_timeout", parse_duration, 30.0, "upstream between-bytes timeout", "SECONDS"
    ),
    Option(
        "upstream_pool_size", _parse_int, 32, "idle keep-alive connections kept per worker", "N"
    ),
    Option(
        "default_ttl",
        parse_duration,
        0.0,
        "TTL for storable responses without freshness info (0: heuristics only)",
        "SECONDS",
    ),
    Option("access_log", _parse_str, "-", "access log path ('-' stdout, 'off' none)", "PATH"),
    Option("tls_cert", _parse_str, None, "TLS certificate (PEM) for the client listener", "FILE"),
    Option("tls_key", _parse_str, None, "TLS private key (PEM) for the client listener", "FILE"),
    Option("http2", _parse_bool, True, "offer HTTP/2 (ALPN h2) on the TLS client listener", "BOOL"),
    Option("compress", _parse_bool, True, "gzip/brotli compressible responses", "BOOL"),
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
    Option("max_connections", _parse_int, 10_000, "open client connections per worker", "N"),
    Option(
        "max_connections_per_client",
        _parse_int,
        256,
        "open connections per client address per worker",
        "N",
    ),
    Option("max_request_line", parse_size, 8192, "longest request target (414 beyond)", "SIZE"),
    Option("max_header_size", parse_size, 65536, "largest request head (431 beyond)", "SIZE"),
    Option("max_headers", _parse_int, 100, "most request header fields (431 beyond)", "N"),
    Option(
        "max_body_size",
        parse_size,
        parse_size("110MiB"),
        "largest request body, i.e. upload (413 beyond)",
        "SIZE",
    ),
    Option(
        "protection",
        _parse_str,
        "enforce",
        "abuse protection: enforce, observe (log and count only) or off",
        "MODE",
    ),
    Option(
        "trusted_proxies",
        _parse_str,
        "",
        "comma-separated CIDRs whose X-Forwarded-For is believed",
        "CIDRS",
    ),
    Option("acl_file", _parse_str, None, "allow/deny list file, reloaded when it changes", "FILE"),
    Option(
        "rate_limit",
        _parse_str,
        "200/400",
        "per-client token bucket RATE/BURST; a hit costs 1, an origin fetch more",
        "R/B",
    ),
    Option("bot_rate_limit", _parse_str, "10/20", "token bucket for crawlers", "R/B"),
    Option(
        "throttled_rate_limit",
        _parse_str,
        "2/20",
        "token bucket for clients a behaviour signal throttles",
        "R/B",
    ),
    Option("origin_cost", _parse_float, 10.0, "tokens an origin fetch (miss or pass) costs", "N"),
    Option(
        "max_origin_fetches",
        _parse_int,
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
        _parse_bool,
        True,
        "rewrite absolute file URLs in index pages so files go through the edge",
        "BOOL",
    ),
    Option(
        "rules",
        _parse_str,
        None,
        "rules file: validated at start, stored and activated as a new version if it differs",
        "FILE",
    ),
    # issue 9: live stats, savings, download analytics
    Option("stats", _parse_bool, True, "live stats, rollups and download analytics", "BOOL"),
    Option(
        "downloads_log",
        _parse_str,
        "",
        "JSON-lines log of file downloads (default CACHE_DIR/stats/downloads.jsonl; 'off')",
        "PATH",
    ),
    Option("downloads_log_max", parse_size, parse_size("100MB"), "rotate it at", "SIZE"),
    Option(
        "stats_database",
        _parse_str,
        "",
        "database of download aggregates (default SQLite in CACHE_DIR/stats; postgresql://...)",
        "URL",
    ),
    Option("egress_price_per_gb", _parse_float, 0.09, "origin egress price per GB", "PRICE"),
    Option("energy_joules_per_byte", _parse_float, 2e-5, "energy per byte moved", "JOULES"),
    Option("energy_joules_per_request", _parse_float, 0.2, "origin energy per request", "JOULES"),
    # -- many nodes (issue 10): pkgedge.cluster, edge/shield.py, edge/director.py ----------
    Option("redis", _parse_str, None, "Redis URL shared by the nodes (purges, limits)", "URL"),
    Option("node_name", _parse_str, "", "name in Redis (default: host:cache dir)", "NAME"),
    Option("shield", _parse_url, None, "send misses to this shield node (a pkgedge edge)", "URL"),
    Option(
        "trusted_edges",
        _parse_str,
        "",
        "comma-separated CIDRs of edges this shield trusts (their clients' identity)",
        "CIDRS",
    ),
    Option("fallback", _parse_url, None, "fallback index URL when the upstream fails", "URL"),
    Option(
        "purge_timeout", parse_duration, 5.0, "how long a purge waits for every node", "SECONDS"
    ),
    Option(
        "peers",
        _parse_str,
        "",
        "this tier's nodes, one fetch per object (rendezvous): NAME=URL,... or redis",
        "NODES",
    ),
    Option("advertise", _parse_str, "", "URL the other nodes reach this one at (--peers)", "URL"),
)


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


def pip_index_url() -> str:
    """The index pip on this machine is configured to use.

    Reads ``PIP_INDEX_URL``, then ``pip config get global.index-url``, then pip's own built-in
    default, so that no registry address is written in pkgedge itself.
    """
    env = os.environ.get("PIP_INDEX_URL")
    if env:
        return env
    for key in ("global.index-url", "install.index-url"):
        try:
            out = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", key],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            break
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    try:
        from pip._internal.models.index import PyPI  # pip's own default index

        return str(PyPI.simple_url)
    except Exception as exc:  # pip missing or its internals moved
        raise ConfigError("no --upstream given and pip's index could not be determined") from exc


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None


#: The tables of the TOML file: ``[edge]`` (:data:`EDGE_OPTIONS`), ``[origin]``
#: (``pkgedge.index.settings``) and ``[up]`` (``pkgedge.up``). Any other table is refused.
KNOWN_TABLES = ("edge", "origin", "up")


def _check_tables(data: Mapping[str, Any], config_file: str) -> None:
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k not in KNOWN_TABLES)
    if unknown:
        raise ConfigError(
            f"config file {config_file}: unknown table(s): {', '.join(unknown)} "
            f"(known: {', '.join(KNOWN_TABLES)})"
        )
    stray = sorted(k for k, v in data.items() if not isinstance(v, dict))
    if stray:
        raise ConfigError(
            f"config file {config_file}: key(s) outside any table: {', '.join(stray)} "
            f"(put them under [{'], ['.join(KNOWN_TABLES)}])"
        )


def merge_options(
    options: tuple[Option, ...],
    section: str,
    flags: Mapping[str, Any] | None,
    environ: Mapping[str, str],
    config_file: str | None,
) -> dict[str, Any]:
    """Values for ``options`` from defaults, the ``[section]`` table, environment and flags."""
    flags = dict(flags or {})
    file_values: dict[str, Any] = {}
    if config_file:
        data = read_toml(config_file)
        tables = any(isinstance(v, dict) for v in data.values())
        if tables:
            _check_tables(data, config_file)
        flat = section == "edge" and not tables
        table = data if flat else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config file {config_file}: [{section}] must be a table")
        file_values = table
        known = {o.name for o in options}
        unknown = sorted(
            k
            for k in (k.replace("-", "_") for k in file_values)
            if k not in known and not isinstance(file_values.get(k), dict)
        )
        if unknown:
            raise ConfigError(f"config file {config_file}: unknown option(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for opt in options:
        raw: Any = opt.default
        source = "default"
        fv = file_values.get(opt.name, file_values.get(opt.name.replace("_", "-")))
        if fv is not None:
            raw, source = fv, f"config file {config_file}"
        if environ.get(opt.env) not in (None, ""):
            raw, source = environ[opt.env], f"environment {opt.env}"
        if flags.get(opt.name) is not None:
            raw, source = flags[opt.name], f"flag {opt.flag}"
        if raw is None or source == "default":
            values[opt.name] = raw
            continue
        try:
            values[opt.name] = opt.parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return values


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
        values["upstream"] = _parse_url(resolve_upstream())
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
        values["advertise"] = _parse_url(values["advertise"])
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
