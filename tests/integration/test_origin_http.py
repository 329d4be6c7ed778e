"""The origin over HTTP: a real ``pkgedge origin`` process, driven with raw requests shaped like
the real clients' (twine's multipart upload form, pip's and uv's Accept headers).

Sections: bad uploads (each with its status and reason, and nothing changed afterwards), the
simple API (PEP 503/691/629/592/658/714/700/792), the cache policy the origin declares, the
legacy JSON API, the web pages, and a project with 10,000 files.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import re
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from support.edge import edge_command
from support.origin import OriginProcess, twine_upload
from support.packages import make_sdist, make_wheel, read_metadata

JSON_V1 = "application/vnd.pypi.simple.v1+json"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
#: what pip (``pip/_internal/index/collector.py``) and uv send for index pages
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
SERIAL = "X-PyPI-Last-Serial"
WHEEL = "demo-1.0-py3-none-any.whl"

OriginFactory = Callable[..., OriginProcess]


# --- helpers -------------------------------------------------------------------------------


def digests(data: bytes) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake2_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }


def twine_form(
    dist: Path, data: bytes | None = None, **overrides: str | list[str] | None
) -> dict[str, Any]:
    """The text fields of a ``file_upload`` as twine sends them: action and protocol, the
    core metadata of the distribution (name, version, summary, ...), filetype, pyversion and
    the digests of ``data`` (the file's bytes by default). ``overrides`` replace fields; a
    ``None`` removes one."""
    data = dist.read_bytes() if data is None else data
    raw = read_metadata(dist)
    assert raw is not None
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    wheel = dist.name.endswith(".whl")
    form: dict[str, Any] = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": msg["Metadata-Version"],
        "name": msg["Name"],
        "version": msg["Version"],
        "filetype": "bdist_wheel" if wheel else "sdist",
        "pyversion": "py3" if wheel else "source",
        "summary": msg["Summary"],
        "description": msg.get_payload() or "",
    }
    if msg["Requires-Python"]:
        form["requires_python"] = msg["Requires-Python"]
    if msg.get_all("Requires-Dist"):
        form["requires_dist"] = msg.get_all("Requires-Dist")
    if msg["Description-Content-Type"]:
        form["description_content_type"] = msg["Description-Content-Type"]
    for algo, value in digests(data).items():
        form[f"{algo}_digest"] = value
    for key, value in overrides.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return form


def post_upload(
    origin: OriginProcess,
    token: str | None,
    filename: str,
    data: bytes,
    form: dict[str, Any],
    *,
    path: str = "/legacy/",
    user: str = "__token__",
) -> httpx.Response:
    """POST a multipart upload (fields, then the file as ``content``) with basic auth."""
    return httpx.post(
        origin.url + path,
        data=form,
        files={"content": (filename, data, "application/octet-stream")},
        auth=None if token is None else (user, token),
        timeout=60,
    )


def upload(origin: OriginProcess, token: str, dist: Path, *, path: str = "/legacy/") -> None:
    r = post_upload(origin, token, dist.name, dist.read_bytes(), twine_form(dist), path=path)
    assert r.status_code == 200, r.text


def reason(r: httpx.Response) -> str:
    """The plain-text reason of an error answer (one line)."""
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return r.text.rstrip("\n")


def files_path(sha256: str, filename: str) -> str:
    """Where the origin serves a file: by content, ``/files/ab/cd/<rest of sha256>/<name>``."""
    return f"/files/{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"


def media_type(r: httpx.Response) -> str:
    return r.headers["content-type"].split(";")[0].strip()


def directives(value: str) -> dict[str, str]:
    """``max-age=60, public`` → ``{"max-age": "60", "public": ""}``."""
    out = {}
    for part in value.split(","):
        key, _, val = part.strip().partition("=")
        if key:
            out[key.lower()] = val.strip().strip('"')
    return out


def pkgedge(origin: OriginProcess, *args: str) -> str:
    """Run a ``pkgedge`` command against the origin's data directory (as an operator would)."""
    out = subprocess.run(
        [*edge_command(), *args, "--data-dir", str(origin.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def create_token(origin: OriginProcess, project: str | None = None) -> tuple[int, str]:
    """A new token: ``(id, secret)``, from ``pkgedge token create``'s output."""
    out = pkgedge(origin, "token", "create", *(["--project", project] if project else []))
    lines = out.strip().splitlines()
    m = re.match(r"token (\d+) for ", lines[0])
    assert m, out
    return int(m.group(1)), lines[-1]


def token_states(origin: OriginProcess) -> dict[int, str]:
    """``{id: "active" | "revoked"}`` from ``pkgedge token list``."""
    rows = [line.split("\t") for line in pkgedge(origin, "token", "list").splitlines() if line]
    return {int(row[0]): row[1] for row in rows}


def blobs(origin: OriginProcess) -> list[str]:
    """Every regular file in blob storage (``DATA_DIR/files``), temporary files included."""
    root = origin.data_dir / "files"
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def incoming(origin: OriginProcess) -> list[str]:
    """Whatever an upload left in the spool directory (nothing, once it is answered)."""
    return sorted(p.name for p in (origin.data_dir / "incoming").iterdir())


def snapshot(origin: OriginProcess, *projects: str) -> dict[str, Any]:
    """What clients and storage can see: the project list and serial, each project's simple
    page and JSON document (status and body), and the blob files."""
    listing = origin.get("/simple/", headers={"Accept": JSON_V1})
    out: dict[str, Any] = {
        "list": listing.json(),
        "serial": listing.headers[SERIAL],
        "blobs": blobs(origin),
    }
    for name in projects:
        page = origin.get(f"/simple/{name}/", headers={"Accept": JSON_V1})
        doc = origin.get(f"/pypi/{name}/json")
        out[name] = (page.status_code, page.text, doc.status_code, doc.text)
    return out


def assert_unchanged(origin: OriginProcess, before: dict[str, Any], *projects: str) -> None:
    assert snapshot(origin, *projects) == before
    assert incoming(origin) == []


class Page(HTMLParser):
    """The anchors (attributes and text) and ``<meta name=...>`` tags of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.meta: dict[str, str | None] = {}
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []
        elif tag == "meta" and dict(attrs).get("name"):
            self.meta[str(dict(attrs)["name"])] = dict(attrs).get("content")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text)))
            self._open = None

    def files(self) -> dict[str, dict[str, str | None]]:
        """By filename (the anchor's text), the anchor's attributes."""
        return {text: attrs for attrs, text in self.anchors}


def rewrite_wheel(path: Path, replace: dict[str, bytes]) -> Path:
    """Replace members of a wheel (e.g. its METADATA) in place, with a RECORD to match."""
    import base64

    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(replace)
    record = next(n for n in members if n.endswith(".dist-info/RECORD"))
    lines = []
    for arc, data in members.items():
        if arc != record:
            b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.append(f"{arc},sha256={b64},{len(data)}\n")
    members[record] = ("".join(lines) + f"{record},,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc, data in members.items():
            zf.writestr(zipfile.ZipInfo(arc, date_time=(2020, 2, 2, 0, 0, 0)), data)
    path.write_bytes(buf.getvalue())
    return path


def noise(size: int) -> bytes:
    """Deterministic bytes that do not compress (so a wheel holding them is big)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:size])


@dataclass
class Hosted:
    """A running origin with an all-projects token, and ``demo`` 1.0 (a wheel) uploaded."""

    origin: OriginProcess
    token: str
    tmp: Path
    wheel: Path


@pytest.fixture
def origin(origin_factory: OriginFactory) -> OriginProcess:
    return origin_factory()


@pytest.fixture
def hosted(origin: OriginProcess, tmp_path: Path) -> Hosted:
    token = origin.token()
    wheel = make_wheel(tmp_path / "dists", "demo", "1.0")
    upload(origin, token, wheel)
    return Hosted(origin, token, tmp_path, wheel)


# --- 1. bad input: exact status and reason, nothing changed ------------------------------


#: content type, body, and the reason's start and end: the origin says "malformed multipart
#: upload: " followed by the multipart parser's own message
MALFORMED = {
    "no boundary": (
        "multipart/form-data",
        b"--x\r\n",
        "malformed multipart upload: ",
        "Missing boundary in multipart.",
    ),
    "not multipart at all": (
        "multipart/form-data; boundary=XyZ",
        b"this is not a multipart body",
        "malformed multipart upload: ",
        "Invalid multipart data.",
    ),
    "part without a name": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XyZ--\r\n",
        "malformed multipart upload: ",
        'The Content-Disposition header field "name" must be provided.',
    ),
    "header line without a colon": (
        "multipart/form-data; boundary=XyZ",
        b"--XyZ\r\nno colon in this header\r\n\r\nabc\r\n--XyZ--\r\n",
        "malformed multipart upload: ",
        "Invalid multipart data.",
    ),
    # cut off inside the file part: the part never completes, so there is no file
    "truncated in the file": (
        "multipart/form-data; boundary=XyZ",
        b'--XyZ\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="content"; filename="' + WHEEL.encode()
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04 cut here',
        "Upload payload does not have a file named 'content'.",
        "",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_multipart_body_is_400(hosted: Hosted, case: str) -> None:
    content_type, body, prefix, detail = MALFORMED[case]
    origin = hosted.origin
    before = snapshot(origin, "demo")
    r = httpx.post(
        origin.url + "/legacy/",
        content=body,
        headers={"Content-Type": content_type},
        auth=("__token__", hosted.token),
        timeout=30,
    )
    assert r.status_code == 400
    assert reason(r).startswith(prefix) and reason(r).endswith(detail)
    assert r.headers["cache-control"] == "no-store"
    assert_unchanged(origin, before, "demo")


def test_no_auth_is_401_with_www_authenticate(hosted: Hosted) -> None:
    origin, wheel = hosted.origin, make_wheel(hosted.tmp / "v2", "demo", "2.0")
    before = snapshot(origin, "demo")
    r = post_upload(origin, None, wheel.name, wheel.read_bytes(), twine_form(wheel))
    assert r.status_code == 401
    assert reason(r) == "authentication required: an API token (username __token__)"
    assert r.headers["www-authenticate"] == 'Basic realm="pkgedge"'
    assert_unchanged(origin, before, "demo")


@pytest.mark.parametrize(
    ("user", "secret", "expected"),
    [
        (
            "__token__",
            "pkgedge-" + "x" * 43,
            "Invalid or non-existent authentication information: "
            "the API token is unknown or revoked",
        ),
        (
            "__token__",
            "not-even-a-token",
            "Invalid or non-existent authentication information: "
            "the API token is unknown or revoked",
        ),
        (
            "alice",
            None,  # the right token under the wrong username
            "Invalid or non-existent authentication information: "
            "use the username __token__ and an API token as password",
        ),
    ],
    ids=["unknown token", "garbage token", "wrong username"],
)
def test_wrong_token_is_403(hosted: Hosted, user: str, secret: str | None, expected: str) -> None:
    origin, wheel = hosted.origin, make_wheel(hosted.tmp / "v2", "demo", "2.0")
    before = snapshot(origin, "demo")
    r = post_upload(
        origin, secret or hosted.token, wheel.name, wheel.read_bytes(), twine_form(wheel), user=user
    )
    assert r.status_code == 403
    assert reason(r) == expected
    assert_unchanged(origin, before, "demo")


def test_token_scoped_to_another_project_is_403(hosted: Hosted) -> None:
    origin = hosted.origin
    _, other = create_token(origin, project="Other_Project")
    wheel = make_wheel(hosted.tmp / "v2", "demo", "2.0")
    before = snapshot(origin, "demo", "other-project")
    r = post_upload(origin, other, wheel.name, wheel.read_bytes(), twine_form(wheel))
    assert r.status_code == 403
    assert reason(r) == (
        "Invalid API Token: this token is scoped to project 'other-project', not 'demo'"
    )
    assert_unchanged(origin, before, "demo", "other-project")
    # ...and the same token may upload to its own project
    own = make_wheel(hosted.tmp / "own", "other.project", "1.0")
    r = post_upload(origin, other, own.name, own.read_bytes(), twine_form(own))
    assert r.status_code == 200, r.text


def test_revoked_token_is_403(hosted: Hosted) -> None:
    origin = hosted.origin
    token_id, secret = create_token(origin)
    assert token_states(origin)[token_id] == "active"
    v2 = make_wheel(hosted.tmp / "v2", "demo", "2.0")
    v3 = make_wheel(hosted.tmp / "v3", "demo", "3.0")
    r = post_upload(origin, secret, v2.name, v2.read_bytes(), twine_form(v2))
    assert r.status_code == 200, r.text  # the token works until revoked

    out = pkgedge(origin, "token", "revoke", str(token_id))
    assert out.strip() == f"token {token_id} revoked"
    assert token_states(origin)[token_id] == "revoked"
    before = snapshot(origin, "demo")
    r = post_upload(origin, secret, v3.name, v3.read_bytes(), twine_form(v3))
    assert r.status_code == 403
    assert reason(r) == (
        "Invalid or non-existent authentication information: the API token is unknown or revoked"
    )
    assert_unchanged(origin, before, "demo")


@pytest.mark.parametrize("field", ["sha256_digest", "blake2_256_digest", "md5_digest"])
def test_wrong_digest_is_400(hosted: Hosted, field: str) -> None:
    origin, wheel = hosted.origin, make_wheel(hosted.tmp / "v2", "demo", "2.0")
    before = snapshot(origin, "demo")
    form = twine_form(wheel, **{field: digests(b"other bytes")[field.removesuffix("_digest")]})
    r = post_upload(origin, hosted.token, wheel.name, wheel.read_bytes(), form)
    assert r.status_code == 400
    assert reason(r) == (
        "The digest supplied does not match a digest calculated from the uploaded file."
    )
    assert_unchanged(origin, before, "demo")


def test_oversized_file_is_413(origin_factory: OriginFactory, tmp_path: Path) -> None:
    origin = origin_factory(extra_args=["--max-upload-size", "10KB"])
    token = origin.token()
    small = make_wheel(tmp_path / "small", "demo", "1.0")
    upload(origin, token, small)
    big = make_wheel(tmp_path / "big", "demo", "2.0", extra_files={"demo/blob.bin": noise(20_000)})
    assert big.stat().st_size > 10_000
    before = snapshot(origin, "demo")
    r = post_upload(origin, token, big.name, big.read_bytes(), twine_form(big))
    assert r.status_code == 413
    # 10 KB = 10,000 bytes = 0.0095 MiB, shown with two decimals
    assert reason(r) == (
        "File too large. Limit for project 'demo' is 0.01 MB. "
        "Ask the administrators of this index to raise the limit."
    )
    assert_unchanged(origin, before, "demo")


def test_oversized_body_is_413_before_it_is_read(
    origin_factory: OriginFactory, tmp_path: Path
) -> None:
    origin = origin_factory(extra_args=["--max-upload-size", "10KB"])
    token = origin.token()
    big = make_wheel(tmp_path, "demo", "1.0", extra_files={"demo/blob.bin": noise(1_200_000)})
    before = snapshot(origin, "demo")
    r = post_upload(origin, token, big.name, big.read_bytes(), twine_form(big))
    assert r.status_code == 413
    assert reason(r).startswith("File too large. Limit")
    assert "0.01 MB" in reason(r)
    assert_unchanged(origin, before, "demo")


def test_text_file_named_whl_is_400(hosted: Hosted) -> None:
    origin = hosted.origin
    data = b"this is a text file, not a zip archive\n" * 20
    form = twine_form(hosted.wheel, data, version="2.0")
    before = snapshot(origin, "demo")
    r = post_upload(origin, hosted.token, "demo-2.0-py3-none-any.whl", data, form)
    assert r.status_code == 400
    assert reason(r) == "Invalid distribution file. File is not a zipfile."
    assert_unchanged(origin, before, "demo")


@pytest.mark.parametrize(
    "filename",
    ["../evil-1.0-py3-none-any.whl", "a/b.whl", "evil/../../evil-1.0-py3-none-any.whl"],
)
def test_path_in_filename_is_400_and_writes_nothing(hosted: Hosted, filename: str) -> None:
    origin = hosted.origin
    wheel = make_wheel(hosted.tmp / "evil", "evil", "1.0")
    data, form = wheel.read_bytes(), twine_form(wheel)
    wheel.unlink()  # so that the only copy of these bytes on disk would be the origin's
    before = snapshot(origin, "demo", "evil")
    r = post_upload(origin, hosted.token, filename, data, form)
    assert r.status_code == 400
    assert reason(r) == "Cannot upload a file with '/' or '\\' in the name."
    assert_unchanged(origin, before, "demo", "evil")
    # nothing named like the file anywhere in the test session's temporary tree
    base = origin.data_dir.parent
    leaf = filename.rsplit("/", 1)[-1]
    assert list(base.rglob(leaf)) == []
    same = [p for p in base.rglob("*") if p.is_file() and p.stat().st_size == len(data)]
    assert [p for p in same if p.read_bytes() == data] == []


@pytest.mark.parametrize(
    ("filename", "fields", "expected"),
    [
        (WHEEL, {"version": "2.0"}, "Version in filename should be '2.0' not '1.0'."),
        (WHEEL, {"name": "other"}, "Start filename for 'other' with 'other'."),
        # the form and the filename agree, the archive inside is demo 1.0
        (
            "demo-2.0-py3-none-any.whl",
            {"version": "2.0"},
            "Invalid distribution file. demo-1.0.dist-info does not belong to demo 2.0.",
        ),
        (
            "demo-1.0.tar.gz",
            {"filetype": "sdist", "pyversion": "source"},
            "Invalid distribution file.",
        ),
    ],
    ids=["version", "name", "archive", "wheel sent as sdist"],
)
def test_form_and_file_disagree_is_400(
    origin: OriginProcess, tmp_path: Path, filename: str, fields: dict[str, str], expected: str
) -> None:
    token = origin.token()
    wheel = make_wheel(tmp_path, "demo", "1.0")
    before = snapshot(origin, "demo", "other")
    r = post_upload(origin, token, filename, wheel.read_bytes(), twine_form(wheel, **fields))
    assert r.status_code == 400
    assert reason(r) == expected
    assert_unchanged(origin, before, "demo", "other")


@pytest.mark.parametrize("path", ["/legacy/", "/"])
def test_identical_reupload_succeeds_and_changes_nothing(hosted: Hosted, path: str) -> None:
    origin = hosted.origin
    before = snapshot(origin, "demo")
    assert len(before["blobs"]) == 2  # the wheel and its .metadata
    r = post_upload(
        origin,
        hosted.token,
        hosted.wheel.name,
        hosted.wheel.read_bytes(),
        twine_form(hosted.wheel),
        path=path,
    )
    assert r.status_code == 200
    assert r.text == "OK (identical file already uploaded)\n"
    assert_unchanged(origin, before, "demo")


def test_identical_reupload_with_twine(origin: OriginProcess, tmp_path: Path) -> None:
    token = origin.token()
    wheel = make_wheel(tmp_path, "demo", "1.0")
    sdist = make_sdist(tmp_path, "demo", "1.0")
    first = twine_upload(origin.url + "/legacy/", token, [wheel, sdist])
    assert first.returncode == 0, first.stdout + first.stderr
    before = snapshot(origin, "demo")
    # twine refuses --skip-existing for any index but PyPI's (a client-side check), so a
    # re-run of a release job relies on the index answering 200 to the identical file
    again = twine_upload(origin.url + "/legacy/", token, [wheel, sdist])
    assert again.returncode == 0, again.stdout + again.stderr
    assert_unchanged(origin, before, "demo")


def _conflict(filename: str, data: bytes) -> str:
    blake2 = digests(data)["blake2_256"]
    return (
        f"File already exists ({filename!r}, with blake2_256 hash {blake2!r}). "
        "Files cannot be replaced: upload a new version instead. "
        "See /project/demo/1.0/ for the files of this release."
    )


@pytest.mark.parametrize(
    "case", ["same filename, other bytes", "same bytes, other filename (build tag)"]
)
def test_file_already_exists_is_400(hosted: Hosted, case: str) -> None:
    origin = hosted.origin
    if case.startswith("same filename"):
        other = make_wheel(hosted.tmp / "other", "demo", "1.0", extra_files={"demo/x.py": "x=1"})
        filename, data = other.name, other.read_bytes()
    else:
        filename, data = "demo-1.0-1-py3-none-any.whl", hosted.wheel.read_bytes()
    assert filename == WHEEL or data == hosted.wheel.read_bytes()
    before = snapshot(origin, "demo")
    r = post_upload(origin, hosted.token, filename, data, twine_form(hosted.wheel, data))
    assert r.status_code == 400, r.text
    assert reason(r) == _conflict(filename, data)
    assert_unchanged(origin, before, "demo")


def test_delete_file_removes_it_from_pages_and_storage(hosted: Hosted) -> None:
    origin = hosted.origin
    r = httpx.delete(
        f"{origin.url}/api/files/{WHEEL}",
        headers={"Authorization": f"Bearer {hosted.token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": [WHEEL]}
    page = origin.get("/simple/demo/", headers={"Accept": JSON_V1}).json()
    assert page["files"] == []
    assert blobs(origin) == []
    again = httpx.delete(
        f"{origin.url}/api/files/{WHEEL}",
        headers={"Authorization": f"Bearer {hosted.token}"},
        timeout=30,
    )
    assert again.status_code == 404
    assert reason(again) == "no such file"


@pytest.mark.parametrize("same_bytes", [True, False], ids=["same bytes", "other bytes"])
def test_deleted_filename_is_never_reused(hosted: Hosted, same_bytes: bool) -> None:
    origin = hosted.origin
    r = httpx.delete(
        f"{origin.url}/api/files/{WHEEL}",
        headers={"Authorization": f"Bearer {hosted.token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    if same_bytes:
        data = hosted.wheel.read_bytes()
    else:
        other = make_wheel(hosted.tmp / "other", "demo", "1.0", extra_files={"demo/x.py": "x=1"})
        data = other.read_bytes()
    before = snapshot(origin, "demo")
    assert before["blobs"] == []
    r = post_upload(origin, hosted.token, WHEEL, data, twine_form(hosted.wheel, data))
    assert r.status_code == 400, r.text
    assert reason(r) == "This filename has already been used, use a different version."
    assert_unchanged(origin, before, "demo")


# --- 2. the simple API ---------------------------------------------------------------------


@pytest.fixture
def released(hosted: Hosted) -> Hosted:
    """``demo`` 1.0 (wheel), 1.0 (sdist) and 2.0 (wheel, ``Requires-Python >=3.9``)."""
    origin, tmp = hosted.origin, hosted.tmp
    upload(origin, hosted.token, make_sdist(tmp / "dists", "demo", "1.0"))
    upload(
        origin,
        hosted.token,
        make_wheel(tmp / "dists", "demo", "2.0", requires_python=">=3.9", requires_dist=["idna"]),
    )
    return hosted


NEGOTIATION = [
    ({"Accept": PIP_ACCEPT}, None, JSON_V1),
    ({"Accept": UV_ACCEPT}, None, JSON_V1),
    ({"Accept": JSON_V1}, None, JSON_V1),
    ({"Accept": "application/vnd.pypi.simple.latest+json"}, None, JSON_V1),
    ({"Accept": HTML_V1}, None, HTML_V1),
    ({"Accept": "application/vnd.pypi.simple.latest+html"}, None, HTML_V1),
    ({"Accept": "text/html"}, None, "text/html"),
    ({"Accept": "*/*"}, None, "text/html"),
    ({}, None, "text/html"),  # httpx sends */*: a browser, curl
    ({"Accept": f"text/html, {JSON_V1};q=0.5"}, None, "text/html"),
    # PEP 691's URL parameter wins over the Accept header
    ({"Accept": "text/html"}, JSON_V1, JSON_V1),
    ({"Accept": JSON_V1}, HTML_V1, HTML_V1),
    ({"Accept": JSON_V1}, "text/html", "text/html"),
    ({"Accept": "image/png"}, JSON_V1, JSON_V1),
]


@pytest.mark.parametrize("path", ["/simple/", "/simple/demo/"])
@pytest.mark.parametrize(("headers", "format_param", "expected"), NEGOTIATION)
def test_content_negotiation(
    hosted: Hosted, path: str, headers: dict[str, str], format_param: str | None, expected: str
) -> None:
    params = {"format": format_param} if format_param else None
    r = hosted.origin.get(path, headers=headers, params=params)
    assert r.status_code == 200
    assert media_type(r) == expected
    assert r.headers["vary"] == "Accept"
    if expected == JSON_V1:
        assert r.json()["meta"]["api-version"] == "1.4"
    else:
        assert Page(r.text).meta["pypi:repository-version"] == "1.4"


@pytest.mark.parametrize("path", ["/simple/", "/simple/demo/"])
@pytest.mark.parametrize("accept", ["image/png", f"{JSON_V1};q=0, text/html;q=0"])
def test_406_when_nothing_acceptable(hosted: Hosted, path: str, accept: str) -> None:
    r = hosted.origin.get(path, headers={"Accept": accept})
    assert r.status_code == 406
    assert reason(r) == f"no acceptable representation: ask for {JSON_V1} or {HTML_V1}"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple/Foo_Bar/", "/simple/foo-bar/"),
        ("/simple/FOO.bar/", "/simple/foo-bar/"),
        ("/simple/foo--_bar/", "/simple/foo-bar/"),
        ("/simple/foo-bar", "/simple/foo-bar/"),
        ("/simple/Foo_Bar", "/simple/foo-bar/"),
        ("/simple", "/simple/"),
    ],
)
def test_redirects_to_the_normalised_name_with_a_slash(
    origin: OriginProcess, tmp_path: Path, path: str, location: str
) -> None:
    upload(origin, origin.token(), make_wheel(tmp_path, "Foo_Bar", "1.0"))
    r = origin.get(path, headers={"Accept": JSON_V1})
    assert r.status_code == 301
    assert r.headers["location"] == location
    followed = origin.get(path, headers={"Accept": JSON_V1}, follow_redirects=True)
    assert followed.status_code == 200
    assert media_type(followed) == JSON_V1


def test_unknown_project_is_404(origin: OriginProcess) -> None:
    r = origin.get("/simple/nope/", headers={"Accept": JSON_V1})
    assert r.status_code == 404
    assert reason(r) == "no project named 'nope'"


def test_project_list_in_both_formats(origin: OriginProcess, tmp_path: Path) -> None:
    token = origin.token()
    for name in ("Zeta.Pkg", "alpha", "Mid_Name"):
        upload(origin, token, make_wheel(tmp_path, name, "1.0"))
    data = origin.get("/simple/", headers={"Accept": JSON_V1})
    assert data.json()["projects"] == [
        {"name": "alpha"},
        {"name": "Mid_Name"},
        {"name": "Zeta.Pkg"},
    ]
    assert data.json()["meta"]["_last-serial"] == int(data.headers[SERIAL])
    page = Page(origin.get("/simple/", headers={"Accept": HTML_V1}).text)
    assert page.anchors == [
        ({"href": "alpha/"}, "alpha"),
        ({"href": "mid-name/"}, "Mid_Name"),
        ({"href": "zeta-pkg/"}, "Zeta.Pkg"),
    ]
    # every listed link leads to a project page
    for attrs, _ in page.anchors:
        assert origin.get("/simple/" + str(attrs["href"])).status_code == 200


def test_last_serial_grows_with_each_change(origin: OriginProcess, tmp_path: Path) -> None:
    token = origin.token()
    seen = [int(origin.get("/simple/").headers[SERIAL])]
    for dist in (
        make_wheel(tmp_path, "demo", "1.0"),
        make_sdist(tmp_path, "demo", "1.0"),
        make_wheel(tmp_path, "other", "1.0"),
        make_wheel(tmp_path, "demo", "2.0"),
    ):
        upload(origin, token, dist)
        listing = origin.get("/simple/", headers={"Accept": JSON_V1})
        seen.append(int(listing.headers[SERIAL]))
        assert listing.json()["meta"]["_last-serial"] == seen[-1]
    assert seen == sorted(set(seen)), seen  # strictly increasing
    # a project page carries the serial of that project's latest change
    demo = origin.get("/simple/demo/", headers={"Accept": JSON_V1})
    assert int(demo.headers[SERIAL]) == demo.json()["meta"]["_last-serial"] == seen[-1]
    other = origin.get("/simple/other/", headers={"Accept": JSON_V1})
    assert int(other.headers[SERIAL]) == seen[3]
    # yanking is a change too
    r = httpx.post(
        f"{origin.url}/api/projects/demo/2.0/yank",
        json={"reason": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert int(origin.get("/simple/demo/").headers[SERIAL]) > seen[-1]


def _json_and_html(origin: OriginProcess, project: str) -> tuple[dict[str, Any], Page]:
    data = origin.get(f"/simple/{project}/", headers={"Accept": JSON_V1})
    page = origin.get(f"/simple/{project}/", headers={"Accept": HTML_V1})
    assert data.status_code == page.status_code == 200
    return data.json(), Page(page.text)


def test_yank_with_reason_then_unyank(released: Hosted) -> None:
    origin, token = released.origin, released.token
    why = 'broken <b>"build"</b> & more'
    r = httpx.post(
        f"{origin.url}/api/projects/demo/1.0/yank",
        json={"reason": why},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"yanked": True, "reason": why}
    data, page = _json_and_html(origin, "demo")
    yanked = {f["filename"]: f["yanked"] for f in data["files"]}
    assert yanked == {WHEEL: why, "demo-1.0.tar.gz": why, "demo-2.0-py3-none-any.whl": False}
    html_yanked = {name: a.get("data-yanked") for name, a in page.files().items()}
    assert html_yanked == {WHEEL: why, "demo-1.0.tar.gz": why, "demo-2.0-py3-none-any.whl": None}

    r = httpx.post(
        f"{origin.url}/api/projects/demo/1.0/unyank",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    data, page = _json_and_html(origin, "demo")
    assert all(f["yanked"] is False for f in data["files"])
    assert all("data-yanked" not in a for a in page.files().values())


def test_yank_without_reason_and_errors(released: Hosted) -> None:
    origin, token = released.origin, released.token
    auth = {"Authorization": f"Bearer {token}"}
    r = httpx.post(f"{origin.url}/api/projects/demo/2.0/yank", headers=auth)
    assert r.status_code == 200, r.text
    data, page = _json_and_html(origin, "demo")
    assert {f["filename"]: f["yanked"] for f in data["files"]}["demo-2.0-py3-none-any.whl"] is True
    assert page.files()["demo-2.0-py3-none-any.whl"]["data-yanked"] == ""

    r = httpx.post(f"{origin.url}/api/projects/demo/9.9/yank", headers=auth)
    assert r.status_code == 404
    assert reason(r) == "no release '9.9' of 'demo'"
    r = httpx.post(f"{origin.url}/api/projects/demo/1.0/yank")
    assert r.status_code == 401
    _, scoped = create_token(origin, project="other")
    r = httpx.post(
        f"{origin.url}/api/projects/demo/1.0/yank", headers={"Authorization": f"Bearer {scoped}"}
    )
    assert r.status_code == 403


def test_core_metadata_served_with_the_advertised_hash(released: Hosted) -> None:
    origin = released.origin
    data, page = _json_and_html(origin, "demo")
    html_files = page.files()
    local = {p.name: p for p in (released.tmp / "dists").iterdir()}
    assert len(data["files"]) == 3
    for f in data["files"]:
        advertised = f["core-metadata"]
        assert advertised, f  # wheels, and sdists with Metadata-Version 2.2
        assert "dist-info-metadata" not in f  # PEP 714: not the old JSON key
        attrs = html_files[f["filename"]]
        assert attrs["data-core-metadata"] == f"sha256={advertised['sha256']}"
        assert attrs["data-dist-info-metadata"] == attrs["data-core-metadata"]  # PEP 714
        r = httpx.get(urljoin(origin.index_url + "demo/", f["url"]) + ".metadata")
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == advertised["sha256"]
        assert r.content == read_metadata(local[f["filename"]])
    # the metadata of 2.0 says what its wheel says
    wheel2 = next(f for f in data["files"] if f["filename"] == "demo-2.0-py3-none-any.whl")
    text = origin.get(wheel2["url"] + ".metadata").text
    assert "Requires-Python: >=3.9" in text and "Requires-Dist: idna" in text


def test_sdist_without_reliable_metadata_advertises_none(
    origin: OriginProcess, tmp_path: Path
) -> None:
    """An sdist whose PKG-INFO is older than 2.2 gets no .metadata file (PEP 643/658)."""
    import gzip
    import tarfile

    token = origin.token()
    sdist = make_sdist(tmp_path, "old", "1.0")
    raw = io.BytesIO()
    with tarfile.open(sdist, "r:gz") as src, tarfile.open(fileobj=raw, mode="w") as dst:
        for m in src.getmembers():
            body = src.extractfile(m).read()  # type: ignore[union-attr]
            if m.name.endswith("/PKG-INFO"):
                body = body.replace(b"Metadata-Version: 2.2", b"Metadata-Version: 2.1")
                m.size = len(body)
            dst.addfile(m, io.BytesIO(body))
    sdist.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    upload(origin, token, sdist)
    data, page = _json_and_html(origin, "old")
    assert data["files"][0]["core-metadata"] is False
    attrs = page.files()["old-1.0.tar.gz"]
    assert "data-core-metadata" not in attrs and "data-dist-info-metadata" not in attrs


def test_file_bytes_match_hash_and_size(released: Hosted) -> None:
    origin = released.origin
    data, page = _json_and_html(origin, "demo")
    local = {p.name: p.read_bytes() for p in (released.tmp / "dists").iterdir()}
    html_files = page.files()
    for f in data["files"]:
        body = local[f["filename"]]
        r = httpx.get(urljoin(origin.index_url + "demo/", f["url"]))
        assert r.status_code == 200
        assert r.content == body
        assert int(r.headers["content-length"]) == f["size"] == len(body)
        assert f["hashes"] == {"sha256": hashlib.sha256(body).hexdigest()}
        href = str(html_files[f["filename"]]["href"])
        url, _, fragment = href.partition("#")
        assert fragment == f"sha256={f['hashes']['sha256']}"
        assert url == f["url"]
        head = httpx.head(urljoin(origin.index_url + "demo/", url))
        assert head.status_code == 200
        assert int(head.headers["content-length"]) == len(body)


def test_pep700_and_pep792_fields(released: Hosted) -> None:
    origin = released.origin
    start = datetime.now(UTC)
    data, page = _json_and_html(origin, "demo")
    assert data["meta"]["api-version"] == "1.4"
    assert data["name"] == "demo"
    assert data["versions"] == ["1.0", "2.0"]
    assert data["project-status"] == {"status": "active"}
    assert page.meta["pypi:project-status"] == "active"
    for f in data["files"]:
        assert isinstance(f["size"], int) and f["size"] > 0
        when = f["upload-time"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", when), when
        uploaded = datetime.fromisoformat(when.replace("Z", "+00:00"))
        assert start - timedelta(minutes=5) < uploaded <= start
    requires = {f["filename"]: f.get("requires-python") for f in data["files"]}
    assert requires == {WHEEL: None, "demo-1.0.tar.gz": None, "demo-2.0-py3-none-any.whl": ">=3.9"}
    html_requires = {n: a.get("data-requires-python") for n, a in page.files().items()}
    assert html_requires == requires
    # PEP 503: the HTML attribute value is escaped (">" as "&gt;")
    raw = origin.get("/simple/demo/", headers={"Accept": HTML_V1}).text
    assert 'data-requires-python="&gt;=3.9"' in raw


def test_pypi_simple_reads_both_formats_alike(released: Hosted) -> None:
    from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, ProjectStatus, PyPISimple

    origin, token = released.origin, released.token
    r = httpx.post(
        f"{origin.url}/api/projects/demo/1.0/yank",
        json={"reason": "use 2.0"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200
    with PyPISimple(endpoint=origin.index_url) as client:
        index_json = client.get_index_page(accept=ACCEPT_JSON_ONLY)
        index_html = client.get_index_page(accept=ACCEPT_HTML_ONLY)
        assert index_json.projects == index_html.projects == ["demo"]
        assert index_json.repository_version == index_html.repository_version == "1.4"

        as_json = client.get_project_page("Demo", accept=ACCEPT_JSON_ONLY)
        as_html = client.get_project_page("Demo", accept=ACCEPT_HTML_ONLY)
        assert as_json.repository_version == as_html.repository_version == "1.4"
        assert as_json.last_serial == as_html.last_serial is not None
        assert as_json.status == as_html.status == ProjectStatus.ACTIVE
        assert as_json.versions == ["1.0", "2.0"]

        def key(p: Any) -> tuple[Any, ...]:
            return (
                p.filename, p.url, p.project, p.version, p.package_type, p.digests,
                p.requires_python, p.has_sig, p.is_yanked, p.yanked_reason, p.has_metadata,
                p.metadata_digests,
            )  # fmt: skip

        assert [key(p) for p in as_json.packages] == [key(p) for p in as_html.packages]
        assert [(p.filename, p.is_yanked, p.yanked_reason) for p in as_json.packages] == [
            (WHEEL, True, "use 2.0"),
            ("demo-1.0.tar.gz", True, "use 2.0"),
            ("demo-2.0-py3-none-any.whl", False, None),
        ]
        local = released.tmp / "dists"
        for pkg in as_json.packages:
            assert pkg.size == (local / pkg.filename).stat().st_size
            assert pkg.upload_time is not None
            # both check the digests the page advertised
            meta = client.get_package_metadata_bytes(pkg, verify=True)
            assert meta == read_metadata(local / pkg.filename)
            client.download_package(pkg, released.tmp / "got" / pkg.filename, verify=True)
            assert (released.tmp / "got" / pkg.filename).read_bytes() == (
                local / pkg.filename
            ).read_bytes()


# --- 3. the cache policy declared by the origin ------------------------------------------


PAGES = [
    ("/simple/", {"Accept": JSON_V1}, "all-projects"),
    ("/simple/", {"Accept": "text/html"}, "all-projects"),
    ("/simple/demo/", {"Accept": JSON_V1}, "project/demo"),
    ("/simple/demo/", {"Accept": HTML_V1}, "project/demo"),
    ("/pypi/demo/json", {}, "project/demo"),
    ("/pypi/demo/1.0/json", {}, "project/demo"),
]


@pytest.mark.parametrize(("path", "headers", "key"), PAGES)
def test_pages_declare_edge_and_client_ttls(
    hosted: Hosted, path: str, headers: dict[str, str], key: str
) -> None:
    r = hosted.origin.get(path, headers=headers)
    assert r.status_code == 200
    edge = directives(r.headers["surrogate-control"])
    client = directives(r.headers["cache-control"])
    assert int(edge["max-age"]) >= 3600  # long at the edge: purged on change
    assert int(edge["stale-while-revalidate"]) > 0
    assert int(edge["stale-if-error"]) > 0
    assert 0 < int(client["max-age"]) <= 600  # short in clients: they are never purged
    assert int(client["max-age"]) < int(edge["max-age"])
    assert "no-store" not in client and "private" not in client
    assert key in r.headers["surrogate-key"].split()


@pytest.mark.parametrize(("path", "headers", "key"), PAGES)
def test_etag_and_304(hosted: Hosted, path: str, headers: dict[str, str], key: str) -> None:
    origin = hosted.origin
    r = origin.get(path, headers=headers)
    etag = r.headers["etag"]
    assert re.fullmatch(r'"[^"]+"', etag), etag  # a strong validator
    again = origin.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == r.headers["cache-control"]
    listed = origin.get(path, headers={**headers, "If-None-Match": f'"nope", {etag}'})
    assert listed.status_code == 304
    stale = origin.get(path, headers={**headers, "If-None-Match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == r.content


def test_etag_changes_with_representation_and_content(hosted: Hosted, tmp_path: Path) -> None:
    origin = hosted.origin
    as_json = origin.get("/simple/demo/", headers={"Accept": JSON_V1})
    as_html = origin.get("/simple/demo/", headers={"Accept": HTML_V1})
    assert as_json.headers["etag"] != as_html.headers["etag"]
    upload(origin, hosted.token, make_wheel(tmp_path / "v2", "demo", "2.0"))
    r = origin.get(
        "/simple/demo/", headers={"Accept": JSON_V1, "If-None-Match": as_json.headers["etag"]}
    )
    assert r.status_code == 200
    assert r.headers["etag"] != as_json.headers["etag"]


def test_files_are_immutable_and_content_addressed(released: Hosted) -> None:
    origin = released.origin
    data = origin.get("/simple/demo/", headers={"Accept": JSON_V1}).json()
    for f in data["files"]:
        sha = f["hashes"]["sha256"]
        path = urlsplit(f["url"]).path
        assert path == files_path(sha, f["filename"])
        assert sha in path.replace("/", "")
        for url in (path, path + ".metadata"):
            r = origin.get(url)
            assert r.status_code == 200
            cc = directives(r.headers["cache-control"])
            assert "immutable" in cc
            assert int(cc["max-age"]) >= 365 * 86400
            assert "surrogate-key" not in r.headers  # nothing to purge: the URL never changes
        assert hashlib.sha256(origin.get(path).content).hexdigest() == sha


def test_missing_file_is_404(released: Hosted) -> None:
    r = released.origin.get("/files/00/00/" + "0" * 60 + "/" + WHEEL)
    assert r.status_code == 404
    assert reason(r) == "no such file"
    assert r.headers["cache-control"] == "no-store"
    r = released.origin.get("/files/../catalog.db")
    assert r.status_code == 404


# --- 4. the legacy JSON API --------------------------------------------------------------


@pytest.fixture
def two_releases(origin: OriginProcess, tmp_path: Path) -> tuple[OriginProcess, Path]:
    """``demo`` 1.0 (wheel + sdist, requires ``attrs>=20``) and 2.0 (wheel, requires
    ``attrs>=22`` and ``idna``, Python >=3.9), 2.0 yanked with a reason."""
    token = origin.token()
    dists = tmp_path / "dists"
    upload(origin, token, make_wheel(dists, "demo", "1.0", requires_dist=["attrs>=20"]))
    upload(origin, token, make_sdist(dists, "demo", "1.0", requires_dist=["attrs>=20"]))
    v2 = make_wheel(
        dists, "demo", "2.0", requires_dist=["attrs>=22", "idna"], requires_python=">=3.9"
    )
    upload(origin, token, v2)
    r = httpx.post(
        f"{origin.url}/api/projects/demo/2.0/yank",
        json={"reason": "broken build"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text
    return origin, dists


def _check_file(entry: dict[str, Any], path: Path, origin: OriginProcess, api_url: str) -> None:
    body = path.read_bytes()
    d = digests(body)
    assert entry["filename"] == path.name
    assert entry["digests"] == {
        "sha256": d["sha256"],
        "blake2b_256": d["blake2_256"],
        "md5": d["md5"],
    }
    assert entry["md5_digest"] == d["md5"]
    assert entry["size"] == len(body)
    assert entry["packagetype"] == ("bdist_wheel" if path.name.endswith(".whl") else "sdist")
    assert entry["python_version"] == ("py3" if path.name.endswith(".whl") else "source")
    assert entry["upload_time_iso_8601"].endswith("Z")
    assert entry["upload_time"] == entry["upload_time_iso_8601"][:19]
    got = origin.get(urlsplit(urljoin(api_url, entry["url"])).path)
    assert got.content == body


def test_json_api_project(two_releases: tuple[OriginProcess, Path]) -> None:
    origin, dists = two_releases
    r = origin.get("/pypi/demo/json")
    assert r.status_code == 200
    assert media_type(r) == "application/json"
    doc = r.json()
    info = doc["info"]
    # the latest release that is not yanked
    assert info["version"] == "1.0"
    assert info["name"] == "demo"
    assert info["summary"] == "demo test package built by the pkgedge test-suite"
    assert info["requires_dist"] == ["attrs>=20"]
    assert info["requires_python"] is None
    assert info["yanked"] is False and info["yanked_reason"] is None
    assert doc["last_serial"] == int(r.headers[SERIAL])
    assert list(doc["releases"]) == ["1.0", "2.0"]
    assert [f["filename"] for f in doc["releases"]["1.0"]] == [WHEEL, "demo-1.0.tar.gz"]
    assert [f["filename"] for f in doc["releases"]["2.0"]] == ["demo-2.0-py3-none-any.whl"]
    for f in doc["releases"]["1.0"]:
        assert f["yanked"] is False and f["yanked_reason"] is None
    (v2,) = doc["releases"]["2.0"]
    assert v2["yanked"] is True and v2["yanked_reason"] == "broken build"
    assert v2["requires_python"] == ">=3.9"
    assert doc["urls"] == doc["releases"]["1.0"]
    api = origin.url + "/pypi/demo/json"
    for entry in [*doc["releases"]["1.0"], v2]:
        _check_file(entry, dists / entry["filename"], origin, api)
    # any spelling of the name
    assert origin.get("/pypi/Demo/json").json() == doc


def test_json_api_release(two_releases: tuple[OriginProcess, Path]) -> None:
    origin, dists = two_releases
    r = origin.get("/pypi/demo/2.0/json")
    assert r.status_code == 200
    doc = r.json()
    assert "releases" not in doc
    info = doc["info"]
    assert info["version"] == "2.0"
    assert info["yanked"] is True and info["yanked_reason"] == "broken build"
    assert info["requires_dist"] == ["attrs>=22", "idna"]
    assert info["requires_python"] == ">=3.9"
    assert [f["filename"] for f in doc["urls"]] == ["demo-2.0-py3-none-any.whl"]
    _check_file(doc["urls"][0], dists / "demo-2.0-py3-none-any.whl", origin, str(r.url))
    one = origin.get("/pypi/demo/1.0/json").json()
    assert one["info"]["version"] == "1.0"
    assert one["info"]["requires_dist"] == ["attrs>=20"]
    assert [f["filename"] for f in one["urls"]] == [WHEEL, "demo-1.0.tar.gz"]
    # PEP 440 equal versions find the release
    assert origin.get("/pypi/demo/2.0.0/json").json()["info"]["version"] == "2.0"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/pypi/nope/json", "no project named 'nope'"),
        ("/pypi/Nope_Pkg/json", "no project named 'nope-pkg'"),
        ("/pypi/nope/1.0/json", "no project named 'nope'"),
        ("/pypi/demo/9.9/json", "no release '9.9' of 'demo'"),
    ],
)
def test_json_api_404(two_releases: tuple[OriginProcess, Path], path: str, expected: str) -> None:
    origin, _ = two_releases
    r = origin.get(path)
    assert r.status_code == 404
    assert reason(r) == expected


def test_json_api_urls_use_the_base_url(origin_factory: OriginFactory, tmp_path: Path) -> None:
    origin = origin_factory(extra_args=["--base-url", "http://127.0.0.1:9/index/"])
    upload(origin, origin.token(), make_wheel(tmp_path, "demo", "1.0"))
    (entry,) = origin.get("/pypi/demo/json").json()["urls"]
    assert entry["url"].startswith("http://127.0.0.1:9/index/files/")


# --- 5. web pages --------------------------------------------------------------------------


def test_home_lists_projects(origin: OriginProcess, tmp_path: Path) -> None:
    token = origin.token()
    for name in ("Alpha_One", "beta"):
        upload(origin, token, make_wheel(tmp_path, name, "1.0"))
    r = origin.get("/")
    assert r.status_code == 200
    assert media_type(r) == "text/html"
    links = {text: attrs["href"] for attrs, text in Page(r.text).anchors}
    assert links == {"Alpha_One": "/project/alpha-one/", "beta": "/project/beta/"}
    for href in links.values():
        assert origin.get(str(href)).status_code == 200


README = """\
# Hello Title

Some **bold words** and a [link](https://example.invalid/).

<script>alert("owned")</script>

<img src="x.png" onerror="alert(2)">
"""


def test_project_page_renders_markdown_readme_safely(origin: OriginProcess, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    with zipfile.ZipFile(wheel) as zf:
        name = "demo-1.0.dist-info/METADATA"
        meta = zf.read(name).decode()
    headers = meta.rstrip("\n") + "\nDescription-Content-Type: text/markdown\n\n"
    rewrite_wheel(wheel, {name: (headers + README).encode()})
    upload(origin, origin.token(), wheel)

    r = origin.get("/project/demo/")
    assert r.status_code == 200
    body = r.text
    assert re.search(r"<h1[^>]*>\s*Hello Title\W", body), body
    assert "<strong>bold words</strong>" in body
    assert "<script" not in body.lower()
    assert "onerror" not in body.lower()
    assert WHEEL in body
    # other spellings and the release URL show the same page
    assert origin.get("/project/Demo/").text == body
    assert origin.get("/project/demo/1.0/").status_code == 200
    assert origin.get("/project/nope/").status_code == 404


# --- 6. a project with 10,000 files --------------------------------------------------------


@pytest.fixture
def many_files(origin_factory: OriginFactory) -> Iterator[tuple[OriginProcess, dict[str, Any]]]:
    """An origin whose catalog holds ``many``: 100 versions of 100 wheels each (build tags
    0-99), written with the catalog API before the origin starts; no blobs behind them."""
    from pkgedge.index import names
    from pkgedge.index.catalog import Catalog
    from pkgedge.index.model import FileRow

    origin = origin_factory()
    origin.stop()
    expected: dict[str, Any] = {}
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    with Catalog(f"sqlite:///{origin.data_dir}/catalog.db") as catalog:
        catalog.migrate()
        for v in range(100):
            version = f"1.{v}"
            for build in range(100):
                filename = f"many-{version}-{build}-py3-none-any.whl"
                sha = hashlib.sha256(filename.encode()).hexdigest()
                row = FileRow(
                    project="many",
                    version=version,
                    filename=filename,
                    packagetype="bdist_wheel",
                    python_version="py3",
                    size=1000 + v * 100 + build,
                    sha256=sha,
                    upload_time=when,
                    blob_key=names.blob_key(sha, filename),
                    requires_python=">=3.8" if build % 2 else None,
                    metadata_sha256=hashlib.sha256(sha.encode()).hexdigest(),
                )
                catalog.add_file("many", {"summary": "many files"}, row)
                expected[filename] = row
    origin.start()
    yield origin, expected


@pytest.mark.slow  # ~40 s: 10,000 catalog transactions before the origin starts
def test_ten_thousand_files(many_files: tuple[OriginProcess, dict[str, Any]]) -> None:
    origin, expected = many_files
    assert len(expected) == 10_000

    r = origin.get("/simple/many/", headers={"Accept": UV_ACCEPT})
    assert r.status_code == 200 and media_type(r) == JSON_V1
    data = r.json()
    assert len(data["files"]) == 10_000
    assert data["versions"] == [f"1.{v}" for v in range(100)]
    for f in data["files"]:
        row = expected[f["filename"]]
        assert f["hashes"] == {"sha256": row.sha256}
        assert f["size"] == row.size
        assert f["url"] == files_path(row.sha256, row.filename)
        assert f["upload-time"] == "2024-05-06T07:08:09.123456Z"
        assert f.get("requires-python") == row.requires_python
        assert f["core-metadata"] == {"sha256": row.metadata_sha256}
    assert {f["filename"] for f in data["files"]} == set(expected)

    page = Page(origin.get("/simple/many/", headers={"Accept": "text/html"}).text)
    files = page.files()
    assert len(page.anchors) == len(files) == 10_000
    for filename, attrs in files.items():
        row = expected[filename]
        assert attrs["href"] == f"{files_path(row.sha256, filename)}#sha256={row.sha256}"
        assert attrs.get("data-requires-python") == row.requires_python
        assert attrs["data-core-metadata"] == f"sha256={row.metadata_sha256}"

    # conditional requests work at this size too
    again = origin.get(
        "/simple/many/", headers={"Accept": UV_ACCEPT, "If-None-Match": r.headers["etag"]}
    )
    assert again.status_code == 304
