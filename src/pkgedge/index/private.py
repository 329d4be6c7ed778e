"""The data directory holds secrets: keep it to its owner.

``edge.json`` holds the edge's admin token and ``catalog.db`` the API tokens' hashes and
everything else of the index. pkgedge creates the directory 700 and every file in it 600
(:func:`private_umask` at the start of each command, and explicit modes where a file is
written). :func:`check` runs when the origin or ``pkgedge up`` starts and returns one warning
per path that others can read, with the command that fixes it; data directories made by an
older pkgedge were 755/644.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: What the data directory's owner keeps to themself.
SECRETS = ("edge.json", "catalog.db")


def private_umask() -> int:
    """New files 600, new directories 700, for this process and its children."""
    return os.umask(0o077)


def make_dir(path: Path) -> None:
    """Create ``path`` (and parents) 700; an existing directory is left as it is."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_secret(path: Path, text: str) -> None:
    """Replace ``path`` atomically by a file of mode 600 holding ``text``."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an old .tmp left with another mode
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _open_to_others(path: Path) -> int:
    """The group/other permission bits of ``path`` (0 when it is missing or private)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return 0
    return stat.S_IMODE(mode) & 0o077


def check(data_dir: Path) -> list[str]:
    """One warning line per secret (or the directory) that group or others can read."""
    warnings = []
    if _open_to_others(data_dir) & 0o055:
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        warnings.append(
            f"the data directory {data_dir} is mode {mode:o} (others can list it); "
            f"make it private: chmod 700 {data_dir}"
        )
    for name in SECRETS:
        path = data_dir / name
        if _open_to_others(path) & 0o044:
            mode = stat.S_IMODE(path.stat().st_mode)
            warnings.append(
                f"{path} is mode {mode:o}: group or others can read its secrets; "
                f"make it private: chmod 600 {path}"
            )
    return warnings
