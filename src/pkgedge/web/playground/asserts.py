"""Assertions on one playground request's outcome: ``client.status == 200``,
``client.header["cache-status"] contains "hit"``, ``origin.count == 0``,
``cache.state == "hit"``.

A tiny hand-written parser (no ``eval``): ``SUBJECT OP VALUE`` where

- SUBJECT is one of :data:`SUBJECTS`, the ``header`` ones with a field name in brackets
  (``client.header["x-a"]``, quotes optional);
- OP is ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``contains`` or ``!contains``;
- VALUE is an integer, a string in double or single quotes, or a bare word (``hit``).

Numbers compare as numbers; ``<``/``>`` need numbers on both sides; ``contains`` is a
substring test. An assertion that does not parse fails with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: subject → what it reads.
SUBJECTS = {
    "client.status": "the status the client got",
    "client.header": "a response field the client got ('' if absent)",
    "client.body": "the response body (text, as far as the preview goes)",
    "origin.count": "how many origin fetches the request made",
    "origin.status": "the status of the request's last origin fetch (0: none)",
    "origin.header": "a field the origin was sent on the last fetch ('' if absent)",
    "origin.target": "the target of the last origin fetch ('' if none)",
    "cache.state": "hit, miss, pass, stale, revalidated, synthetic or error",
    "trace": "the phase events as one line (recv:rule@3(...); hash:key; ...)",
    "log": "the rules' log lines, one per line",
}
OPS = ("==", "!=", "<=", ">=", "<", ">", "!contains", "contains")
MAX_LENGTH = 1000

_SUBJECT = re.compile(r"\s*([a-z]+(?:\.[a-z]+)?)")
_INDEX = re.compile(r"""\[\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*\]""")
_OP = re.compile(r"\s*(==|!=|<=|>=|<|>|!contains\b|contains\b)")
_VALUE = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|(-?\d+)|([^\s"']+))\s*$""")


class AssertionSyntaxError(ValueError):
    """An assertion that does not parse; the message says what was expected where."""


@dataclass(frozen=True, slots=True)
class Assertion:
    text: str
    subject: str
    key: str  # the field name of a header subject ("" otherwise)
    op: str
    value: str | int


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s)


def parse(text: str) -> Assertion:
    """Parse one assertion (:class:`AssertionSyntaxError` with the reason)."""
    if len(text) > MAX_LENGTH:
        raise AssertionSyntaxError(f"longer than {MAX_LENGTH} characters")
    m = _SUBJECT.match(text)
    if m is None or m.group(1) not in SUBJECTS:
        word = text.strip().split(" ", 1)[0] if text.strip() else "nothing"
        raise AssertionSyntaxError(f"unknown subject {word!r}: one of {', '.join(SUBJECTS)}")
    subject, pos, key = m.group(1), m.end(), ""
    if subject.endswith(".header"):
        im = _INDEX.match(text, pos)
        if im is None:
            raise AssertionSyntaxError(f'{subject} needs a field name: {subject}["name"]')
        key = next(g for g in im.groups() if g is not None).strip().lower()
        if not key:
            raise AssertionSyntaxError("empty field name")
        pos = im.end()
    om = _OP.match(text, pos)
    if om is None:
        raise AssertionSyntaxError(
            f"expected an operator after {subject!r} at column {pos + 1}: {' '.join(OPS)}"
        )
    op, pos = om.group(1), om.end()
    vm = _VALUE.match(text, pos)
    if vm is None:
        raise AssertionSyntaxError(f"expected one value at column {pos + 1}")
    dq, sq, num, word = vm.groups()
    value: str | int
    if num is not None:
        value = int(num)
    elif word is not None:
        value = word
    else:
        value = _unescape(dq if dq is not None else sq)
    if op in ("<", "<=", ">", ">=") and not isinstance(value, int):
        raise AssertionSyntaxError(f"{op} compares numbers: {value!r} is not one")
    return Assertion(text, subject, key, op, value)


def actual(a: Assertion, facts: Mapping[str, Any]) -> str | int:
    """What ``a``'s subject reads in ``facts`` (built by the engine for one request)."""
    if a.key:
        headers: Mapping[str, str] = facts[a.subject]
        return headers.get(a.key, "")
    value: str | int = facts[a.subject]
    return value


def holds(a: Assertion, got: str | int) -> bool:
    want = a.value
    if isinstance(want, int) and isinstance(got, str) and got.lstrip("-").isdigit():
        got = int(got)
    if a.op in ("contains", "!contains"):
        found = str(want) in str(got)
        return found if a.op == "contains" else not found
    if a.op in ("==", "!="):
        same = got == want if type(got) is type(want) else str(got) == str(want)
        return same if a.op == "==" else not same
    if not isinstance(got, int) or not isinstance(want, int):
        return False
    if a.op == "<":
        return got < want
    if a.op == "<=":
        return got <= want
    if a.op == ">":
        return got > want
    return got >= want


def check(text: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """One assertion's result: ``{"expr", "ok", "actual", "error"}``."""
    try:
        a = parse(text)
    except AssertionSyntaxError as exc:
        return {"expr": text, "ok": False, "actual": None, "error": str(exc)}
    got = actual(a, facts)
    return {"expr": text, "ok": holds(a, got), "actual": got, "error": ""}
