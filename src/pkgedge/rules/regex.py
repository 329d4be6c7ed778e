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
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_PATTERN", "check_template", "compile_regex", "matcher"]

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


def matcher(text: str, get: Callable[[Any], str]) -> Callable[[Any], bool]:
    """A predicate "``text`` matches somewhere in ``get(x)``", as cheap as the pattern allows:
    a plain ``^literal`` is ``str.startswith``, a plain literal (or ``a|b``) is ``in``, a
    case-insensitive word list lowers an ASCII subject once; a pattern that starts with
    ``^literal`` checks that prefix before running the regex (most subjects fail there)."""
    pattern = compile_regex(text)
    search = pattern.search
    items = list(_sre.parse(text))
    anchored = bool(items) and str(items[0][0]) == "AT" and str(items[0][1]) == "AT_BEGINNING"
    body = items[1:] if anchored else items
    prefix = []
    for op, av in body:
        if str(op) != "LITERAL":
            break
        prefix.append(chr(av))
    literal = "".join(prefix)
    plain = pattern.flags == re.UNICODE and len(prefix) == len(body)
    at_end = (
        pattern.flags == re.UNICODE
        and len(prefix) == len(body) - 1
        and str(body[-1][0]) == "AT"
        and str(body[-1][1]) == "AT_END"
    )
    if at_end:  # "literal$": $ also matches before a final newline
        ends = (literal, literal + "\n")
        if anchored:
            return lambda x: get(x) in ends
        return lambda x: get(x).endswith(ends)
    words = None if anchored else _alternatives(items)
    if words is not None and pattern.flags == re.UNICODE | re.IGNORECASE:
        lows = tuple(w.lower() for w in words)  # ASCII words: exact on ASCII subjects

        def any_word_nocase(x: Any) -> bool:
            s = get(x)
            if not s.isascii():
                return search(s) is not None
            low = s.lower()
            for w in lows:  # noqa: SIM110 - a loop is cheaper than any() over a generator
                if w in low:
                    return True
            return False

        return any_word_nocase
    if words is not None and len(words) > 1 and pattern.flags == re.UNICODE:

        def any_word(x: Any) -> bool:
            s = get(x)
            for w in words:  # noqa: SIM110
                if w in s:
                    return True
            return False

        return any_word
    if plain and anchored:
        return lambda x: get(x).startswith(literal)
    if plain:
        return lambda x: literal in get(x)
    if anchored and literal and not pattern.flags & re.IGNORECASE:

        def prefixed(x: Any) -> bool:
            s = get(x)
            return s.startswith(literal) and search(s) is not None

        return prefixed
    return lambda x: search(get(x)) is not None


def _alternatives(items: list[Any]) -> list[str] | None:
    """The words of ``word``, ``(word|word...)`` or ``word|word``, when all are ASCII
    literals; else None."""
    if len(items) == 1 and str(items[0][0]) == "SUBPATTERN":
        _group, add, remove, inner = items[0][1]
        return _alternatives(list(inner)) if not add and not remove else None
    if len(items) == 1 and str(items[0][0]) == "BRANCH":
        words = [_word(list(alt)) for alt in items[0][1][1]]
        return None if any(w is None for w in words) else words  # type: ignore[return-value]
    word = _word(items)
    return None if word is None else [word]


def _word(items: list[Any]) -> str | None:
    if not items or any(str(op) != "LITERAL" or av > 127 for op, av in items):
        return None
    return "".join(chr(av) for _, av in items)
