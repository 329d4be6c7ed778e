"""The legacy JSON API renderer.

This API has no PEP. Its shape is the one tools read from the public index. The rules it
borrows are tested against their PEPs: PEP 592 (yanked), PEP 440 "Pre-releases" and
"Normalization", and PEP 792 (quarantine).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pkgedge.index.jsonapi import render_project_json
from pkgedge.index.model import FileRow, ProjectRow, ReleaseRow
from pkgedge.index.names import blob_key, file_url_path

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
PROJECT = ProjectRow(project="spam-eggs", display_name="Spam.Eggs", last_serial=7, created=T0)

INFO_KEYS = {
    "author",
    "author_email",
    "bugtrack_url",
    "classifiers",
    "description",
    "description_content_type",
    "docs_url",
    "download_url",
    "downloads",
    "dynamic",
    "home_page",
    "keywords",
    "license",
    "license_expression",
    "maintainer",
    "maintainer_email",
    "name",
    "package_url",
    "platform",
    "project_url",
    "project_urls",
    "provides_extra",
    "release_url",
    "requires_dist",
    "requires_python",
    "summary",
    "version",
    "yanked",
    "yanked_reason",
}
FILE_KEYS = {
    "comment_text",
    "digests",
    "downloads",
    "filename",
    "has_sig",
    "md5_digest",
    "packagetype",
    "python_version",
    "requires_python",
    "size",
    "upload_time",
    "upload_time_iso_8601",
    "url",
    "yanked",
    "yanked_reason",
}


def release(version: str, **kw: Any) -> ReleaseRow:
    return ReleaseRow(project="spam-eggs", version=version, created=T0, **kw)


def file(filename: str, version: str, **kw: Any) -> FileRow:
    digest = hashlib.sha256(filename.encode()).hexdigest()
    sdist = filename.endswith(".tar.gz")
    fields: dict[str, Any] = {
        "project": "spam-eggs",
        "version": version,
        "filename": filename,
        "packagetype": "sdist" if sdist else "bdist_wheel",
        "python_version": "source" if sdist else "py3",
        "size": len(filename),
        "sha256": digest,
        "upload_time": T0,
        "blob_key": blob_key(digest, filename),
    }
    return FileRow(**(fields | kw))


METADATA_1_0 = {
    "summary": "Spam and eggs",
    "description": "Long text",
    "description_content_type": "text/markdown",
    "author": "A. Author",
    "author_email": "a@example.invalid",
    "license": "MIT",
    "license_expression": "MIT",
    "keywords": ["spam", "eggs"],
    "classifiers": ["Programming Language :: Python :: 3"],
    "requires_python": ">=3.8",
    "project_urls": {"Source": "https://example.invalid/src"},
    "provides_extra": ["fast"],
}
RELEASES = [
    release("1.0", metadata=METADATA_1_0),
    release("2.0", yanked=True, yanked_reason="broken build", metadata={"summary": "v2"}),
]
FILES = [
    file(
        "spam_eggs-1.0-py3-none-any.whl",
        "1.0",
        requires_python=">=3.8",
        md5="0" * 32,
        blake2b_256="1" * 64,
    ),
    file("spam_eggs-1.0.tar.gz", "1.0", requires_python=">=3.8"),
    file("spam_eggs-2.0-py3-none-any.whl", "2.0", yanked=True, yanked_reason="broken build"),
]


def render(
    releases: list[ReleaseRow] = RELEASES,
    files: list[FileRow] = FILES,
    version: str | None = None,
    project: ProjectRow = PROJECT,
) -> dict[str, Any]:
    body = render_project_json(project, releases, files, file_url=file_url_path, version=version)
    data: dict[str, Any] = json.loads(body)
    return data


def test_project_document_shape_two_releases_one_yanked() -> None:
    data = render()
    assert set(data) == {"info", "last_serial", "releases", "urls", "vulnerabilities"}
    assert data["last_serial"] == 7
    assert data["vulnerabilities"] == []
    # PEP 592: a yanked release is not the one to describe when a non-yanked one exists.
    info = data["info"]
    assert set(info) == INFO_KEYS
    assert info["version"] == "1.0"
    assert info["yanked"] is False and info["yanked_reason"] is None
    assert list(data["releases"]) == ["1.0", "2.0"]
    assert [f["filename"] for f in data["urls"]] == [
        "spam_eggs-1.0-py3-none-any.whl",
        "spam_eggs-1.0.tar.gz",
    ]
    assert data["urls"] == data["releases"]["1.0"]
    (yanked,) = data["releases"]["2.0"]
    assert yanked["yanked"] is True and yanked["yanked_reason"] == "broken build"


def test_info_fields() -> None:
    info = render()["info"]
    assert info["name"] == "Spam.Eggs"
    assert info["summary"] == "Spam and eggs"
    assert info["keywords"] == "spam,eggs"  # a string, as tools expect
    assert info["classifiers"] == ["Programming Language :: Python :: 3"]
    assert info["requires_dist"] is None  # null when none
    assert info["requires_python"] == ">=3.8"
    assert info["project_urls"] == {"Source": "https://example.invalid/src"}
    assert info["provides_extra"] == ["fast"]
    assert info["package_url"] == info["project_url"] == "/project/spam-eggs/"
    assert info["release_url"] == "/project/spam-eggs/1.0/"
    assert info["bugtrack_url"] is None and info["docs_url"] is None
    assert info["dynamic"] is None
    assert info["downloads"] == {"last_day": -1, "last_month": -1, "last_week": -1}


def test_info_of_a_release_without_metadata() -> None:
    info = render(releases=[release("0.1")], files=[])["info"]
    assert info["classifiers"] == []
    assert info["requires_dist"] is None and info["project_urls"] is None
    assert info["summary"] is None and info["description"] == ""


def test_file_dicts() -> None:
    data = render()
    wheel, sdist = data["urls"]
    assert set(wheel) == set(sdist) == FILE_KEYS
    assert wheel["digests"] == {
        "blake2b_256": "1" * 64,
        "md5": "0" * 32,
        "sha256": FILES[0].sha256,
    }
    assert wheel["md5_digest"] == "0" * 32
    assert sdist["digests"] == {"sha256": FILES[1].sha256}  # unknown digests are left out
    assert wheel["url"] == file_url_path(FILES[0])
    assert wheel["packagetype"] == "bdist_wheel" and wheel["python_version"] == "py3"
    assert sdist["packagetype"] == "sdist" and sdist["python_version"] == "source"
    assert wheel["requires_python"] == ">=3.8"
    assert wheel["has_sig"] is False and wheel["comment_text"] == ""
    assert wheel["size"] == FILES[0].size
    assert wheel["upload_time"] == "2024-05-01T12:00:00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", wheel["upload_time"])
    assert wheel["upload_time_iso_8601"] == "2024-05-01T12:00:00.250000Z"


def test_version_document_has_no_releases() -> None:
    data = render(version="2.0")
    assert set(data) == {"info", "last_serial", "urls", "vulnerabilities"}
    assert data["info"]["version"] == "2.0"
    assert data["info"]["summary"] == "v2"
    # PEP 592: the yanked state and its reason are carried with the release.
    assert data["info"]["yanked"] is True
    assert data["info"]["yanked_reason"] == "broken build"
    assert [f["filename"] for f in data["urls"]] == ["spam_eggs-2.0-py3-none-any.whl"]


def test_pep440_normalization_finds_an_equal_version() -> None:
    # PEP 440 "Normalization" / "Version matching": 2.0 and 2.0.0 are the same version.
    assert render(version="2.0.0")["info"]["version"] == "2.0"


def test_unknown_version_or_no_release_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        render(version="9.9")
    with pytest.raises(LookupError):
        render(releases=[], files=[])


@pytest.mark.parametrize(
    ("releases", "expected"),
    [
        # PEP 440 "Pre-releases": a final release is preferred over a newer pre-release.
        ([release("1.0"), release("2.0b1")], "1.0"),
        # ... and with only pre-releases, the newest of them.
        ([release("1.0a1"), release("1.0b2")], "1.0b2"),
        # PEP 592: yanked releases are passed over, even when newer ...
        ([release("1.0"), release("1.1", yanked=True)], "1.0"),
        # ... including for a non-yanked pre-release ...
        ([release("1.0", yanked=True), release("2.0rc1")], "2.0rc1"),
        # ... unless everything is yanked.
        ([release("1.0", yanked=True), release("1.1", yanked=True)], "1.1"),
        # PEP 440 ordering, not string ordering.
        ([release("1.9"), release("1.10")], "1.10"),
    ],
)
def test_which_release_info_describes(releases: list[ReleaseRow], expected: str) -> None:
    assert render(releases=releases, files=[])["info"]["version"] == expected


def test_releases_in_pep440_order_and_deterministic() -> None:
    releases = [release(v) for v in ["1.10", "1.9", "1.0rc1", "1.0", "0.9.post1"]]
    files = [file(f"spam_eggs-{r.version}.tar.gz", r.version) for r in releases]
    first = render_project_json(PROJECT, releases, files, file_url=file_url_path)
    data = json.loads(first)
    assert list(data["releases"]) == ["0.9.post1", "1.0rc1", "1.0", "1.9", "1.10"]
    rnd = random.Random(3)
    for _ in range(5):
        r2, f2 = releases[:], files[:]
        rnd.shuffle(r2)
        rnd.shuffle(f2)
        assert render_project_json(PROJECT, r2, f2, file_url=file_url_path) == first


def test_release_without_files_is_listed_empty() -> None:
    data = render(releases=[*RELEASES, release("3.0.dev0")])
    assert data["releases"]["3.0.dev0"] == []


def test_non_utc_upload_time_is_converted() -> None:
    when = datetime(2024, 1, 1, 1, 0, tzinfo=UTC) + timedelta(microseconds=5)
    local = when.astimezone(timezone(timedelta(hours=-5)))
    (row,) = render(files=[file("spam_eggs-1.0.tar.gz", "1.0", upload_time=local)])["urls"]
    assert row["upload_time"] == "2024-01-01T01:00:00"
    assert row["upload_time_iso_8601"] == "2024-01-01T01:00:00.000005Z"


def test_pep792_quarantined_project_lists_no_files() -> None:
    quarantined = ProjectRow("spam-eggs", "Spam.Eggs", 8, T0, status="quarantined")
    data = render(project=quarantined)
    assert data["urls"] == []
    assert data["releases"] == {"1.0": [], "2.0": []}
