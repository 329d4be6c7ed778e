"""Names and filenames, checked against the PEP texts (503, 508, 427/491, 625, 658)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pkgedge.errors import PkgedgeError
from pkgedge.index.model import FileRow
from pkgedge.index.names import (
    InvalidFilename,
    blob_key,
    file_url_path,
    is_valid_project_name,
    metadata_url_path,
    normalize,
    parse_filename,
)

SHA = "0123456789abcdef" * 4


# PEP 503 "Normalized Names" (and the name-normalization spec, which keeps its examples).
@pytest.mark.parametrize(
    "name",
    [
        "friendly-bard",
        "Friendly-Bard",
        "FRIENDLY-BARD",
        "friendly.bard",
        "friendly_bard",
        "friendly--bard",
        "FrIeNdLy-._.-bArD",
    ],
)
def test_pep503_normalized_names_examples(name: str) -> None:
    assert normalize(name) == "friendly-bard"


def test_pep503_holygrail_url_uses_normalized_name() -> None:
    # PEP 503: 'a project named "HolyGrail" would have a URL like /holygrail/'.
    assert normalize("HolyGrail") == "holygrail"


# PEP 508 "Names": ^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$, case-insensitively.
@pytest.mark.parametrize("name", ["a", "Z", "1", "A1", "foo.bar", "foo_bar-baz", "x..y", "9-9"])
def test_pep508_valid_names(name: str) -> None:
    assert is_valid_project_name(name)


@pytest.mark.parametrize(
    "name", ["", "-foo", "foo-", ".foo", "foo_", "foo bar", "föo", "foo\n", "foo/bar", "a+b"]
)
def test_pep508_invalid_names(name: str) -> None:
    assert not is_valid_project_name(name)


# PEP 427 / binary distribution format, "File name convention":
# {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("foo-1.0-py3-none-any.whl", ("foo", "1.0", "bdist_wheel", "py3")),
        (
            "Foo_Bar-2.0-1-cp311-cp311-manylinux_2_17_x86_64.whl",
            ("foo-bar", "2.0", "bdist_wheel", "cp311"),
        ),
        ("six-1.16.0-py2.py3-none-any.whl", ("six", "1.16.0", "bdist_wheel", "py2.py3")),
        ("foo-1.0+local.1-py3-none-any.whl", ("foo", "1.0+local.1", "bdist_wheel", "py3")),
        ("foo-1!2.0-py3-none-any.whl", ("foo", "1!2.0", "bdist_wheel", "py3")),
    ],
)
def test_pep427_wheel_filenames(filename: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_filename(filename) == expected


# PEP 625 / source distribution format, "Source distribution file name":
# {name}-{version}.tar.gz; .zip is still accepted by the packaging library and indexes.
@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("foo-1.0.tar.gz", ("foo", "1.0", "sdist", "source")),
        ("foo_bar-1.0.zip", ("foo-bar", "1.0", "sdist", "source")),
        # PEP 440 "Normalization": the version comes back normalised.
        ("foo-1.0RC1.tar.gz", ("foo", "1.0rc1", "sdist", "source")),
    ],
)
def test_pep625_sdist_filenames(filename: str, expected: tuple[str, str, str, str]) -> None:
    assert parse_filename(filename) == expected


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("", "empty"),
        ("../foo-1.0.tar.gz", "separator"),
        ("..\\foo-1.0.tar.gz", "separator"),
        ("foo/bar-1.0.tar.gz", "separator"),
        ("foo-1.0..tar.gz", "'..'"),
        ("foo-1.0.tar.gz\x00.whl", "NUL"),
        ("foo-1.0\n.tar.gz", "control"),
        ("foo-1.0\x7f.tar.gz", "control"),
        ("fóo-1.0.tar.gz", "non-ASCII"),
        ("foo 1-1.0.tar.gz", "space"),
        (".foo-1.0.tar.gz", "starts with"),
        ("-1.0.tar.gz", "starts with"),
        ("foo-1.0.exe", "unsupported"),
        ("foo-1.0-py3.7.egg", "unsupported"),
        ("foo-1.0.tar.bz2", "unsupported"),
        ("foo-1.0.WHL", "unsupported"),
        ("foo-notaversion.tar.gz", "invalid sdist"),
        ("foo.tar.gz", "invalid sdist"),
        ("foo-1.0-py3-none.whl", "invalid wheel"),
        ("foo-bar-1.0-py3-none-any.whl", "invalid wheel"),
        ("foo+bar-1.0.tar.gz", "invalid project name"),
        ("a" * 300 + "-1.0.tar.gz", "longer"),
    ],
)
def test_invalid_filenames_raise_with_reason(filename: str, reason: str) -> None:
    with pytest.raises(InvalidFilename) as info:
        parse_filename(filename)
    assert reason in str(info.value)


def test_invalid_filename_is_a_value_error_answered_400() -> None:
    err = InvalidFilename("x")
    assert isinstance(err, ValueError)
    assert isinstance(err, PkgedgeError)
    assert err.status == 400


def test_blob_key_is_content_addressed() -> None:
    key = blob_key(SHA, "foo-1.0.tar.gz")
    assert key == f"01/23/{SHA[4:]}/foo-1.0.tar.gz"


@pytest.mark.parametrize("sha", ["", "xyz", SHA.upper(), SHA[:-1], SHA + "0", "../" + SHA[3:]])
def test_blob_key_rejects_non_digests(sha: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        blob_key(sha, "foo-1.0.tar.gz")


@pytest.mark.parametrize("filename", ["../x.whl", "a/b.whl", "", "x\x00.whl"])
def test_blob_key_rejects_unsafe_filenames(filename: str) -> None:
    with pytest.raises(InvalidFilename):
        blob_key(SHA, filename)


def _row(filename: str) -> FileRow:
    return FileRow(
        project="foo",
        version="1.0",
        filename=filename,
        packagetype="bdist_wheel",
        python_version="py3",
        size=1,
        sha256=SHA,
        upload_time=datetime(2024, 1, 1, tzinfo=UTC),
        blob_key=blob_key(SHA, filename),
    )


def test_file_url_path_last_segment_is_the_filename() -> None:
    # PEP 503: the URL's final path component is the filename (the anchor's text).
    row = _row("foo-1.0+local-py3-none-any.whl")
    url = file_url_path(row)
    assert url == f"/files/01/23/{SHA[4:]}/foo-1.0+local-py3-none-any.whl"
    assert url.rsplit("/", 1)[1] == row.filename


def test_pep658_metadata_lives_at_file_url_plus_metadata() -> None:
    # PEP 658: the metadata file is served "alongside the distribution with a .metadata
    # appended to the distribution's file name".
    row = _row("foo-1.0-py3-none-any.whl")
    assert metadata_url_path(row) == file_url_path(row) + ".metadata"


def test_file_url_path_percent_encodes_what_a_path_cannot_hold() -> None:
    # A row from before validation, or from elsewhere: "#" and "?" would end the path.
    row = FileRow(
        project="foo",
        version="1.0",
        filename="x",
        packagetype="sdist",
        python_version="source",
        size=1,
        sha256=SHA,
        upload_time=datetime(2024, 1, 1, tzinfo=UTC),
        blob_key="01/23/x#y?z é.tar.gz",
    )
    assert file_url_path(row) == "/files/01/23/x%23y%3Fz%20%C3%A9.tar.gz"
