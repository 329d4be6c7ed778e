"""Plain rows shared by the catalog, the renderers and the upload path (no I/O).

The catalog returns these; the simple/JSON renderers take them; the upload path builds them.
Names: ``project`` is always the PEP 503 normalised name; ``display_name`` is as uploaded.
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

PackageType = Literal["bdist_wheel", "sdist"]
#: PEP 792 project status markers.
ProjectStatus = Literal["active", "archived", "quarantined", "deprecated"]


@dataclass(frozen=True, slots=True)
class ProjectRow:
    project: str  # normalised name
    display_name: str  # as first uploaded
    last_serial: int
    created: datetime
    status: ProjectStatus = "active"
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    project: str
    version: str  # as uploaded (a valid PEP 440 version)
    created: datetime
    yanked: bool = False
    yanked_reason: str | None = None
    #: Core metadata fields (lower-case keys, as the legacy JSON API names them): summary,
    #: description, description_content_type, author, author_email, maintainer,
    #: maintainer_email, license, license_expression, home_page, keywords, classifiers
    #: (list), requires_dist (list), requires_python, project_urls (dict), platform,
    #: provides_extra (list), metadata_version.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileRow:
    project: str
    version: str
    filename: str
    packagetype: PackageType
    python_version: str  # "py3", "cp311", ... or "source" for sdists
    size: int
    sha256: str
    upload_time: datetime
    blob_key: str  # where the bytes live in blob storage
    requires_python: str | None = None
    blake2b_256: str | None = None
    md5: str | None = None
    #: sha256 of the extracted core metadata file (PEP 658), None if not available
    metadata_sha256: str | None = None
    #: yanked state comes from the release (PEP 592: yanking is per file, the public
    #: index yanks whole releases; the catalog copies the release's state here)
    yanked: bool = False
    yanked_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    description: str
    project: str | None  # None: may upload to any project
    created: datetime
    revoked: bool = False
    last_used: datetime | None = None
