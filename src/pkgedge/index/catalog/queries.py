"""The ``SELECT`` statements that build the model's rows, shared by the catalog's parts.

Each selects a row class's fields in order, so ``cls(*row)`` builds the row without a mapping
(:func:`row_select`). A file's row carries its release's yanked state (a join).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from packaging.utils import canonicalize_version
from sqlalchemy import Select, select

from pkgedge.index.model import FileRow, ProjectRow, ReleaseRow, TokenRow
from pkgedge.index.tables import files, projects, releases, tokens

__all__ = ["FILES", "FILE_COLUMNS", "PROJECTS", "RELEASES", "TOKENS", "release_query", "row_select"]


def row_select(cls: type, columns: dict[str, Any]) -> Select[Any]:
    """The model's fields in order, so that ``cls(*row)`` builds a row (fast: no mapping)."""
    return select(*[columns[f.name] for f in fields(cls)])


#: files joined with their release, for the yanked state
FILES: Final = row_select(
    FileRow, {**files.c, "yanked": releases.c.yanked, "yanked_reason": releases.c.yanked_reason}
).join_from(files, releases)
#: the columns of ``files`` that a :class:`FileRow` fills in (its project and version are the
#: release's)
FILE_COLUMNS: Final = tuple(c.name for c in files.c if c.name not in ("project", "version"))
RELEASES: Final = row_select(ReleaseRow, dict(releases.c))
#: hosted projects only: a reserved name (not hosted yet) is no project to reads
PROJECTS: Final = row_select(ProjectRow, {**projects.c, "project": projects.c.name}).where(
    projects.c.hosted
)
TOKENS: Final = row_select(TokenRow, dict(tokens.c))


def release_query(project: str, version: str) -> Select[Any]:
    """The release of a normalised project name whose version equals ``version`` (PEP 440)."""
    canonical = canonicalize_version(version)
    return RELEASES.where(releases.c.project == project, releases.c.canonical_version == canonical)
