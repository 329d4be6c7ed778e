"""Upload validation: real wheels and sdists, forms shaped like twine's and uv's, and every
rejection with its status and reason."""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import hashlib
import io
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pkgedge.errors import HTTPError, PkgedgeError
from pkgedge.index.upload import (
    UploadError,
    ValidatedUpload,
    parse_core_metadata,
    validate_upload,
)
from support.packages import make_sdist, make_wheel, metadata_text, read_metadata

Form = dict[str, str | list[str]]
MB = 1024 * 1024

# -- building forms and archives ---------------------------------------------------------


def digests(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    return {
        "sha256_digest": hashlib.sha256(data).hexdigest(),
        "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
    }


def form_for(path: Path, name: str = "demo", version: str = "1.0", **overrides: Any) -> Form:
    """The fields twine sends (same keys, same encodings); *overrides* set or (None) drop."""
    sdist = not path.name.endswith(".whl")
    form: Form = {
        "name": name,
        "version": version,
        "summary": f"{name} test package built by the pkgedge test-suite",
        "metadata_version": "2.2" if sdist else "2.1",
        "pyversion": "source" if sdist else "py3",
        "filetype": "sdist" if sdist else "bdist_wheel",
        **digests(path),
        ":action": "file_upload",
        "protocol_version": "1",
    }
    for key, value in overrides.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def check(path: Path, form: Form | None = None, *, max_size: int = 100 * MB, **kw: Any) -> Any:
    filename = kw.pop("filename", path.name)
    return validate_upload(form or form_for(path, **kw), filename, path, max_size=max_size)


def rejected(path: Path, form: Form | None = None, *, status: int = 400, **kw: Any) -> str:
    with pytest.raises(UploadError) as excinfo:
        check(path, form, **kw)
    assert excinfo.value.status == status, excinfo.value.reason
    return excinfo.value.reason


def write_zip(
    path: Path, members: dict[str, bytes], *, symlinks: dict[str, str] | None = None
) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2020, 2, 2, 0, 0, 0)), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, (2020, 2, 2, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (0o120777 << 16) | 0x20
            zf.writestr(info, target)
    return path


def forge_wheel(
    tmp_path: Path,
    extra: dict[str, bytes] | None = None,
    *,
    dist: str = "demo",
    version: str = "1.0",
    metadata: bytes | None = None,
    drop: tuple[str, ...] = (),
    dist_info: str | None = None,
) -> Path:
    """A wheel ``<dist>-<version>-py3-none-any.whl`` with full control over its members."""
    di = dist_info or f"{dist}-{version}.dist-info"
    members = {
        f"{dist}/__init__.py": b"",
        f"{di}/METADATA": metadata_text(dist, version).encode() if metadata is None else metadata,
        f"{di}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{di}/RECORD": b"",
        **(extra or {}),
    }
    for key in drop:
        members.pop(f"{di}/{key}")
    return write_zip(tmp_path / f"{dist}-{version}-py3-none-any.whl", members)


TarEntry = tuple[tarfile.TarInfo, "io.BytesIO | None"]


def entry(
    name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, link: str = ""
) -> TarEntry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 1580601600
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


PKG_INFO_22 = metadata_text("demo", "1.0", metadata_version="2.2").encode()


def forge_sdist(
    tmp_path: Path,
    extra: list[TarEntry] | None = None,
    *,
    top: str = "demo-1.0",
    pkg_info: bytes | None = PKG_INFO_22,
    filename: str = "demo-1.0.tar.gz",
) -> Path:
    """``demo-1.0.tar.gz``: ``<top>/PKG-INFO`` (unless None), a module, then *extra*."""
    entries = [entry(f"{top}/demo/__init__.py")]
    if pkg_info is not None:
        entries.insert(0, entry(f"{top}/PKG-INFO", pkg_info))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in [*entries, *(extra or [])]:
            tf.addfile(info, data)
    path = tmp_path / filename
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "demo", "1.0", requires_dist=["beta>=1.0"], requires_python=">=3.8")


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    return make_sdist(tmp_path, "demo", "1.0", requires_dist=["beta>=1.0"])


RICH_METADATA = b"""\
Metadata-Version: 2.4
Name: Demo.Pkg
Version: 2.0rc1
Summary: A demo package
Keywords: alpha,beta
Home-page: https://example.org/home
Author: Ann Author
Author-email: Ann <ann@example.org>
Maintainer: Max Maintainer
Maintainer-email: max@example.org
License-Expression: MIT
Classifier: Programming Language :: Python :: 3
Classifier: Operating System :: OS Independent
Project-URL: Source, https://example.org/src
Project-URL: Documentation, https://example.org/docs
Platform: any
Requires-Python: >=3.9
Requires-Dist: beta>=1.0
Requires-Dist: gamma; extra == "fast"
Provides-Extra: fast
Description-Content-Type: text/markdown

# Demo

The long description, in *Markdown*.
"""


@pytest.fixture
def rich_wheel(tmp_path: Path) -> Path:
    return forge_wheel(tmp_path, dist="demo_pkg", version="2.0rc1", metadata=RICH_METADATA)


# -- happy paths -------------------------------------------------------------------------


def test_wheel_accepted(wheel: Path) -> None:
    result = check(wheel, form_for(wheel, requires_python=">=3.8", requires_dist="beta>=1.0"))
    data = wheel.read_bytes()
    assert isinstance(result, ValidatedUpload)
    assert result.project == "demo"
    assert result.display_name == "demo"
    assert result.version == "1.0"
    assert result.filename == "demo-1.0-py3-none-any.whl"
    assert result.packagetype == "bdist_wheel"
    assert result.python_version == "py3"
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.blake2b_256 == hashlib.blake2b(data, digest_size=32).hexdigest()
    assert result.md5 == hashlib.md5(data).hexdigest()
    assert result.requires_python == ">=3.8"
    assert result.core_metadata == read_metadata(wheel)
    assert result.metadata["requires_dist"] == ["beta>=1.0"]
    assert result.metadata["requires_python"] == ">=3.8"
    assert result.metadata["metadata_version"] == "2.1"
    assert result.metadata["summary"] == "demo test package built by the pkgedge test-suite"
    assert result.metadata["classifiers"] == []
    assert result.metadata["project_urls"] == {}
    assert result.metadata["author"] is None
    assert "name" not in result.metadata and "version" not in result.metadata


def test_release_metadata_extracted(rich_wheel: Path) -> None:
    result = check(rich_wheel, name="Demo.Pkg", version="2.0rc1")
    assert result.project == "demo-pkg"
    assert result.display_name == "Demo.Pkg"
    assert result.version == "2.0rc1"
    assert result.core_metadata == RICH_METADATA
    assert result.requires_python == ">=3.9"
    assert result.metadata == {
        "metadata_version": "2.4",
        "summary": "A demo package",
        "description": "# Demo\n\nThe long description, in *Markdown*.\n",
        "description_content_type": "text/markdown",
        "author": "Ann Author",
        "author_email": "Ann <ann@example.org>",
        "maintainer": "Max Maintainer",
        "maintainer_email": "max@example.org",
        "license": None,
        "license_expression": "MIT",
        "license_files": [],
        "home_page": "https://example.org/home",
        "download_url": None,
        "keywords": "alpha, beta",
        "classifiers": [
            "Programming Language :: Python :: 3",
            "Operating System :: OS Independent",
        ],
        "requires_dist": ["beta>=1.0", 'gamma; extra == "fast"'],
        "requires_python": ">=3.9",
        "project_urls": {
            "Source": "https://example.org/src",
            "Documentation": "https://example.org/docs",
        },
        "platform": "any",
        "provides_extra": ["fast"],
        "dynamic": [],
    }


def test_sdist_accepted_with_pkg_info_as_core_metadata(sdist: Path) -> None:
    result = check(sdist)
    assert result.packagetype == "sdist"
    assert result.python_version == "source"
    assert result.filename == "demo-1.0.tar.gz"
    assert result.metadata["requires_dist"] == ["beta>=1.0"]
    # Metadata-Version 2.2 with nothing Dynamic: PKG-INFO is what the wheel will say (PEP 643)
    assert result.core_metadata == read_metadata(sdist)


@pytest.mark.parametrize(
    ("metadata_version", "dynamic", "served"),
    [
        ("2.1", [], False),
        ("2.2", [], True),
        ("2.4", ["Description", "Keywords"], True),
        ("2.2", ["Requires-Dist"], False),
        ("2.3", ["requires-python"], False),
        ("2.2", ["Provides-Extra"], False),
    ],
)
def test_sdist_core_metadata_only_when_reliable(
    tmp_path: Path, metadata_version: str, dynamic: list[str], served: bool
) -> None:
    text = metadata_text("demo", "1.0", metadata_version=metadata_version).rstrip("\n")
    text += "".join(f"\nDynamic: {d}" for d in dynamic) + "\n\n"
    result = check(forge_sdist(tmp_path, pkg_info=text.encode()))
    assert result.core_metadata == (text.encode() if served else None)
    assert result.metadata["dynamic"] == dynamic


def test_zip_sdist_accepted(tmp_path: Path) -> None:
    path = write_zip(
        tmp_path / "demo-1.0.zip",
        {"demo-1.0/": b"", "demo-1.0/PKG-INFO": PKG_INFO_22, "demo-1.0/setup.py": b""},
    )
    result = check(path)
    assert result.packagetype == "sdist"
    assert result.core_metadata == PKG_INFO_22


def test_names_and_versions_compare_normalised(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, "Foo.Bar_baz", "1.0")
    # twine sends its "safe name" (Foo.Bar-baz); the filename says foo_bar_baz
    result = check(path, name="Foo.Bar-baz", version="1.0.0")
    assert result.project == "foo-bar-baz"
    assert result.display_name == "Foo.Bar_baz"  # the metadata's Name wins
    assert result.version == "1.0"  # as the archive says


def test_form_values_may_all_be_lists(wheel: Path) -> None:
    form = {k: [v] if isinstance(v, str) else v for k, v in form_for(wheel).items()}
    assert check(wheel, form).project == "demo"


@pytest.mark.parametrize("keep", ["sha256_digest", "blake2_256_digest"])
def test_one_strong_digest_is_enough(wheel: Path, keep: str) -> None:
    drop = {"sha256_digest", "blake2_256_digest"} - {keep}
    result = check(wheel, form_for(wheel, **dict.fromkeys(drop)))
    assert result.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_md5_is_checked_when_sent(wheel: Path) -> None:
    good = hashlib.md5(wheel.read_bytes()).hexdigest()
    assert check(wheel, form_for(wheel, md5_digest=good.upper())).md5 == good
    reason = rejected(wheel, form_for(wheel, md5_digest="0" * 32))
    assert reason == (
        "The digest supplied does not match a digest calculated from the uploaded file."
    )


def test_pyversion_defaults_to_the_wheel_tag(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, "demo", "1.0")
    universal = path.rename(tmp_path / "demo-1.0-py2.py3-none-any.whl")
    assert check(universal, form_for(universal, pyversion=None)).python_version == "py2.py3"
    assert check(universal, form_for(universal, pyversion="py3")).python_version == "py3"


def test_descriptive_fields_fall_back_to_the_form_but_dependencies_do_not(
    tmp_path: Path,
) -> None:
    bare = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n"
    path = forge_wheel(tmp_path, metadata=bare)
    form = form_for(
        path,
        summary="From the form",
        author="Form Author",
        classifiers=["Framework :: Django", "Typing :: Typed"],
        project_urls=["Homepage, https://example.org/"],
        requires_dist=["evil>=1"],
        requires_python=">=3.0",
        description="UNKNOWN",
    )
    meta = check(path, form).metadata
    assert meta["summary"] == "From the form"
    assert meta["author"] == "Form Author"
    assert meta["classifiers"] == ["Framework :: Django", "Typing :: Typed"]
    assert meta["project_urls"] == {"Homepage": "https://example.org/"}
    assert meta["description"] is None  # distutils' "UNKNOWN" means absent
    assert meta["requires_dist"] == []
    assert meta["requires_python"] is None


def test_symlink_inside_sdist_is_fine(tmp_path: Path) -> None:
    link = entry("demo-1.0/docs/readme.txt", kind=tarfile.SYMTYPE, link="../PKG-INFO")
    hard = entry("demo-1.0/copy.txt", kind=tarfile.LNKTYPE, link="demo-1.0/PKG-INFO")
    assert check(forge_sdist(tmp_path, [link, hard])).project == "demo"


def test_error_types() -> None:
    err = UploadError(400, "Invalid distribution file.")
    assert isinstance(err, HTTPError) and isinstance(err, PkgedgeError)
    assert (err.status, err.reason, str(err)) == (400, "Invalid distribution file.", err.reason)


# -- the form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        (
            {":action": "submit"},
            410,
            "Project pre-registration is no longer required or supported, "
            "upload your files instead.",
        ),
        ({":action": None}, 400, "Unsupported ':action' None: only 'file_upload' is supported."),
        (
            {":action": "doc_upload"},
            400,
            "Unsupported ':action' 'doc_upload': only 'file_upload' is supported.",
        ),
        ({"protocol_version": "2"}, 400, "Unknown protocol version."),
        ({"name": None}, 400, "Invalid value for name. Error: This field is required."),
        (
            {"name": "-demo-"},
            400,
            "Invalid value for name. Error: Start and end with a letter or numeral containing "
            "only ASCII numeric and '.', '_' and '-'.",
        ),
        ({"version": ""}, 400, "Invalid value for version. Error: This field is required."),
        (
            {"version": "1.0-banana-split"},
            400,
            "Invalid value for version. Error: '1.0-banana-split' is not a valid PEP 440 version.",
        ),
        (
            {"filetype": "bdist_egg"},
            400,
            "Invalid value for filetype. Error: Use a known file type.",
        ),
        ({"filetype": None}, 400, "Invalid value for filetype. Error: Use a known file type."),
        (
            {"sha256_digest": "xyz"},
            400,
            "Invalid value for sha256_digest. Error: Use a valid, hex-encoded, SHA256 message "
            "digest.",
        ),
        (
            {"blake2_256_digest": "ab" * 40},
            400,
            "Invalid value for blake2_256_digest. Error: Use a valid, hex-encoded, BLAKE2 message "
            "digest.",
        ),
        (
            {"md5_digest": "nothex"},
            400,
            "Invalid value for md5_digest. Error: Use a valid, hex-encoded, MD5 message digest.",
        ),
        (
            {"sha256_digest": None, "blake2_256_digest": None},
            400,
            "Error: Include at least one message digest (sha256_digest or blake2_256_digest).",
        ),
        (
            {"sha256_digest": None, "blake2_256_digest": None, "md5_digest": "0" * 32},
            400,
            "Error: Include at least one message digest (sha256_digest or blake2_256_digest).",
        ),
    ],
)
def test_form_rejections(wheel: Path, overrides: dict[str, Any], status: int, reason: str) -> None:
    assert rejected(wheel, form_for(wheel, **overrides), status=status) == reason


def test_sdist_pyversion_must_be_source(sdist: Path) -> None:
    reason = rejected(sdist, form_for(sdist, pyversion="py3"))
    assert reason == "Error: Use 'source' as Python version for an sdist."


# -- the filename ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("", "Upload payload does not have a file."),
        ("../demo-1.0-py3-none-any.whl", "Cannot upload a file with '/' or '\\' in the name."),
        ("a/demo-1.0-py3-none-any.whl", "Cannot upload a file with '/' or '\\' in the name."),
        ("/tmp/demo-1.0-py3-none-any.whl", "Cannot upload a file with '/' or '\\' in the name."),
        ("..\\demo-1.0-py3-none-any.whl", "Cannot upload a file with '/' or '\\' in the name."),
        (
            "demo-1.0-py3-none-any.whl\x00.txt",
            "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL "
            "character (ordinal 127) in the name.",
        ),
        (
            "demo-1.0-py3-none-any\n.whl",
            "Cannot upload a file with non-printable characters (ordinals 0-31) or the DEL "
            "character (ordinal 127) in the name.",
        ),
        ("..", "Invalid file extension: Use .tar.gz, .whl or .zip extension."),
        (".whl", "Invalid file extension: Use .tar.gz, .whl or .zip extension."),
        ("demo-1.0.exe", "Invalid file extension: Use .tar.gz, .whl or .zip extension."),
        ("demo-1.0.egg", "Invalid file extension: Use .tar.gz, .whl or .zip extension."),
        ("demo-1.0.tar.bz2", "Invalid file extension: Use .tar.gz, .whl or .zip extension."),
        (
            "demo-1.0-py3-none-any.WHL",
            "Invalid file extension: Use .tar.gz, .whl or .zip extension.",
        ),
        (
            "demo-1.0.tar.gz",
            "Invalid file extension: Extension .tar.gz is invalid for filetype bdist_wheel.",
        ),
        ("demo-1.0.whl", "Invalid wheel filename: Invalid wheel filename (wrong number of parts)"),
        (
            "demo-x-py3-none-any.whl",
            "Invalid wheel filename: Invalid wheel filename (invalid version)",
        ),
        (
            "démo-1.0-py3-none-any.whl",
            "Filename contains a control or non-ASCII character: 'démo-1.0-py3-none-any.whl'",
        ),
        ("demo-1.0-py3-none-any .whl", "Filename contains a space: 'demo-1.0-py3-none-any .whl'"),
        ("demo-1.0-py3-none-..any.whl", "Filename contains '..': 'demo-1.0-py3-none-..any.whl'"),
        ("other-1.0-py3-none-any.whl", "Start filename for 'demo' with 'demo'."),
        ("demo-1.1-py3-none-any.whl", "Version in filename should be '1.0' not '1.1'."),
        ("d" * 240 + "-1.0-py3-none-any.whl", "Filename is too long: '" + "d" * 240),
    ],
)
def test_filename_rejections(wheel: Path, filename: str, reason: str) -> None:
    got = rejected(wheel, form_for(wheel), filename=filename)
    prefix_only = reason.startswith(("Filename is too long", "Invalid wheel filename"))
    assert got.startswith(reason) if prefix_only else got == reason


def test_sdist_filename_rejections(sdist: Path) -> None:
    for filename, reason in [
        ("demo-1.0.whl", "Invalid file extension: Extension .whl is invalid for filetype sdist."),
        ("demo.tar.gz", "Invalid sdist filename: Invalid sdist filename: 'demo.tar.gz'"),
        (
            "demo-one.tar.gz",
            "Invalid sdist filename: Invalid sdist filename (invalid version): 'demo-one.tar.gz'",
        ),
        ("-demo-1.0.tar.gz", "Filename starts with '-': '-demo-1.0.tar.gz'"),
        ("Other_Name-1.0.tar.gz", "Start filename for 'Demo' with 'demo'."),
        ("demo-2.0.zip", "Version in filename should be '1.0' not '2.0'."),
    ]:
        assert rejected(sdist, form_for(sdist, name="Demo"), filename=filename) == reason


def test_name_in_form_must_match_filename(wheel: Path) -> None:
    reason = rejected(wheel, form_for(wheel, name="Some.Other_Project"))
    assert reason == "Start filename for 'Some.Other_Project' with 'some_other_project'."


def test_version_in_form_must_match_filename(wheel: Path) -> None:
    reason = rejected(wheel, form_for(wheel, version="1.0.post1"))
    assert reason == "Version in filename should be '1.0.post1' not '1.0'."


# -- size and digests --------------------------------------------------------------------


def test_oversized_file(tmp_path: Path) -> None:
    noise = random.Random(413).randbytes(MB)
    path = make_wheel(tmp_path, "demo", "1.0", extra_files={"demo/noise.bin": noise})
    size = path.stat().st_size
    assert size > MB
    reason = rejected(path, status=413, max_size=MB)
    assert reason == (
        "File too large. Limit for project 'demo' is 1 MB. "
        "Ask the administrators of this index to raise the limit."
    )
    assert "Limit for project 'demo' is 0.50 MB." in rejected(path, status=413, max_size=MB // 2)
    assert check(path, max_size=size).size == size  # the limit is inclusive


@pytest.mark.parametrize("field", ["sha256_digest", "blake2_256_digest"])
def test_wrong_digest(wheel: Path, field: str) -> None:
    reason = rejected(wheel, form_for(wheel, **{field: "ab" * 32}))
    assert reason == (
        "The digest supplied does not match a digest calculated from the uploaded file."
    )


# -- the archive -------------------------------------------------------------------------


def test_text_file_named_whl(tmp_path: Path) -> None:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_text("this is not a wheel\n")
    assert rejected(path) == "Invalid distribution file. File is not a zipfile."


@pytest.mark.parametrize("filename", ["demo-1.0.tar.gz", "demo-1.0.zip"])
def test_text_file_named_sdist(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_text("this is not an sdist\n")
    assert rejected(path).startswith("Invalid distribution file.")


@pytest.mark.parametrize("filename", ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"])
def test_empty_file(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"")
    assert rejected(path).startswith("Invalid distribution file.")


def test_truncated_wheel(wheel: Path) -> None:
    wheel.write_bytes(wheel.read_bytes()[: wheel.stat().st_size // 2])
    assert rejected(wheel) == "Invalid distribution file. File is not a zipfile."


def test_corrupted_wheel_member(tmp_path: Path) -> None:
    path = forge_wheel(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.index(b"Metadata-Version")  # write_zip stores members: corrupt METADATA in place
    data[at : at + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    assert rejected(path).startswith("Invalid distribution file.")


def test_truncated_sdist(sdist: Path) -> None:
    sdist.write_bytes(sdist.read_bytes()[:-200])
    assert rejected(sdist) == "Invalid distribution file."


@pytest.mark.parametrize(
    "member",
    ["../evil.py", "demo/../../evil.py", "/etc/evil.py", "demo\\..\\..\\evil.py", "C:/evil.py"],
)
def test_zip_slip_in_wheel(tmp_path: Path, member: str) -> None:
    path = forge_wheel(tmp_path, {member: b"import os\n"})
    assert rejected(path) == f"Invalid distribution file. Unsafe member path {member!r}."


def test_wheel_layout_rejections(tmp_path: Path) -> None:
    def reason(**kw: Any) -> str:
        for old in tmp_path.glob("*.whl"):
            old.unlink()
        return rejected(forge_wheel(tmp_path, **kw))

    assert reason(drop=("METADATA",)) == (
        "Invalid distribution file. Expected one .dist-info/METADATA, found 0."
    )
    two = {"other-1.0.dist-info/METADATA": metadata_text("other", "1.0").encode()}
    assert reason(extra=two) == (
        "Invalid distribution file. Expected one .dist-info/METADATA, found 2."
    )
    assert reason(dist_info="other-1.0.dist-info") == (
        "Invalid distribution file. other-1.0.dist-info does not belong to demo 1.0."
    )
    assert reason(dist_info="demo-2.0.dist-info") == (
        "Invalid distribution file. demo-2.0.dist-info does not belong to demo 1.0."
    )
    assert reason(drop=("WHEEL",)) == (
        "Invalid distribution file. WHEEL not found at demo-1.0.dist-info/WHEEL."
    )
    assert reason(drop=("RECORD",)) == (
        "Invalid distribution file. RECORD not found at demo-1.0.dist-info/RECORD."
    )


def test_symlink_in_wheel(tmp_path: Path) -> None:
    path = forge_wheel(tmp_path)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("demo/passwd", (2020, 2, 2, 0, 0, 0))
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    assert rejected(path) == "Invalid distribution file. Symbolic link member 'demo/passwd'."


def test_duplicate_members_in_wheel(tmp_path: Path) -> None:
    path = forge_wheel(tmp_path)
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(path, "a") as zf,
    ):
        zf.writestr("demo/__init__.py", b"print('second copy')\n")
    assert rejected(path) == "Invalid distribution file. Duplicate member names."


def test_unsupported_compression(tmp_path: Path) -> None:
    path = forge_wheel(tmp_path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("demo/data.txt", b"x" * 100, compress_type=zipfile.ZIP_BZIP2)
    reason = rejected(path)
    assert reason == "Invalid distribution file. File does not use a supported compression type."


def test_zip_bomb(tmp_path: Path) -> None:
    path = forge_wheel(tmp_path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo/zeros.bin", bytes(70 * MB))
    assert path.stat().st_size < MB
    assert rejected(path) == "Invalid distribution file. File exceeds compression ratio of 50."


def test_tar_bomb(tmp_path: Path) -> None:
    path = forge_sdist(tmp_path, [entry("demo-1.0/zeros.bin", bytes(70 * MB))])
    assert path.stat().st_size < MB
    assert rejected(path) == "Invalid distribution file. File exceeds compression ratio of 50."


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (
            [entry("demo-1.0/evil", kind=tarfile.SYMTYPE, link="../../etc/passwd")],
            "Link 'demo-1.0/evil' points outside the sdist: '../../etc/passwd'.",
        ),
        (
            [entry("demo-1.0/evil", kind=tarfile.SYMTYPE, link="/etc/passwd")],
            "Link 'demo-1.0/evil' points outside the sdist: '/etc/passwd'.",
        ),
        (
            [entry("demo-1.0/a/evil", kind=tarfile.SYMTYPE, link="../..")],
            "Link 'demo-1.0/a/evil' points outside the sdist: '../..'.",
        ),
        (
            [entry("demo-1.0/evil", kind=tarfile.LNKTYPE, link="etc/passwd")],
            "Link 'demo-1.0/evil' points outside the sdist: 'etc/passwd'.",
        ),
        (
            [entry("demo-1.0/evil", kind=tarfile.LNKTYPE, link="demo-1.0/../../etc/passwd")],
            "Link 'demo-1.0/evil' points outside the sdist: 'demo-1.0/../../etc/passwd'.",
        ),
        ([entry("demo-1.0/../evil.py", b"x")], "Unsafe member path 'demo-1.0/../evil.py'."),
        ([entry("/demo-1.0/evil.py", b"x")], "Unsafe member path '/demo-1.0/evil.py'."),
        ([entry("../evil.py", b"x")], "Unsafe member path '../evil.py'."),
        (
            [entry("demo-1.0/dev", kind=tarfile.CHRTYPE)],
            "Unsupported member type 'demo-1.0/dev'.",
        ),
        (
            [entry("demo-1.0/fifo", kind=tarfile.FIFOTYPE)],
            "Unsupported member type 'demo-1.0/fifo'.",
        ),
        (
            [entry("other-1.0/setup.py", b"")],
            "Incorrect number of top-level directories in sdist.",
        ),
        ([entry("setup.py", b"")], "Incorrect number of top-level directories in sdist."),
    ],
)
def test_sdist_member_rejections(tmp_path: Path, extra: list[TarEntry], reason: str) -> None:
    path = forge_sdist(tmp_path, extra)
    assert rejected(path) == f"Invalid distribution file. {reason}"


def test_sdist_layout_rejections(tmp_path: Path) -> None:
    path = forge_sdist(tmp_path, pkg_info=None)
    assert rejected(path) == "Invalid distribution file. PKG-INFO not found at demo-1.0/PKG-INFO."
    link = entry("demo-1.0/PKG-INFO", kind=tarfile.SYMTYPE, link="demo/__init__.py")
    path = forge_sdist(tmp_path, [link], pkg_info=None)
    assert rejected(path) == "Invalid distribution file. PKG-INFO not found at demo-1.0/PKG-INFO."
    path = forge_sdist(tmp_path, top="demo-2.0")
    assert rejected(path) == (
        "Invalid distribution file. Top-level directory 'demo-2.0' does not belong to demo 1.0."
    )
    path = forge_sdist(tmp_path, top="other-1.0")
    assert rejected(path) == (
        "Invalid distribution file. Top-level directory 'other-1.0' does not belong to demo 1.0."
    )


def test_zip_sdist_rejections(tmp_path: Path) -> None:
    def reason(members: dict[str, bytes], **kw: Any) -> str:
        return rejected(write_zip(tmp_path / "demo-1.0.zip", members, **kw))

    ok = {"demo-1.0/PKG-INFO": PKG_INFO_22}
    assert reason({**ok, "demo-1.0/../../evil.py": b""}) == (
        "Invalid distribution file. Unsafe member path 'demo-1.0/../../evil.py'."
    )
    assert reason(ok, symlinks={"demo-1.0/evil": "/etc/passwd"}) == (
        "Invalid distribution file. Symbolic link member 'demo-1.0/evil'."
    )
    assert reason({"demo-1.0/setup.py": b""}) == (
        "Invalid distribution file. PKG-INFO not found at demo-1.0/PKG-INFO."
    )
    assert reason({**ok, "PKG-INFO": PKG_INFO_22}) == (
        "Invalid distribution file. Incorrect number of top-level directories in sdist."
    )


# -- the metadata in the archive ---------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (
            metadata_text("impostor", "1.0"),
            "The name in the distribution's metadata ('impostor') does not match the name of "
            "the upload ('demo').",
        ),
        (
            metadata_text("demo", "6.6.6"),
            "The version in the distribution's metadata ('6.6.6') does not match the version "
            "of the upload ('1.0').",
        ),
        (
            "Metadata-Version: 2.1\nName: demo\n\n",
            "The version in the distribution's metadata (None) does not match the version "
            "of the upload ('1.0').",
        ),
        (
            "Name: demo\nVersion: 1.0\n\n",
            "Invalid distribution file. The core metadata has no Metadata-Version.",
        ),
        (
            "Metadata-Version: 2.1\nVersion: 1.0\n\n",
            "Invalid distribution file. The core metadata has no Name.",
        ),
        ("", "Invalid distribution file. The core metadata has no Metadata-Version."),
        (
            metadata_text("demo", "1.0", requires_dist=["beta >= 1.0 ; python_version >"]),
            "Invalid distribution metadata: Requires-Dist 'beta >= 1.0 ; python_version >' "
            "is not valid.",
        ),
        (
            metadata_text("demo", "1.0", requires_python="3.8+"),
            "Invalid distribution metadata: Requires-Python '3.8+' is not valid.",
        ),
    ],
)
def test_metadata_rejections(tmp_path: Path, metadata: str, reason: str) -> None:
    wheel_path = forge_wheel(tmp_path, metadata=metadata.encode())
    assert rejected(wheel_path) == reason


def test_sdist_metadata_must_match(tmp_path: Path) -> None:
    path = forge_sdist(tmp_path, pkg_info=metadata_text("demo", "1.0.1").encode())
    assert rejected(path) == (
        "The version in the distribution's metadata ('1.0.1') does not match the version "
        "of the upload ('1.0')."
    )


def test_metadata_too_large(tmp_path: Path) -> None:
    body = metadata_text("demo", "1.0").encode() + b"x" * (16 * MB + 1)
    path = forge_wheel(tmp_path, metadata=body)
    assert rejected(path) == "Invalid distribution file. The core metadata file is too large."


# -- parse_core_metadata -----------------------------------------------------------------


def test_parse_core_metadata_is_lenient() -> None:
    data = (
        b"Metadata-Version: 1.0\nName: old\nVersion: 0.1\nSummary: one\nSummary: two\n"
        b"Author: UNKNOWN\nPlatform: UNKNOWN\nHome-page: UNKNOWN\n"
        b"Project-URL: no comma here\nProject-URL: Tracker, https://example.org/issues\n"
        b"License: \xff\xfe not utf-8\n\n"
    )
    meta = parse_core_metadata(data)
    assert meta["name"] == "old"
    assert meta["version"] == "0.1"
    assert meta["summary"] == "one"  # repeated single field: the first one
    assert meta["author"] is None
    assert meta["home_page"] is None
    assert meta["platform"] is None
    assert meta["project_urls"] == {"Tracker": "https://example.org/issues"}
    assert meta["classifiers"] == []
    assert meta["keywords"] is None


def test_parse_core_metadata_header_description() -> None:
    data = b"Metadata-Version: 1.2\nName: x\nVersion: 1\nDescription: short\n  more\n\n"
    assert parse_core_metadata(data)["description"].startswith("short")


# -- real clients: the exact fields twine and uv publish send ----------------------------


class _Capture(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    uploads: list[tuple[Form, str, bytes]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return body

    def do_POST(self) -> None:
        body = self._body()
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        fields: dict[str, list[str]] = {}
        filename, content = "", b""
        for part in msg.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None and name == "content":
                filename, content = part.get_filename(), payload
            else:
                fields.setdefault(name, []).append(payload.decode("utf-8"))
        form: Form = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
        self.server.uploads.append((form, filename, content))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")


@pytest.fixture
def capture() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    server.uploads = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _bin(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if not found.exists() and shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: it is a test dependency", pytrace=False)
    return str(found) if found.exists() else str(shutil.which(name))


@pytest.mark.parametrize("client", ["twine", "uv"])
def test_forms_from_real_clients(
    client: str, capture: Any, tmp_path: Path, rich_wheel: Path
) -> None:
    sdist_path = make_sdist(tmp_path / "dist", "Demo.Pkg", "2.0rc1", requires_dist=["beta>=1.0"])
    files = [str(rich_wheel), str(sdist_path)]
    url = f"http://127.0.0.1:{capture.server_address[1]}/legacy/"
    if client == "twine":
        cmd = [_bin("twine"), "upload", "--repository-url", url, "-u", "u", "-p", "p"]
        cmd += ["--non-interactive", "--disable-progress-bar", *files]
    else:
        cmd = [_bin("uv"), "publish", "--publish-url", url, "--username", "u", "--password"]
        cmd += ["p", "--trusted-publishing", "never", "--no-attestations", *files]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "UV_CACHE_DIR": str(tmp_path / "c")}
    env |= {"UV_NO_CONFIG": "1", "NO_COLOR": "1"}
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(f for _, f, _ in capture.uploads) == sorted(Path(f).name for f in files)
    for form, filename, content in capture.uploads:
        assert form[":action"] == "file_upload"
        spooled = tmp_path / "spool" / filename
        spooled.parent.mkdir(exist_ok=True)
        spooled.write_bytes(content)
        result = validate_upload(form, filename, spooled, max_size=10 * MB)
        assert result.project == "demo-pkg"
        assert result.version == "2.0rc1"
        assert result.sha256 == hashlib.sha256(content).hexdigest()
        if filename.endswith(".whl"):
            assert result.python_version == "py3"
            assert result.core_metadata == RICH_METADATA
            assert result.metadata["project_urls"]["Source"] == "https://example.org/src"
        else:
            assert result.python_version == "source"
            assert result.metadata["requires_dist"] == ["beta>=1.0"]
