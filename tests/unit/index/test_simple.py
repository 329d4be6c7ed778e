"""The simple API renderers, checked against the PEP texts (503, 592, 629, 658, 691, 700, 714,
740, 792) and against an independent parser (``pypi_simple``)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any

import pytest
from pypi_simple import IndexPage, ProjectPage, ProjectStatus

from pkgedge.cache.keys import simple_variant
from pkgedge.index.model import FileRow, ProjectRow
from pkgedge.index.names import blob_key, file_url_path
from pkgedge.index.simple import (
    API_VERSION,
    HTML_V1,
    JSON_V1,
    TEXT_HTML,
    content_type_header,
    etag_for,
    negotiate,
    render_project_list,
    render_project_page,
)

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
BASE = "http://127.0.0.1:8080/simple/spam-eggs/"
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
YANK_REASON = "<script>alert('x')</script> & \"quotes\""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_file(filename: str, version: str, **kw: Any) -> FileRow:
    digest = sha(filename)
    packagetype = "sdist" if filename.endswith((".tar.gz", ".zip")) else "bdist_wheel"
    fields: dict[str, Any] = {
        "project": "spam-eggs",
        "version": version,
        "filename": filename,
        "packagetype": packagetype,
        "python_version": "source" if packagetype == "sdist" else "py3",
        "size": 1000 + len(filename),
        "sha256": digest,
        "upload_time": T0,
    }
    fields.update(kw)
    if "blob_key" not in fields:
        fields["blob_key"] = blob_key(digest, filename)
    return FileRow(**fields)


PROJECT = ProjectRow(project="spam-eggs", display_name="Spam.Eggs", last_serial=42, created=T0)
FILES = [
    make_file(
        "spam_eggs-1.0-py3-none-any.whl",
        "1.0",
        requires_python=">=3.8",
        metadata_sha256=sha("metadata-1.0"),
    ),
    make_file("spam_eggs-1.0.tar.gz", "1.0", requires_python=">=3.8"),
    make_file(
        "spam_eggs-1.1-py3-none-any.whl",
        "1.1",
        yanked=True,
        yanked_reason=YANK_REASON,
        metadata_sha256=sha("metadata-1.1"),
        upload_time=datetime(2024, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
    ),
    make_file("spam_eggs-1.2.tar.gz", "1.2", yanked=True),
]
VERSIONS = ["0.9", "1.0", "1.1", "1.2"]  # 0.9 has no files


def page(media: str, project: ProjectRow = PROJECT, files: list[FileRow] = FILES) -> bytes:
    return render_project_page(project, files, VERSIONS, media, file_url=file_url_path)


class Anchors(HTMLParser):
    """Every <a> with its attributes and text, and every <meta>, as the stdlib parser sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), ""
        elif tag == "meta":
            d = dict(attrs)
            self.meta[d["name"] or ""] = d.get("content")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, self._text))
            self._open = None


def anchors(body: bytes) -> Anchors:
    parser = Anchors()
    parser.feed(body.decode())
    return parser


# --- PEP 691 "Version + Format Selection" and "URL Parameter" ---------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PIP_ACCEPT, JSON_V1),
        (UV_ACCEPT, JSON_V1),
        (FIREFOX_ACCEPT, TEXT_HTML),
        (CHROME_ACCEPT, TEXT_HTML),
        (None, TEXT_HTML),  # PEP 691: no Accept header means */*
        ("", TEXT_HTML),
        ("*/*", TEXT_HTML),
        ("text/html", TEXT_HTML),  # old pip
        (HTML_V1, HTML_V1),
        (JSON_V1, JSON_V1),
        ("application/*", HTML_V1),
        ("text/*", TEXT_HTML),
        # PEP 691: "latest" is answered with the concrete v1 type.
        ("application/vnd.pypi.simple.latest+json", JSON_V1),
        ("application/vnd.pypi.simple.latest+html", HTML_V1),
        ("Application/VND.PyPI.Simple.V1+JSON ; Q=1", JSON_V1),
        (f"{JSON_V1};q=0.5, text/html", TEXT_HTML),
        (f"{JSON_V1}, */*", JSON_V1),
        (f"text/html, {JSON_V1}", JSON_V1),  # equal q, both named: the richer format
        (f"{JSON_V1};q=0, */*", TEXT_HTML),  # q=0: "not acceptable", even under */*
    ],
)
def test_pep691_content_negotiation(accept: str | None, expected: str) -> None:
    assert negotiate(accept, None) == expected


@pytest.mark.parametrize(
    "accept",
    ["application/json", "image/png", "text/html;q=0", "*/*;q=0", "text/html;q=abc", " , "],
)
def test_pep691_nothing_acceptable_is_none_for_a_406(accept: str) -> None:
    # " , " is a list of empty elements: a header present but naming nothing.
    assert negotiate(accept, None) is None


@pytest.mark.parametrize(
    ("fmt", "accept", "expected"),
    [
        (JSON_V1, FIREFOX_ACCEPT, JSON_V1),
        (HTML_V1, PIP_ACCEPT, HTML_V1),
        (TEXT_HTML, "application/json", TEXT_HTML),
        ("application/vnd.pypi.simple.latest+json", None, JSON_V1),
        ("bogus", PIP_ACCEPT, JSON_V1),  # unsupported value: fall back to negotiation
        ("", PIP_ACCEPT, JSON_V1),
    ],
)
def test_pep691_url_parameter_takes_precedence(fmt: str, accept: str | None, expected: str) -> None:
    assert negotiate(accept, fmt) == expected


@pytest.mark.parametrize("accept", [PIP_ACCEPT, UV_ACCEPT, FIREFOX_ACCEPT, None, "*/*", HTML_V1])
def test_negotiation_agrees_with_the_edges_cache_variant(accept: str | None) -> None:
    # The edge folds Accept into a json/html cache variant; the origin must pick the same
    # family for the clients that matter, or one variant would hold the other's body.
    family = "json" if negotiate(accept, None) == JSON_V1 else "html"
    assert simple_variant(accept) == family


def test_content_type_header() -> None:
    assert content_type_header(JSON_V1) == JSON_V1
    assert content_type_header(TEXT_HTML) == "text/html; charset=utf-8"
    assert content_type_header(HTML_V1) == HTML_V1 + "; charset=utf-8"


# --- PEP 503 / 592 / 658 / 714 HTML ------------------------------------------------------


def test_pep503_project_page_anchors() -> None:
    parsed = anchors(page(HTML_V1))
    assert len(parsed.anchors) == len(FILES)
    for attrs, text in parsed.anchors:
        href = attrs["href"] or ""
        url, _, fragment = href.partition("#")
        # "the text of the anchor tag MUST match the final path component (the filename)"
        assert url.rsplit("/", 1)[1] == text
        # "#<hashname>=<hashvalue>" with a lowercase hash name and a hex digest
        assert re.fullmatch(r"sha256=[0-9a-f]{64}", fragment)
        assert fragment == "sha256=" + sha(text)


def test_pep503_requires_python_is_html_encoded() -> None:
    body = page(TEXT_HTML)
    # PEP 503: "< and > have to be HTML encoded as &lt; and &gt;".
    assert b'data-requires-python="&gt;=3.8"' in body
    assert b">=3.8" not in body
    req = {text: a.get("data-requires-python", "absent") for a, text in anchors(body).anchors}
    assert req["spam_eggs-1.0.tar.gz"] == ">=3.8"
    assert req["spam_eggs-1.1-py3-none-any.whl"] == "absent"


def test_pep592_yanked_with_and_without_reason() -> None:
    body = page(HTML_V1)
    yanked = {text: a.get("data-yanked", "absent") for a, text in anchors(body).anchors}
    assert yanked["spam_eggs-1.0.tar.gz"] == "absent"
    assert yanked["spam_eggs-1.1-py3-none-any.whl"] == YANK_REASON  # the reason, round-tripped
    assert yanked["spam_eggs-1.2.tar.gz"] == ""  # yanked, no reason
    # The reason is escaped: no markup from a maintainer's text reaches the page.
    assert b"<script>" not in body
    assert b"&lt;script&gt;" in body


def test_pep658_pep714_metadata_attributes_only_when_available() -> None:
    for attrs, text in anchors(page(HTML_V1)).anchors:
        row = next(f for f in FILES if f.filename == text)
        if row.metadata_sha256 is None:
            # "never advertise what we can't serve"
            assert "data-core-metadata" not in attrs
            assert "data-dist-info-metadata" not in attrs
        else:
            assert attrs["data-core-metadata"] == f"sha256={row.metadata_sha256}"
            # PEP 714: the legacy attribute, if emitted, MUST match data-core-metadata.
            assert attrs["data-dist-info-metadata"] == attrs["data-core-metadata"]


def test_pep740_no_provenance_and_no_gpg_sig() -> None:
    body = page(HTML_V1)
    assert b"data-provenance" not in body
    assert b"data-gpg-sig" not in body
    assert b"provenance" not in page(JSON_V1)


def test_pep629_repository_version_meta() -> None:
    for body in (page(HTML_V1), render_project_list([PROJECT], TEXT_HTML, 1)):
        assert anchors(body).meta["pypi:repository-version"] == API_VERSION
    assert re.fullmatch(r"1\.\d+", API_VERSION)  # PEP 629: Major.Minor only
    assert API_VERSION == "1.4"  # PEP 792: pages with project status MUST declare 1.4


# --- PEP 691 / 700 JSON ------------------------------------------------------------------

UPLOAD_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def test_pep691_pep700_project_json_fields() -> None:
    data = json.loads(page(JSON_V1))
    assert data["meta"] == {"api-version": API_VERSION, "_last-serial": 42}
    assert data["name"] == "spam-eggs"  # PEP 691: the normalized name
    # PEP 700 "versions": every version, files or not, no duplicates; every file's among them
    assert sorted(data["versions"]) == VERSIONS
    assert len(set(data["versions"])) == len(data["versions"])
    by_name = {f["filename"]: f for f in data["files"]}
    assert set(by_name) == {f.filename for f in FILES}
    for row in FILES:
        f = by_name[row.filename]
        assert row.version in data["versions"]
        assert f["url"] == file_url_path(row)
        assert f["hashes"] == {"sha256": row.sha256}
        assert isinstance(f["size"], int) and f["size"] == row.size  # PEP 700: required
        assert UPLOAD_TIME.fullmatch(f["upload-time"])
        # PEP 691: requires-python only when there is one
        assert f.get("requires-python") == row.requires_python
        assert ("requires-python" in f) == (row.requires_python is not None)
        # PEP 691 / 592: yanked is false, true, or the reason string
        expected_yanked: bool | str = (row.yanked_reason or True) if row.yanked else False
        assert f["yanked"] == expected_yanked
        # PEP 714: "core-metadata", an object of hashes or false
        expected_md = {"sha256": row.metadata_sha256} if row.metadata_sha256 else False
        assert f["core-metadata"] == expected_md
        # PEP 714 "Recommendations": servers should not emit the old key in JSON.
        assert "dist-info-metadata" not in f


def test_pep700_upload_time_is_utc_with_z() -> None:
    data = json.loads(page(JSON_V1))
    times = {f["filename"]: f["upload-time"] for f in data["files"]}
    assert times["spam_eggs-1.0.tar.gz"] == "2024-05-01T12:00:00.123456Z"
    # 14:30 at UTC+2 is 12:30 UTC
    assert times["spam_eggs-1.1-py3-none-any.whl"] == "2024-06-01T12:30:00.000000Z"


def test_json_escapes_hostile_strings() -> None:
    # Not a filename the index accepts; the renderer must still not break on it.
    evil = make_file(
        'x"<\\>\n-1.0.tar.gz', "1.0", yanked=True, yanked_reason='a"b\\c\x01', blob_key="k"
    )
    data = json.loads(page(JSON_V1, files=[evil]))
    assert data["files"][0]["filename"] == evil.filename
    assert data["files"][0]["yanked"] == 'a"b\\c\x01'
    body = page(HTML_V1, files=[evil])
    ((attrs, text),) = anchors(body).anchors
    assert text == evil.filename
    assert attrs["data-yanked"] == 'a"b\\c\x01'


# --- both formats, one meaning -----------------------------------------------------------


def summary(p: ProjectPage) -> list[tuple[Any, ...]]:
    return sorted(
        (
            d.filename,
            d.url,
            d.digests,
            d.requires_python,
            d.is_yanked,
            d.yanked_reason or None,
            bool(d.has_metadata),
            d.metadata_digests or None,
        )
        for d in p.packages
    )


def test_html_and_json_say_the_same_thing() -> None:
    # PEP 691 "JSON Serialization": JSON is another serialization of the same data.
    html_page = ProjectPage.from_html("spam-eggs", page(HTML_V1), base_url=BASE)
    json_page = ProjectPage.from_json_data(json.loads(page(JSON_V1)), base_url=BASE)
    assert summary(html_page) == summary(json_page)
    assert html_page.repository_version == json_page.repository_version == API_VERSION
    assert json_page.versions is not None and sorted(json_page.versions) == VERSIONS
    assert json_page.last_serial == "42"
    no_md = [d for d in html_page.packages if d.filename == "spam_eggs-1.0.tar.gz"]
    assert no_md[0].has_metadata is None  # no attribute at all
    assert {d.filename for d in html_page.packages if d.is_yanked} == {
        "spam_eggs-1.1-py3-none-any.whl",
        "spam_eggs-1.2.tar.gz",
    }


def test_project_list_html_and_json() -> None:
    projects = [
        ProjectRow("zeta", "Zeta", 3, T0),
        PROJECT,
        ProjectRow("a-b", "A_B", 1, T0),
    ]
    html_body = render_project_list(projects, TEXT_HTML, 99)
    json_body = render_project_list(projects, JSON_V1, 99)
    html_idx = IndexPage.from_html(html_body)
    json_idx = IndexPage.from_json_data(json.loads(json_body))
    assert html_idx.projects == json_idx.projects == ["A_B", "Spam.Eggs", "Zeta"]
    assert json_idx.last_serial == "99"
    assert json.loads(json_body)["meta"] == {"api-version": API_VERSION, "_last-serial": 99}
    # PEP 503: each href links to the project's page; the URL ends with "/".
    hrefs = [a["href"] for a, _ in anchors(html_body).anchors]
    assert hrefs == ["a-b/", "spam-eggs/", "zeta/"]


def test_project_list_hostile_name_cannot_become_a_scheme_or_markup() -> None:
    evil = ProjectRow("javascript:alert(1)", "<b>x</b>", 1, T0)
    body = render_project_list([evil], TEXT_HTML, 1)
    ((attrs, text),) = anchors(body).anchors
    assert attrs["href"] == "javascript%3Aalert%281%29/"
    assert text == "<b>x</b>"
    assert b"<b>" not in body


# --- PEP 792 "Status markers in the index APIs" ------------------------------------------


def test_pep792_active_status() -> None:
    html_page = ProjectPage.from_html("spam-eggs", page(HTML_V1))
    json_data = json.loads(page(JSON_V1))
    assert html_page.status == ProjectStatus.ACTIVE
    assert json_data["project-status"] == {"status": "active"}
    assert ProjectPage.from_json_data(json_data).status == ProjectStatus.ACTIVE


def test_pep792_quarantined_project_offers_no_files() -> None:
    quarantined = ProjectRow(
        "spam-eggs", "Spam.Eggs", 43, T0, status="quarantined", status_reason="the <haunted>"
    )
    json_data = json.loads(page(JSON_V1, project=quarantined))
    assert json_data["files"] == []
    assert sorted(json_data["versions"]) == VERSIONS  # as in the PEP's example
    assert json_data["project-status"] == {"status": "quarantined", "reason": "the <haunted>"}
    html_body = page(HTML_V1, project=quarantined)
    html_page = ProjectPage.from_html("spam-eggs", html_body)
    assert html_page.packages == []
    assert html_page.status == ProjectStatus.QUARANTINED
    assert html_page.status_reason == "the <haunted>"
    assert b"<haunted>" not in html_body


@pytest.mark.parametrize("status", ["archived", "deprecated"])
def test_pep792_archived_and_deprecated_still_offer_files(status: Any) -> None:
    row = ProjectRow("spam-eggs", "Spam.Eggs", 43, T0, status=status)
    json_page = ProjectPage.from_json_data(json.loads(page(JSON_V1, project=row)))
    assert json_page.status == ProjectStatus(status)
    assert len(json_page.packages) == len(FILES)
    assert ProjectPage.from_html("spam-eggs", page(HTML_V1, project=row)).status == status


# --- determinism (ETags) -----------------------------------------------------------------


@pytest.mark.parametrize("media", [JSON_V1, HTML_V1, TEXT_HTML])
def test_output_is_deterministic_whatever_the_input_order(media: str) -> None:
    first = page(media)
    shuffled = FILES[:]
    random.Random(7).shuffle(shuffled)
    assert page(media) == first
    assert page(media, files=shuffled) == first
    assert etag_for(page(media, files=shuffled)) == etag_for(first)


def test_etag_is_strong_quoted_and_body_dependent() -> None:
    tag = etag_for(b"abc")
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)  # RFC 9110 strong entity-tag, no W/
    assert etag_for(b"abc") == tag
    assert etag_for(b"abd") != tag


def test_many_files_render_and_parse() -> None:
    rows = [
        make_file(f"spam_eggs-1.{i}-py3-none-any.whl", f"1.{i}", metadata_sha256=sha(str(i)))
        for i in range(10_000)
    ]
    data = json.loads(render_project_page(PROJECT, rows, [], JSON_V1, file_url=file_url_path))
    assert len(data["files"]) == 10_000
    assert len(data["versions"]) == 10_000  # file versions are added to "versions"
    body = render_project_page(PROJECT, rows, [], HTML_V1, file_url=file_url_path)
    assert body.count(b"<a href=") == 10_000
