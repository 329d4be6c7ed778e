"""User-Agent classification: real installer strings, mirrors, bots, browsers, libraries."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgedge.security import useragent
from pkgedge.security.useragent import KINDS, MAX_UA_LENGTH, ClientClass, classify

PIP = (
    'pip/24.0 {"ci":null,"cpu":"x86_64","distro":{"name":"Debian GNU/Linux","version":"12"},'
    '"implementation":{"name":"CPython","version":"3.11.7"},"installer":{"name":"pip",'
    '"version":"24.0"},"python":"3.11.7","system":{"name":"Linux","release":"6.1.0"}}'
)
# Captured from pip 23.2.1 and uv 0.13.9 (`uv pip install`, with CI=true) against a local index.
PIP_CAPTURED = (
    'pip/23.2.1 {"ci":null,"cpu":"x86_64","distro":{"id":"bookworm","libc":{"lib":"glibc",'
    '"version":"2.36"},"name":"Debian GNU/Linux","version":"12"},"implementation":{"name":'
    '"CPython","version":"3.11.7"},"installer":{"name":"pip","version":"23.2.1"},'
    '"openssl_version":"OpenSSL 3.0.19 27 Jan 2026","python":"3.11.7","rustc_version":'
    '"1.95.0","setuptools_version":"65.5.0","system":{"name":"Linux","release":"6.18.44"}}'
)
UV = (
    'uv/0.4.18 {"installer":{"name":"uv","version":"0.4.18"},"python":"3.12.6",'
    '"implementation":{"name":"CPython","version":"3.12.6"},"distro":{"name":"Ubuntu",'
    '"version":"22.04","id":"jammy","libc":{"lib":"glibc","version":"2.35"}},"system":'
    '{"name":"Linux","release":"6.5.0-1025-azure"},"cpu":"x86_64","openssl_version":null,'
    '"setuptools_version":null,"rustc_version":null,"ci":true}'
)
UV_CAPTURED = (
    'uv/0.13.9 {"installer":{"name":"uv","version":"0.13.9","subcommand":["pip","install"]},'
    '"python":"3.11.7","implementation":{"name":"CPython","version":"3.11.7"},"distro":'
    '{"name":"Debian GNU/Linux","version":"12","id":"bookworm","libc":{"lib":"glibc",'
    '"version":"2.36"}},"system":{"name":"Linux","release":"6.18.44"},"cpu":"x86_64",'
    '"openssl_version":null,"setuptools_version":null,"rustc_version":null,"ci":true}'
)


def test_pip_linehaul() -> None:
    c = classify(PIP)
    assert c == ClientClass("pip", "pip", "24.0", "3.11.7", False, PIP, system="Linux")
    assert c.is_installer


def test_pip_captured() -> None:
    c = classify(PIP_CAPTURED)
    assert (c.kind, c.installer_version, c.python_version, c.ci) == (
        "pip",
        "23.2.1",
        "3.11.7",
        False,
    )


@pytest.mark.parametrize("ua", [UV, UV_CAPTURED])
def test_uv_linehaul_in_ci(ua: str) -> None:
    c = classify(ua)
    assert c.kind == "uv"
    assert c.installer_name == "uv"
    assert c.ci is True
    assert c.installer_version == json.loads(ua.split(" ", 1)[1])["installer"]["version"]
    assert c.python_version in ("3.12.6", "3.11.7")


def test_uv_pip_installer_name() -> None:
    c = classify('uv/0.9.0 {"installer":{"name":"uv-pip","version":"0.9.0"},"ci":null}')
    assert (c.kind, c.installer_name, c.installer_version, c.ci) == ("uv", "uv-pip", "0.9.0", False)


def test_ci_absent_is_unknown() -> None:
    assert classify('pip/9.0.1 {"installer":{"name":"pip","version":"9.0.1"}}').ci is None
    assert classify("pip/24.0").ci is None


@pytest.mark.parametrize(
    "ua",
    [
        "pip/24.0 {broken json",
        'pip/24.0 {"installer": [1, 2]}',
        'pip/24.0 {"installer": {"name": 5, "version": {"x": 1}}, "python": 3.11, "ci": "yes"}',
        "pip/24.0 " + "[" * 5000,
        "pip/24.0 {" + '"a":[' * 3000,
        'pip/24.0 {"ci":true} trailing junk',
    ],
)
def test_malformed_json_still_classifies_by_prefix(ua: str) -> None:
    c = classify(ua)
    assert c.kind == "pip"
    assert c.installer_version == "24.0"
    assert len(c.raw) <= MAX_UA_LENGTH


def test_trailing_junk_after_json_is_tolerated() -> None:
    assert classify('pip/24.0 {"ci":true} trailing junk').ci is True


def test_fields_are_bounded_and_printable() -> None:
    big = "9" * 500
    c = classify(
        'pip/24.0 {"installer":{"name":"pip","version":"' + big + '"},"python":"3\\u0001.11"}'
    )
    assert c.installer_version == "9" * 64
    assert c.python_version is None  # a control character: not a version


@pytest.mark.parametrize(
    ("ua", "kind", "name", "version", "python"),
    [
        ("poetry/1.8.3", "poetry", "poetry", "1.8.3", None),
        ("pdm/2.19.1", "pdm", "pdm", "2.19.1", None),
        (
            "twine/5.1.1 requests/2.32.3 requests-toolbelt/1.0.0 urllib3/2.2.2 CPython/3.12.4",
            "twine",
            "twine",
            "5.1.1",
            "3.12.4",
        ),
        (
            'unearth/0.17 {"installer":{"name":"pdm","version":"2.19.1"}}',
            "pdm",
            "pdm",
            "2.19.1",
            None,
        ),
    ],
)
def test_other_installers(ua: str, kind: str, name: str, version: str, python: str | None) -> None:
    c = classify(ua)
    assert (c.kind, c.installer_name, c.installer_version, c.python_version) == (
        kind,
        name,
        version,
        python,
    )


@pytest.mark.parametrize(
    "ua",
    [
        "bandersnatch/6.5.0 (cpython 3.11.4-final0, Linux x86_64) (aiohttp 3.9.1)",
        "devpi-server/6.10.0 (py3.11.4; linux)",
        "proxpi/1.2.0",
        "pulpcore/3.40.0 (cpython 3.9.18-final0, Linux x86_64) (aiohttp 3.8.6)",
        "Nexus/3.61.0-02 (OSS; Linux; 5.15.0; amd64; 17.0.8)",
        "Artifactory/7.71.5 77105900",
        "pkgedge-mirror",
    ],
)
def test_mirrors(ua: str) -> None:
    assert classify(ua).kind == "mirror"


def test_mirror_details() -> None:
    c = classify("bandersnatch/6.5.0 (cpython 3.11.4-final0, Linux x86_64) (aiohttp 3.9.1)")
    assert (c.installer_name, c.installer_version, c.python_version) == (
        "bandersnatch",
        "6.5.0",
        "3.11.4",
    )
    assert classify("devpi-client/7.0.0").kind != "mirror"


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
        "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
        "+claudebot@anthropic.com)",
        "CCBot/2.0 (https://commoncrawl.org/faq/)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile "
        "Safari/537.36 (compatible; Bytespider; spider-feedback@bytedance.com)",
        "Scrapy/2.11.0 (+https://scrapy.org)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; SomeNewCrawler/0.1)",
        "ExampleBot/1.0",
    ],
)
def test_bots(ua: str) -> None:
    assert classify(ua).kind == "bot"


@pytest.mark.parametrize(
    "ua",
    [
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.4.1 Safari/605.1.15",
        "Mozilla/5.0 (Linux; Android 9; CUBOT X20) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0 Mobile Safari/537.36",
    ],
)
def test_browsers(ua: str) -> None:
    assert classify(ua).kind == "browser"


@pytest.mark.parametrize(
    ("ua", "name", "version"),
    [
        ("python-requests/2.31.0", "python-requests", "2.31.0"),
        ("curl/8.4.0", "curl", "8.4.0"),
        ("Wget/1.21.4", "wget", "1.21.4"),
        ("python-httpx/0.27.0", "python-httpx", "0.27.0"),
        ("Python/3.11 aiohttp/3.9.1", "aiohttp", "3.9.1"),
        ("Python-urllib/3.11", "python-urllib", "3.11"),
        ("Go-http-client/1.1", "go-http-client", "1.1"),
        ("okhttp/4.12.0", "okhttp", "4.12.0"),
        ("Java/17.0.8", "java", "17.0.8"),
        ("Apache-HttpClient/4.5.13 (Java/17.0.8)", "apache-httpclient", "4.5.13"),
        ("libwww-perl/6.72", "libwww-perl", "6.72"),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", None, None),
    ],
)
def test_libraries(ua: str, name: str | None, version: str | None) -> None:
    c = classify(ua)
    if name is None:  # a contact URL marks a crawler even when a library sends it
        assert c.kind == "bot"
        return
    assert (c.kind, c.installer_name, c.installer_version) == ("library", name, version)


@pytest.mark.parametrize("ua", [None, "", "Mozilla/5.0", "something", "   ", "-"])
def test_unknown(ua: str | None) -> None:
    assert classify(ua).kind == "unknown"


def test_raw_is_cut() -> None:
    assert classify("x" * 10_000).raw == "x" * MAX_UA_LENGTH


def test_cache_is_bounded() -> None:
    useragent._cached.cache_clear()
    for i in range(useragent.CACHE_SIZE + 100):
        classify(f"python-requests/2.{i}")
    info = useragent._cached.cache_info()
    assert info.currsize == useragent.CACHE_SIZE
    before = useragent._cached.cache_info().hits
    assert classify(PIP) is classify(PIP)
    assert useragent._cached.cache_info().hits == before + 1


@given(st.text(max_size=3000) | st.none())
def test_classify_never_raises(ua: str | None) -> None:
    c = classify(ua)
    assert c.kind in KINDS
    for value in (c.installer_name, c.installer_version, c.python_version):
        assert value is None or len(value) <= 64


@given(st.text(max_size=400))
def test_classify_never_raises_after_a_pip_prefix(tail: str) -> None:
    c = classify("pip/24.0 {" + tail)
    assert c.kind == "pip"


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_arbitrary_json_after_uv_prefix(data: object) -> None:
    c = classify("uv/0.4.0 " + json.dumps(data))
    assert c.kind == "uv"
