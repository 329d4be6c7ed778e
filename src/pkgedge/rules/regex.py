"""Regular expressions of the rules language: Python's ``re``, compiled once at compile time.

Python's engine backtracks and has no match limit, so a pattern with nested unbounded
repetition (``(a+)+``, ``(x*y?)*``: "star height" 2 or more) can take exponential time on a
crafted header. Such patterns are rejected at compile time; rewrite them with one level of
repetition (``([a-z]+/)*`` → ``[a-z/]*``).
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

__all__ = ["MAX_PATTERN", "check_template", "compile_regex"]

#: Longest pattern accepted, in characters.
MAX_PATTERN = 4096
_sre: Any = importlib.import_module("re._parser")  # the stdlib's pattern parser (3.11+)
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


@functools.lru_cache(maxsize=1024)
def compile_regex(text: str) -> re.Pattern[str]:
    """The compiled pattern; ValueError with a readable reason when it is invalid or risky."""
    if len(text) > MAX_PATTERN:
        raise ValueError(f"regex longer than {MAX_PATTERN} characters")
    try:
        pattern = re.compile(text)
        height = _star_height(_sre.parse(text))
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"invalid regex: {exc.msg}{where}") from None
    except (RecursionError, OverflowError, ValueError, TypeError) as exc:
        raise ValueError(f"invalid regex: {exc}") from None
    if height >= 2:
        raise ValueError(
            "regex nests unbounded repetition (like (a+)+), which can take exponential time"
        )
    return pattern


def check_template(pattern: re.Pattern[str], template: str) -> None:
    """ValueError unless ``template`` is a valid replacement for ``pattern`` (``\\1``, ...)."""
    try:
        pattern.sub(template, "")  # parses the template even when nothing matches
    except (re.error, IndexError) as exc:
        raise ValueError(f"invalid replacement: {exc}") from None


def _star_height(sub: Any) -> int:
    best = 0
    for op, av in sub:
        if str(op) in _REPEATS:
            _lo, hi, inner = av
            h = _star_height(inner) + (1 if hi > 1 else 0)
        else:
            h = max((_star_height(x) for x in _children(av)), default=0)
        best = max(best, h)
    return best


def _children(av: Any) -> list[Any]:
    if isinstance(av, _sre.SubPattern):
        return [av]
    if isinstance(av, tuple | list):
        return [c for x in av for c in _children(x)]
    return []
