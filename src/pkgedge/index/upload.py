"""Upload validation for the legacy upload API (twine, ``uv publish``): pure, no I/O but reads.

:func:`validate_upload` takes the request's text fields, the client's filename and the file
already spooled to disk, and returns a :class:`ValidatedUpload` (rows for the catalog) or raises
:class:`UploadError` whose ``reason`` upload tools print verbatim. Checks, cheapest first: the
form (action, protocol, name, version, filetype, digests), the filename (no path, an allowed
extension, agreeing with name/version/filetype), the size, the digests, then the archive itself
(a sane zip/tar with the expected layout, no member escaping it: :mod:`pkgedge.index.archives`)
and its core metadata, which must name the same project and version.

Release metadata comes from the archive's ``METADATA``/``PKG-INFO``; descriptive fields missing
there fall back to the form. Dependency fields (Requires-Dist, Requires-Python, Provides-Extra)
never do: resolvers read them from the PEP 658 file, which must agree with the JSON API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pkgedge.errors import HTTPError
from pkgedge.index import names
from pkgedge.index.archives import InvalidDistribution, read_core_metadata
from pkgedge.index.model import PackageType

__all__ = ["UploadError", "ValidatedUpload", "parse_core_metadata", "validate_upload"]

MIB = 1024 * 1024
MAX_FILENAME_BYTES = 240  # stored as <blob dir>/<filename> and <filename>.metadata
_NAME_RULE = (
    "Start and end with a letter or numeral containing only ASCII numeric and '.', '_' and '-'."
)
_DIGESTS = (("md5", 32, "MD5"), ("sha256", 64, "SHA256"), ("blake2_256", 64, "BLAKE2"))
_EXTENSIONS: dict[str, PackageType] = {".whl": "bdist_wheel", ".tar.gz": "sdist", ".zip": "sdist"}
#: Fields whose Dynamic marking makes an sdist's PKG-INFO unusable for resolution (PEP 643).
_RESOLUTION_FIELDS = {"requires-dist", "requires-python", "provides-extra", "provides-dist"}
_SCALARS: tuple[str, ...] = ("summary", "description", "description_content_type", "author")
_SCALARS += ("author_email", "maintainer", "maintainer_email", "license", "license_expression")
_SCALARS += ("home_page", "download_url", "requires_python")
#: list-valued release metadata keys -> their header (as packaging leaves it in "unparsed")
_LISTS = {"classifiers": "classifier", "requires_dist": "requires-dist", "dynamic": "dynamic"}
_LISTS |= {"provides_extra": "provides-extra", "license_files": "license-file"}
_FORM_FALLBACK = set(_SCALARS) - {"requires_python"} | {"classifiers", "keywords", "platform"}
_Form = Mapping[str, str | list[str]]


class UploadError(HTTPError):
    """A rejected upload: ``status`` (400, 410 or 413) and the ``reason`` tools print."""


@dataclass(frozen=True, slots=True)
class ValidatedUpload:
    project: str  # PEP 503 normalised
    display_name: str  # the Name in the archive's metadata
    version: str  # the Version in the archive's metadata, as written there
    filename: str
    packagetype: PackageType
    python_version: str  # "py3", "cp311", ... or "source"
    size: int
    sha256: str
    blake2b_256: str
    md5: str
    requires_python: str | None
    #: The file to serve as ``<filename>.metadata`` (PEP 658): a wheel's METADATA; an sdist's
    #: PKG-INFO only if it is Metadata-Version >= 2.2 with no resolution field Dynamic.
    core_metadata: bytes | None
    #: Release metadata (keys as in :class:`pkgedge.index.model.ReleaseRow`).
    metadata: dict[str, Any] = field(default_factory=dict)


def _fail(reason: str, status: int = 400) -> UploadError:
    return UploadError(status, reason)


def _invalid(name: str, error: str) -> UploadError:
    return _fail(f"Invalid value for {name}. Error: {error}")


def _bad_dist(detail: str = "") -> UploadError:
    return _fail(f"Invalid distribution file. {detail}".strip())


def _many(form: _Form, key: str) -> list[str]:
    """A form field's values, stripped; empty and "UNKNOWN" (distutils' filler) dropped."""
    raw = form.get(key)
    values = [raw] if isinstance(raw, str) else list(raw or [])
    return [v.strip() for v in values if v.strip() and v.strip() != "UNKNOWN"]


def _one(form: _Form, key: str) -> str | None:
    return next(iter(_many(form, key)), None)


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def validate_upload(form: _Form, filename: str, path: Path, *, max_size: int) -> ValidatedUpload:
    """Validate one ``file_upload`` request; raise :class:`UploadError` on the first problem."""
    name, version, filetype, pyversion, digests = _check_form(form)
    project = canonicalize_name(name)
    ext, python_tag = _check_filename(filename, filetype, name, project, version)
    size = path.stat().st_size
    if size > max_size:
        limit = str(max_size // MIB) if max_size % MIB == 0 else f"{max_size / MIB:.2f}"
        raise _fail(
            f"File too large. Limit for project {name!r} is {limit} MB. "
            "Ask the administrators of this index to raise the limit.",
            413,
        )
    hashes = _hash_file(path)
    if not all(hmac.compare_digest(value, hashes[algo]) for algo, value in digests.items()):
        raise _fail(
            "The digest supplied does not match a digest calculated from the uploaded file."
        )
    try:
        raw = read_core_metadata(path, ext, size, project, version)
    except InvalidDistribution as exc:
        raise _bad_dist(exc.detail) from exc
    meta = parse_core_metadata(raw)
    _check_metadata(meta, name, project, version)
    for key in _FORM_FALLBACK:
        if not meta.get(key):
            meta[key] = _many(form, key) if isinstance(meta.get(key), list) else _one(form, key)
    meta["project_urls"] = meta["project_urls"] or _project_urls(_many(form, "project_urls"))
    display_name, meta_version = meta.pop("name"), meta.pop("version")
    core: bytes | None = raw
    if ext != ".whl":  # PEP 643: only the non-Dynamic fields of metadata >= 2.2 are reliable
        dynamic = {d.lower() for d in meta["dynamic"]}
        too_old = (_version(meta["metadata_version"]) or Version("0")) < Version("2.2")
        core = None if too_old or dynamic & _RESOLUTION_FIELDS else raw
    return ValidatedUpload(
        project=project,
        display_name=display_name,
        version=meta_version,
        filename=filename,
        packagetype=_EXTENSIONS[ext],
        python_version=pyversion or python_tag,
        size=size,
        sha256=hashes["sha256"],
        blake2b_256=hashes["blake2_256"],
        md5=hashes["md5"],
        requires_python=meta["requires_python"],
        core_metadata=core,
        metadata=meta,
    )


def _check_form(form: _Form) -> tuple[str, Version, str, str | None, dict[str, str]]:
    """Name, version, filetype, pyversion and the client's digests (by algorithm)."""
    action = _one(form, ":action")
    if action == "submit":
        raise _fail(
            "Project pre-registration is no longer required or supported, "
            "upload your files instead.",
            410,
        )
    if action != "file_upload":
        raise _fail(f"Unsupported ':action' {action!r}: only 'file_upload' is supported.")
    if (_one(form, "protocol_version") or "1") != "1":
        raise _fail("Unknown protocol version.")
    name = _one(form, "name")
    if not name or not names.is_valid_project_name(name):
        raise _invalid("name", _NAME_RULE if name else "This field is required.")
    version_text = _one(form, "version")
    if (version := _version(version_text)) is None:
        error = f"{version_text!r} is not a valid PEP 440 version."
        raise _invalid("version", error if version_text else "This field is required.")
    filetype = _one(form, "filetype")
    if filetype not in ("bdist_wheel", "sdist"):
        raise _invalid("filetype", "Use a known file type.")
    pyversion = _one(form, "pyversion")
    if filetype == "sdist" and pyversion not in (None, "source"):
        raise _fail("Error: Use 'source' as Python version for an sdist.")
    digests: dict[str, str] = {}
    for algo, length, label in _DIGESTS:
        if (value := _one(form, f"{algo}_digest")) is not None:
            if not re.fullmatch(f"[0-9a-fA-F]{{{length}}}", value):
                raise _invalid(
                    f"{algo}_digest", f"Use a valid, hex-encoded, {label} message digest."
                )
            digests[algo] = value.lower()
    if "sha256" not in digests and "blake2_256" not in digests:
        raise _fail(
            "Error: Include at least one message digest (sha256_digest or blake2_256_digest)."
        )
    return name, version, filetype, pyversion, digests


def _check_filename(
    filename: str, filetype: str, name: str, project: str, version: Version
) -> tuple[str, str]:
    """The extension and python tag; raise unless the filename is safe and fits the form."""
    if not filename:
        raise _fail("Upload payload does not have a file.")
    if any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise _fail(
            "Cannot upload a file with non-printable characters (ordinals 0-31) "
            "or the DEL character (ordinal 127) in the name."
        )
    if "/" in filename or "\\" in filename:
        raise _fail("Cannot upload a file with '/' or '\\' in the name.")
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise _fail(f"Filename is too long: {filename!r}")
    ext = next((e for e in _EXTENSIONS if filename.endswith(e)), None)
    if ext is None or filename.startswith("."):
        raise _fail("Invalid file extension: Use .tar.gz, .whl or .zip extension.")
    if _EXTENSIONS[ext] != filetype:
        raise _fail(f"Invalid file extension: Extension {ext} is invalid for filetype {filetype}.")
    try:  # the index-wide filename rules: what is accepted here can be stored and served
        file_project, file_version, _, python_tag = names.parse_filename(filename)
    except names.InvalidFilename as exc:
        raise _fail(str(exc)[:1].upper() + str(exc)[1:]) from None
    if file_project != project:
        raise _fail(f"Start filename for {name!r} with {project.replace('-', '_')!r}.")
    if Version(file_version) != version:
        raise _fail(f"Version in filename should be {str(version)!r} not {file_version!r}.")
    return ext, python_tag


def _hash_file(path: Path) -> dict[str, str]:
    hashers: dict[str, Any] = {
        "md5": hashlib.md5(usedforsecurity=False),
        "sha256": hashlib.sha256(),
    }
    hashers["blake2_256"] = hashlib.blake2b(digest_size=32)
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            for h in hashers.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashers.items()}


def _check_metadata(meta: dict[str, Any], name: str, project: str, version: Version) -> None:
    for key, label in (("metadata_version", "Metadata-Version"), ("name", "Name")):
        if not meta.get(key):
            raise _bad_dist(f"The core metadata has no {label}.")
    if canonicalize_name(meta["name"]) != project:
        raise _fail(
            f"The name in the distribution's metadata ({meta['name']!r}) does not match "
            f"the name of the upload ({name!r})."
        )
    if _version(meta["version"]) != version:
        raise _fail(
            f"The version in the distribution's metadata ({meta['version']!r}) does not "
            f"match the version of the upload ({str(version)!r})."
        )
    checks: list[tuple[str, str, Callable[[str], object]]]
    checks = [("Requires-Dist", req, Requirement) for req in meta["requires_dist"]]
    checks.append(("Requires-Python", meta["requires_python"] or ">=0", SpecifierSet))
    for label, value, parser in checks:
        try:
            parser(value)
        except (InvalidRequirement, InvalidSpecifier):
            raise _fail(f"Invalid distribution metadata: {label} {value!r} is not valid.") from None


def _project_urls(entries: list[str]) -> dict[str, str]:
    """``{label: url}`` from "Label, URL" entries (Project-URL headers, form fields)."""
    urls: dict[str, str] = {}
    for entry in entries:
        label, sep, url = entry.partition(",")
        if sep and label.strip() and url.strip():
            urls.setdefault(label.strip(), url.strip())
    return urls


def parse_core_metadata(data: bytes) -> dict[str, Any]:
    """Core metadata (``METADATA``/``PKG-INFO`` bytes) as release metadata: lower-case keys
    (see :class:`~pkgedge.index.model.ReleaseRow`) plus ``name`` and ``version``. Missing
    scalars are ``None``, missing lists ``[]``, ``project_urls`` a dict; ``keywords`` is the
    comma-joined string and ``platform`` the first Platform, as the legacy JSON API has them.
    Lenient: values :mod:`packaging.metadata` leaves unparsed (a repeated single field, an
    undecodable body, a malformed Project-URL) are taken as plain text where possible."""
    raw, unparsed = parse_email(data)
    got: dict[str, Any] = dict(raw)
    out: dict[str, Any] = {}
    for k in ("metadata_version", "name", "version", *_SCALARS):
        value = got.get(k) or next(iter(unparsed.get(k.replace("_", "-"), [])), None)
        out[k] = None if value == "UNKNOWN" else value
    out.update({k: list(got.get(k) or unparsed.get(header) or []) for k, header in _LISTS.items()})
    out["keywords"] = ", ".join(got.get("keywords") or []) or None
    out["platform"] = next((p for p in got.get("platforms") or [] if p != "UNKNOWN"), None)
    urls = got.get("project_urls")
    if not isinstance(urls, dict):
        urls = _project_urls(unparsed.get("project-url", []))
    out["project_urls"] = {k: v for k, v in urls.items() if k and v}
    return out
