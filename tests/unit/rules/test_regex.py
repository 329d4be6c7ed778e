"""Regexes: vetted and compiled once; the fast forms (startswith, in, lowered word lists)
answer exactly what ``re.search`` answers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.rules.regex import check_template, compile_regex, matcher

PATTERNS = [
    "^/simple/", "mpl", "^/simple/([^/]+)/$", "(?i)badbot", r"\.whl$", r"^/a\.b", "^", "",
    "^a|b", "a|b", "^\n", "^x+", "^xy*", "^(?:ab)", "^[a]b", "(?i)(evilbot|scrapy-clone)",
    "(?i)k", "(?i)(?:ab|c)", "(ab|cd)", "(?i)é", "(?i)", "(?i)(a|)", "a|", "(?i)(?-i:a)b",
    "(?s)ab", "(?i)ss", "(?i)^/SIMPLE/", r"\.whl$", "^ab$", "$", "^$", "b$", "(?m)b$",
]  # fmt: skip
_ALPHABET = "abcdeKkK\u212aSs\u00df\u0130i\u0131-\u00e9 /\nABsimplewhl.x"


@settings(max_examples=400, deadline=None, database=None)
@given(st.sampled_from(PATTERNS), st.text(alphabet=_ALPHABET, max_size=12))
def test_fast_forms_agree_with_re(pattern: str, subject: str) -> None:
    fast = matcher(pattern, lambda s: s)
    assert fast(subject) == (re.search(pattern, subject) is not None)


@pytest.mark.parametrize(
    "pattern", ["(a+)+", "(a*)*b", "(?:x*y?)*", "^(/[a-z]+)+$", "(a|b+)*", "((ab)+c)+"]
)
def test_nested_unbounded_repetition_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="nests unbounded repetition"):
        compile_regex(pattern)


@pytest.mark.parametrize("pattern", ["^/simple/[a-z0-9._-]+/$", "(ab){2,3}", r"\.(whl|tar\.gz)$"])
def test_single_level_repetition_is_fine(pattern: str) -> None:
    assert compile_regex(pattern).pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(", "missing ), unterminated subpattern"), ("x" * 5000, "longer than"),
     ("(" * 2000 + ")" * 2000, "invalid regex")],
)  # fmt: skip
def test_invalid_patterns(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_regex(pattern)


def test_templates() -> None:
    check_template(re.compile("(a)(?P<n>b)"), r"\1\g<n>")
    with pytest.raises(ValueError, match="invalid group reference"):
        check_template(re.compile("(a)"), r"\2")
