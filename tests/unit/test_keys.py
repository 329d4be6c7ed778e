"""Cache keys: path normalisation and the simple API's Accept folding."""

from __future__ import annotations

import pytest

from pkgedge.cache.keys import normalize_path, secondary_key, simple_variant, vary_names

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/simple/foo/", "/simple/foo/"),
        ("/simple/./foo/", "/simple/foo/"),
        ("/simple/x/../foo/", "/simple/foo/"),
        ("/simple/%66oo/", "/simple/foo/"),
        ("/simple/foo%2fbar/", "/simple/foo%2Fbar/"),
        ("/%2Bf/http/h%3A80/a%2B1.whl", "/+f/http/h:80/a+1.whl"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/simple/foo/?a=1", "/simple/foo/?a=1"),
    ],
)
def test_normalize_path(target: str, expected: str) -> None:
    assert normalize_path(target) == expected


def test_pip_and_uv_accept_fold_to_the_same_variant() -> None:
    assert simple_variant(PIP_ACCEPT) == simple_variant(UV_ACCEPT) == "json"


@pytest.mark.parametrize(
    ("accept", "variant"),
    [
        (None, "html"),
        ("text/html", "html"),
        ("*/*", "html"),
        ("application/vnd.pypi.simple.v1+json", "json"),
        ("application/vnd.pypi.simple.v1+json;q=0.1, text/html", "html"),
        ("application/vnd.pypi.simple.v1+json;q=0, text/html;q=0.1", "html"),
    ],
)
def test_simple_variant(accept: str | None, variant: str) -> None:
    assert simple_variant(accept) == variant


def test_secondary_key_folds_accept_on_simple_paths_only() -> None:
    names = vary_names("Accept, Accept-Encoding")
    assert names == ("accept",)
    a = secondary_key(b"/simple/foo/", names, {"accept": PIP_ACCEPT}, "/simple/foo/")
    b = secondary_key(b"/simple/foo/", names, {"accept": UV_ACCEPT}, "/simple/foo/")
    assert a == b
    c = secondary_key(b"/other", names, {"accept": PIP_ACCEPT}, "/other")
    d = secondary_key(b"/other", names, {"accept": UV_ACCEPT}, "/other")
    assert c != d
