"""Cache-Control (RFC 9111 §5.2) and Surrogate-Control field parsing.

Both fields share one grammar: a comma-separated list of ``token [ "=" ( token /
quoted-string ) ]``. The parser is tolerant: junk members are skipped, a directive that is not a
valid token is dropped, an unterminated quoted string runs to the end of the field, and it never
raises. Per RFC 9111 §4.2.1 the first occurrence of a repeated directive wins.
"""

from __future__ import annotations

import re

__all__ = ["DELTA_SECONDS_MAX", "delta_seconds", "parse_cache_control"]

#: RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2**31

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+", re.ASCII)
_WS = " \t"


def _quoted(value: str, i: int) -> tuple[str, int]:
    """Unquote the quoted-string starting after the opening quote at ``i``; return (text, end)."""
    n = len(value)
    out: list[str] = []
    while i < n:
        c = value[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            i += 1
            c = value[i]
        out.append(c)
        i += 1
    return "".join(out), n


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """``'Max-Age=60, no-cache="a, b", public'`` → ``{"max-age": "60", "no-cache": "a, b",
    "public": None}``. Names are lower-cased; values keep their case."""
    out: dict[str, str | None] = {}
    if not value or not isinstance(value, str):
        return out
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in _WS or value[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        while i < n and value[i] not in "=,":
            i += 1
        name = value[start:i].strip(_WS).lower()
        arg: str | None = None
        if i < n and value[i] == "=":
            i += 1
            while i < n and value[i] in _WS:
                i += 1
            if i < n and value[i] == '"':
                arg, i = _quoted(value, i + 1)
                while i < n and value[i] != ",":  # junk after the closing quote
                    i += 1
            else:
                start = i
                while i < n and value[i] != ",":
                    i += 1
                arg = value[start:i].strip(_WS)
        if name not in out and _TOKEN.fullmatch(name):
            out[name] = arg
    return out


def delta_seconds(value: str | None) -> int | None:
    """A delta-seconds argument (RFC 9111 §1.2.2): non-negative decimal integer, else ``None``.

    Surrounding whitespace is ignored; signs, fractions and non-ASCII digits are rejected; values
    of 2^31 or more are clamped to :data:`DELTA_SECONDS_MAX`.
    """
    if value is None:
        return None
    text = value.strip(_WS)
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > 10:  # avoid huge int() conversions; 10 digits already exceed 2^31
        return DELTA_SECONDS_MAX
    return min(int(significant or "0"), DELTA_SECONDS_MAX)
