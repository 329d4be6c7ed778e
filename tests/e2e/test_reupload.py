"""Re-uploads the way the public index answers them, with real twine and uv publish through
the edge: an identical file is accepted again (200) and skipped by ``uv publish --check-url``;
a different file under a stored filename is a clear 400 "File already exists" with a link.

This twine (7) refuses ``--skip-existing`` itself for any repository URL but the public
index's (UnsupportedConfiguration, before any request), so its decision is checked by calling
twine's own upload code and ``skip_upload`` on the edge's real answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from twine.commands.upload import skip_upload
from twine.package import PackageFile
from twine.repository import Repository

from support.edge import EdgeProcess
from support.origin import OriginProcess, twine_upload, uv_publish
from support.packages import make_sdist, make_wheel

pytestmark = pytest.mark.e2e


def dists(out: Path, name: str, version: str, **kw: object) -> list[Path]:
    out.mkdir(parents=True)
    return [make_wheel(out, name, version, **kw), make_sdist(out, name, version, **kw)]


def twine_answer(url: str, token: str, path: Path) -> tuple[int, str, bool]:
    """(status, text, whether ``twine upload --skip-existing`` would skip it) from twine's
    own upload request and decision."""
    repo = Repository(url, "__token__", token, disable_progress_bar=True)
    try:
        package = PackageFile.from_filename(str(path), None)
        resp = repo.upload(package)
        return resp.status_code, resp.text, skip_upload(resp, True, package)
    finally:
        repo.close()


def test_reupload_identical_is_accepted_and_a_different_file_is_a_clear_error(
    stack: tuple[OriginProcess, EdgeProcess], tmp_path: Path
) -> None:
    origin, edge = stack
    token = origin.token("twice")
    upload_url = edge.url + "/legacy/"
    first = dists(tmp_path / "first", "twice", "1.0")
    other = dists(tmp_path / "other", "twice", "1.0", extra_files={"twice/extra.py": "X = 1\n"})
    assert [p.name for p in first] == [p.name for p in other]
    r = twine_upload(upload_url, token, first)
    assert r.returncode == 0, r.stdout + r.stderr

    # identical again: accepted (200), by the twine command and by twine's own code
    r = twine_upload(upload_url, token, first)
    assert r.returncode == 0, r.stdout + r.stderr
    status, _, _ = twine_answer(upload_url, token, first[0])
    assert status == 200

    # other bytes under a stored filename: 400 "File already exists", a link; twine fails
    status, text, skipped = twine_answer(upload_url, token, other[0])
    assert status == 400 and text.startswith("File already exists")
    assert "/project/twice/1.0/" in text
    assert skipped  # what --skip-existing does with the public index's answer too
    # twine (7) prints the standard phrase, then the response's reason phrase, which carries
    # the explanation (the origin writes it, the edge passes it on); no --verbose needed
    r = twine_upload(upload_url, token, other[:1])
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "400 Bad Request from " + upload_url + " File already exists ('twice-1.0" in out, out
    r = twine_upload(upload_url, "pypi-not-a-token", other[:1])
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0
    assert "the API token is unknown or revoked" in out, out
    r = twine_upload(upload_url, token, other[:1], "--verbose")  # the body is shown too
    assert r.returncode != 0 and "File already exists" in " ".join((r.stdout + r.stderr).split())

    # uv publish: identical files are skipped with --check-url, and accepted without it
    index = edge.url + "/simple/"
    r = uv_publish(upload_url, token, first, "--check-url", index)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "already exists" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    r = uv_publish(upload_url, token, first)
    assert r.returncode == 0, r.stdout + r.stderr
    # ... and other bytes under a stored filename are an error, with or without it
    r = uv_publish(upload_url, token, other[:1], "--check-url", index)
    assert r.returncode != 0 and "do not match" in " ".join(r.stderr.split()), r.stderr
    r = uv_publish(upload_url, token, other[:1])
    assert r.returncode != 0, r.stdout + r.stderr
    # (uv wraps its messages to the terminal's width: compare with the line breaks folded)
    assert "File already exists" in " ".join((r.stdout + r.stderr).split()), r.stderr

    # the stored file is the first one, unchanged
    page = edge.get("/simple/twice/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    hashes = {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}
    for path in first:
        assert hashes[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()
