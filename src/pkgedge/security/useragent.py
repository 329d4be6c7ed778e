"""What kind of client sent a request, from its User-Agent. Self-declared, so never proof.

pip and uv send ``<name>/<version> <json>`` (the "linehaul" format PyPI parses for its download
statistics): ``{"installer": {"name", "version"}, "python", "ci": true|null, "implementation",
"distro", "system", "cpu", ...}``. The JSON is read from at most :data:`MAX_UA_LENGTH`
characters; when it is malformed the leading ``name/version`` still classifies the client.
``ci`` is True when the installer says it runs in CI, False when it sent ``"ci": null/false``
(it looked and saw none), None when it did not say.

Order of the checks: installer (leading product, or the JSON's installer name), mirror, known
crawler (also anything with ``+http://`` contact URL or a ``*bot/1.0`` product), browser,
HTTP library, unknown. :func:`classify` never raises and remembers the last
:data:`CACHE_SIZE` distinct User-Agents (a pure function, so the cache is unobservable).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["CACHE_SIZE", "INSTALLER_KINDS", "KINDS", "MAX_UA_LENGTH", "ClientClass", "classify"]

Kind = Literal[
    "pip", "uv", "poetry", "pdm", "twine", "mirror", "browser", "library", "bot", "unknown"
]
KINDS: tuple[str, ...] = get_args(Kind)
INSTALLER_KINDS: frozenset[str] = frozenset({"pip", "uv", "poetry", "pdm", "twine"})

#: Characters of a User-Agent looked at (pip's linehaul is ~600; longer is padding or abuse).
MAX_UA_LENGTH = 2048
#: Distinct User-Agents remembered; a fleet sees a few hundred versions of pip/uv/browsers.
CACHE_SIZE = 4096
_MAX_FIELD = 64

#: Installer product or linehaul ``installer.name`` (lower-case) → kind.
_INSTALLERS: dict[str, Kind] = {
    "pip": "pip",
    "uv": "uv",
    "uv-pip": "uv",
    "poetry": "poetry",
    "pdm": "pdm",
    "twine": "twine",
}

_LEADING = re.compile(r"\s*([A-Za-z][A-Za-z0-9._+-]{0,63})(?:/([^\s/;(){}\[\]]{1,64}))?")
_MIRROR = re.compile(
    r"\s*(?:bandersnatch|devpi-server|devpi(?!-client)|proxpi|pulpcore|pulp[-_]?python|pulp"
    r"|nexus|sonatype|artifactory|jfrog|pypiserver|pep381client|minirepo|python-pypi-mirror"
    r"|pypi-mirror|z3c\.pypimirror|pkgedge-mirror|cloudsmith|codeartifact)\b",
    re.IGNORECASE,
)
_BOT = re.compile(
    r"googlebot|google-extended|googleother|adsbot-google|mediapartners-google|storebot-google"
    r"|bingbot|bingpreview|msnbot|adidxbot|slurp|duckduckbot|duckassistbot|baiduspider"
    r"|yandex\w*bot|yandeximages|sogou|exabot|facebot|facebookexternalhit|meta-externalagent"
    r"|meta-externalfetcher|ia_archiver|archive\.org_bot|applebot|gptbot|chatgpt-user"
    r"|oai-searchbot|claudebot|claude-web|claude-searchbot|claude-user|anthropic-ai|ccbot"
    r"|ahrefsbot|ahrefssiteaudit|semrushbot|mj12bot|dotbot|petalbot|bytespider|amazonbot"
    r"|perplexitybot|perplexity-user|dataforseobot|blexbot|seznambot|diffbot|imagesiftbot"
    r"|omgilibot|omgili|youbot|cohere-ai|timpibot|serpstatbot|barkrowler|qwantify|linkdexbot"
    r"|mauibot|megaindex|screaming frog|scrapy|headlesschrome|phantomjs|python-scrapy"
    r"|zoominfobot|velenpublicwebcrawler|friendlycrawler|turnitinbot|iaskspider|kangaroo bot"
    r"|img2dataset|ai2bot|petalsearch|webzio|magpie-crawler|sentibot|awariobot",
    re.IGNORECASE,
)
_GENERIC_BOT = re.compile(
    r"\+https?://|\b[\w.-]*(?:bot|crawler|spider|scraper)[\w.-]*/\d", re.IGNORECASE
)
_BROWSER = re.compile(r"\s*(?:Mozilla|Opera)/\d")
_ENGINE = re.compile(r"Gecko|AppleWebKit|Trident|Presto|Chrome/|Firefox/|Safari/")
_LIBRARY = re.compile(
    r"(?:^|[\s(;])(python-requests|requests|python-urllib3?|urllib3|python-httpx|httpx"
    r"|aiohttp|curl|libcurl|wget|wget2|go-http-client|okhttp|java|apache-httpclient"
    r"|jakarta commons-httpclient|libwww-perl|lwp::simple|node-fetch|undici|axios|node|deno"
    r"|bun|ruby|faraday|httpie|postmanruntime|insomnia|(?:windows)?powershell|winhttp|dart"
    r"|reqwest|hyper|python|guzzle|guzzlehttp|php|rest-client|dalvik|cfnetwork|http\.rb"
    r"|typhoeus|electron|pycurl|httplib2|treq|twisted|tornado|grequests|scrapy)"
    r"[/ ]v?(\d[^\s;()/]{0,63})",
    re.IGNORECASE,
)
_PYTHON = re.compile(
    r"\b(?:c?python|pypy)(?:-urllib)?[/ ](\d{1,2}\.\d{1,3}(?:\.\d{1,4})?)", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ClientClass:
    """The classification of one User-Agent; ``raw`` is it, cut to :data:`MAX_UA_LENGTH`."""

    kind: Kind
    installer_name: str | None = None
    installer_version: str | None = None
    python_version: str | None = None
    ci: bool | None = None
    raw: str = ""
    #: the operating system an installer reported (linehaul ``system.name``: Linux, ...)
    system: str | None = None

    @property
    def is_installer(self) -> bool:
        """pip, uv, poetry, pdm or twine: the clients an index exists for."""
        return self.kind in INSTALLER_KINDS


_EMPTY = ClientClass("unknown")


def classify(user_agent: str | None) -> ClientClass:
    """Classify a User-Agent header value (None or empty → ``unknown``). Never raises."""
    if not user_agent or not isinstance(user_agent, str):
        return _EMPTY
    return _cached(user_agent[:MAX_UA_LENGTH])


def _field(value: Any) -> str | None:
    """A short printable string from untrusted JSON, or None."""
    if not isinstance(value, str):
        return None
    value = value.strip()[:_MAX_FIELD]
    return value if value and value.isprintable() else None


def _linehaul(text: str) -> dict[str, Any] | None:
    """The JSON object at the start of ``text`` (trailing junk allowed), or None."""
    try:
        data, _ = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _classify(ua: str) -> ClientClass:
    lead = _LEADING.match(ua)
    product = lead.group(1).lower() if lead else ""
    version = _field(lead.group(2)) if lead else None
    data = None
    if lead is not None:
        rest = ua[lead.end() :].lstrip()
        if rest.startswith("{"):
            data = _linehaul(rest)

    name, ci, python, system = product, None, None, None
    if data is not None:
        osinfo = data.get("system")
        if isinstance(osinfo, dict):
            system = _field(osinfo.get("name"))
        installer = data.get("installer")
        if isinstance(installer, dict):
            name = (_field(installer.get("name")) or product).lower()
            version = _field(installer.get("version")) or version
        python = _field(data.get("python"))
        if "ci" in data:
            ci = data["ci"] is True
    kind = _INSTALLERS.get(product) or _INSTALLERS.get(name)
    if python is None:
        found = _PYTHON.search(ua)
        python = found.group(1) if found else None

    if kind is not None:
        return ClientClass(kind, name, version, python, ci, ua, system)
    if _MIRROR.match(ua):
        return ClientClass("mirror", product or None, version, python, ci, ua, system)
    if _BOT.search(ua) or _GENERIC_BOT.search(ua):
        return ClientClass("bot", None, None, None, None, ua)
    if _BROWSER.match(ua) and _ENGINE.search(ua):
        return ClientClass("browser", None, None, None, None, ua)
    libraries = [(m.group(1).lower(), m.group(2)) for m in _LIBRARY.finditer(ua)]
    if libraries:  # "Python/3.11 aiohttp/3.9.1" is aiohttp: a language runtime comes last
        lib, lib_version = min(libraries, key=lambda lv: lv[0] in ("python", "java", "node"))
        return ClientClass("library", lib, _field(lib_version), python, None, ua)
    return ClientClass("unknown", None, None, python, ci, ua)


_cached = functools.lru_cache(maxsize=CACHE_SIZE)(_classify)
