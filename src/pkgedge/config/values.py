"""Parsers of option values: sizes, durations, rates, addresses, URLs, named backends, and
the plain types. Each takes what a flag, the environment or the TOML file gave and returns the
typed value, or raises :class:`~pkgedge.errors.ConfigError` saying what was expected."""

from __future__ import annotations

import math
import re
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


def parse_url(value: str) -> str:
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
        out[name] = parse_url(str(url).strip())
    return out


def parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


def parse_int(value: str | int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a whole number: {value!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {value!r}")
    return n


def parse_float(value: str | float) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a number: {value!r}") from None
    if n < 0:
        raise ConfigError(f"must not be negative: {value!r}")
    return n


def parse_str(value: str) -> str:
    return str(value)
