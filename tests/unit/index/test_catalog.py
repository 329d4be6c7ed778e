"""Conformance suite of the catalog, run against SQLite (a temporary file) and a real PostgreSQL
server (started once per session by ``support.postgres``)."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from packaging.version import Version
from sqlalchemy import func, insert, inspect, select

from pkgedge.errors import HTTPError, PkgedgeError
from pkgedge.index import tables
from pkgedge.index.catalog import Catalog
from pkgedge.index.catalog.errors import (
    BadRequest,
    CatalogError,
    FileExists,
    FilenameConflict,
    FilenameReused,
    NotFound,
)
from pkgedge.index.catalog.reads import version_sort_key
from pkgedge.index.catalog.tokens import TOKEN_PREFIX
from pkgedge.index.migrations import alembic_config
from pkgedge.index.model import FileRow
from support.postgres import PostgresServer, free_port

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_file(
    project: str, version: str, tag: str = "py3-none-any", *, content: str | None = None
) -> FileRow:
    """A wheel row for ``project`` ``version``; the digests derive from ``content``."""
    dist = project.replace("-", "_")
    filename = f"{dist}-{version}-{tag}.whl"
    data = (content if content is not None else filename).encode()
    sha = hashlib.sha256(data).hexdigest()
    return FileRow(
        project=project,
        version=version,
        filename=filename,
        packagetype="bdist_wheel",
        python_version=tag.split("-", maxsplit=1)[0],
        size=len(data),
        sha256=sha,
        upload_time=T0,
        blob_key=f"{sha[:2]}/{sha[2:4]}/{sha[4:]}/{filename}",
        requires_python=">=3.8",
        blake2b_256=hashlib.blake2b(data, digest_size=32).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        metadata_sha256=hashlib.sha256(b"META" + data).hexdigest(),
    )


def upload(catalog: Catalog, name: str, version: str, tag: str = "py3-none-any") -> int:
    row = make_file(name.lower().replace("_", "-"), version, tag)
    return catalog.add_file(name, {"summary": f"{name} {version}", "version": version}, row)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


@pytest.fixture
def catalog(db_url: str) -> Iterator[Catalog]:
    with Catalog(db_url) as cat:
        cat.migrate()
        yield cat


# -- schema -------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_keeps_data(db_url: str) -> None:
    with Catalog(db_url) as cat:
        cat.migrate()
        upload(cat, "Demo", "1.0")
        cat.migrate()
        cat.migrate()
        with cat.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        assert current == ScriptDirectory.from_config(alembic_config()).get_current_head()
        names = set(inspect(cat.engine).get_table_names())
        assert set(tables.metadata.tables) | {"alembic_version"} <= names
    with Catalog(db_url) as again:  # a second process starting up
        again.migrate()
        assert [p.project for p in again.list_projects()] == ["demo"]


def test_concurrent_migrations_on_a_fresh_database(db_url: str) -> None:
    catalogs = [Catalog(db_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(cat: Catalog) -> None:
        try:
            cat.migrate()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(cat,)) for cat in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for cat in catalogs:
        cat.close()
    assert errors == []


def test_downgrade_to_base_and_upgrade_again(catalog: Catalog) -> None:
    upload(catalog, "demo", "1.0")
    cfg = alembic_config()
    with catalog.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(catalog.engine).get_table_names()) <= {"alembic_version"}
    catalog.migrate()
    assert catalog.list_projects() == [] and catalog.last_serial() == 0
    upload(catalog, "demo", "1.0")


def test_migrations_match_tables(catalog: Catalog) -> None:
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    assert diff == []
    files_indexes = {
        i["name"]: i["column_names"] for i in inspect(catalog.engine).get_indexes("files")
    }
    assert files_indexes["ix_files_project_version_filename"] == ["project", "version", "filename"]


def test_reads_before_migrate_say_so(db_url: str) -> None:
    with Catalog(db_url) as cat, pytest.raises(CatalogError, match=r"migrate\(\)"):
        cat.list_projects()


# -- uploads ------------------------------------------------------------------------------


def test_add_file_creates_project_and_release(catalog: Catalog) -> None:
    row = make_file("foo-bar", "1.0")
    serial = catalog.add_file("Foo_Bar", {"summary": "hello", "classifiers": ["A :: B"]}, row)
    assert serial == catalog.last_serial() == catalog.project_serial("FOO.bar") > 0
    project = catalog.get_project("foo.BAR")
    assert project is not None
    assert (project.project, project.display_name, project.last_serial) == (
        "foo-bar",
        "Foo_Bar",
        serial,
    )
    assert project.status == "active" and project.created.tzinfo is not None
    assert [p.project for p in catalog.list_projects()] == ["foo-bar"]
    release = catalog.release("foo_bar", "1.0")
    assert release is not None
    assert release.metadata == {"summary": "hello", "classifiers": ["A :: B"]}
    assert catalog.project_files("Foo-Bar") == [row]
    assert catalog.release_files("foo-bar", "1.0") == [row]
    assert catalog.file_by_name(row.filename) == row
    assert catalog.file_by_blob_key(row.blob_key) == row
    assert catalog.file_by_name("nope.whl") is None and catalog.file_by_blob_key("x") is None
    assert catalog.get_project("other") is None and catalog.release("foo-bar", "2") is None
    assert catalog.project_files("foo-bar")[0].upload_time == T0


def test_second_file_joins_release_with_equal_version(catalog: Catalog) -> None:
    upload(catalog, "demo", "1.0")
    catalog.add_file("demo", {"summary": "ignored"}, make_file("demo", "1.0.0", "cp311-none-any"))
    assert [r.version for r in catalog.releases("demo")] == ["1.0"]
    files = catalog.release_files("demo", "1.0.0")
    assert [f.version for f in files] == ["1.0", "1.0"]
    release = catalog.release("demo", "1")
    assert release is not None and release.metadata["summary"] == "demo 1.0"


def test_reupload_of_identical_file_is_file_exists(catalog: Catalog) -> None:
    row = make_file("demo", "1.0")
    serial = catalog.add_file("demo", {}, row)
    with pytest.raises(FileExists) as info:
        catalog.add_file("Demo", {}, row)
    assert info.value.file == row and info.value.serial == serial
    assert isinstance(info.value, CatalogError) and isinstance(info.value, PkgedgeError)
    assert catalog.last_serial() == serial
    assert len(catalog.project_files("demo")) == 1


def test_same_filename_other_bytes_is_a_conflict(catalog: Catalog) -> None:
    row = make_file("demo", "1.0")
    serial = catalog.add_file("demo", {}, row)
    other = make_file("demo", "1.0", content="different bytes")
    with pytest.raises(FilenameConflict) as info:
        catalog.add_file("demo", {}, other)
    err = info.value
    assert isinstance(err, HTTPError) and isinstance(err, CatalogError) and err.status == 400
    assert err.reason.startswith(
        f"File already exists ('{row.filename}', with blake2_256 hash '{other.blake2b_256}')."
    )
    assert "://" not in err.reason
    assert catalog.file_by_name(row.filename) == row and catalog.last_serial() == serial


def test_same_bytes_under_another_filename_is_a_conflict(catalog: Catalog) -> None:
    catalog.add_file("demo", {}, make_file("demo", "1.0", content="payload"))
    renamed = make_file("demo", "1.0", "cp311-none-any", content="payload")
    with pytest.raises(FilenameConflict, match=r"^File already exists \('demo-1\.0-cp311"):
        catalog.add_file("demo", {}, renamed)


def test_deleted_filename_is_never_reusable(catalog: Catalog) -> None:
    row = make_file("demo", "1.0")
    catalog.add_file("demo", {}, row)
    assert catalog.is_deleted_filename(row.filename) is False
    assert catalog.delete_file(row.filename) == row
    assert catalog.delete_file(row.filename) is None
    assert catalog.is_deleted_filename(row.filename) is True
    for attempt in (row, make_file("demo", "1.0", content="new bytes")):
        with pytest.raises(FilenameReused) as info:
            catalog.add_file("demo", {}, attempt)
        assert info.value.status == 400
        assert info.value.reason == "This filename has already been used, use a different version."
    assert catalog.release("demo", "1.0") is not None  # the release stays, empty


def test_add_file_for_another_project_is_refused(catalog: Catalog) -> None:
    with pytest.raises(BadRequest) as info:
        catalog.add_file("demo", {}, make_file("other", "1.0"))
    assert info.value.status == 400 and isinstance(info.value, ValueError)


# -- serials ------------------------------------------------------------------------------


def test_serial_increases_per_write_and_per_project(catalog: Catalog) -> None:
    assert catalog.last_serial() == 0 and catalog.project_serial("a") == 0
    seen = [upload(catalog, "a", "1.0")]
    seen.append(upload(catalog, "b", "1.0"))
    b_serial = catalog.project_serial("b")
    seen.append(upload(catalog, "a", "1.0", "cp312-none-any"))
    seen.append(catalog.yank("a", "1.0", "broken"))
    seen.append(catalog.unyank("a", "1.0"))
    seen.append(catalog.set_status("a", "deprecated", "use b"))
    seen.append(catalog.set_allow_upstream("a", True))
    seen.append(upload(catalog, "a", "2.0"))
    catalog.delete_file(make_file("a", "2.0").filename)
    seen.append(catalog.project_serial("a"))
    catalog.delete_release("a", "1.0")
    seen.append(catalog.project_serial("a"))
    assert seen == sorted(set(seen)), seen
    assert catalog.last_serial() == seen[-1] == catalog.project_serial("a")
    assert catalog.project_serial("b") == b_serial < seen[-1]
    with catalog.engine.connect() as conn:
        rows = conn.execute(select(tables.journal).order_by(tables.journal.c.serial)).all()
    assert [r.serial for r in rows] == sorted({r.serial for r in rows})
    assert rows[-1].serial == catalog.last_serial()
    actions = [r.action for r in rows if r.project == "a"]
    assert actions[:3] == ["create", "new release", "add py3 file a-1.0-py3-none-any.whl"]
    assert "yank release" in actions and actions[-1] == "remove release"


def test_noop_writes_keep_the_serial(catalog: Catalog) -> None:
    upload(catalog, "a", "1.0")
    serial = catalog.yank("a", "1.0", "why")
    assert catalog.yank("a", "1.0", "why") == serial
    assert catalog.set_status("a", "active") == serial
    assert catalog.set_allow_upstream("a", False) == serial
    assert catalog.last_serial() == serial


def test_concurrent_uploads_get_distinct_serials(catalog: Catalog) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                upload(catalog, f"p{n % 3}", f"{n}.{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            seen = []
            for _ in range(40):
                seen.append(catalog.last_serial())
                assert all(f.project == "p0" for f in catalog.project_files("p0"))
            assert seen == sorted(seen)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with catalog.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(tables.journal)).scalar()
        serials = conn.execute(select(tables.journal.c.serial)).scalars().all()
    assert len(set(serials)) == count == 3 + 6 * 15 * 2  # creates; a release and a file each
    assert catalog.last_serial() == max(serials)
    assert sum(len(catalog.project_files(f"p{k}")) for k in range(3)) == 90


# -- yank, delete, status -----------------------------------------------------------------


def test_yank_and_unyank_show_in_files(catalog: Catalog) -> None:
    upload(catalog, "demo", "1.0")
    upload(catalog, "demo", "1.0", "cp311-none-any")
    upload(catalog, "demo", "2.0")
    catalog.yank("Demo", "1.0.0", "security hole")
    by_version = {(f.version, f.yanked, f.yanked_reason) for f in catalog.project_files("demo")}
    assert by_version == {("1.0", True, "security hole"), ("2.0", False, None)}
    assert all(f.yanked for f in catalog.release_files("demo", "1.0"))
    assert catalog.file_by_name(make_file("demo", "1.0").filename).yanked  # type: ignore[union-attr]
    release = catalog.release("demo", "1.0")
    assert release is not None and release.yanked and release.yanked_reason == "security hole"
    catalog.yank("demo", "2.0")
    assert catalog.release_files("demo", "2.0")[0].yanked_reason is None
    catalog.unyank("demo", "1.0")
    assert not any(f.yanked for f in catalog.release_files("demo", "1.0"))
    with pytest.raises(NotFound) as info:
        catalog.yank("demo", "9.9")
    assert info.value.status == 404 and isinstance(info.value, LookupError)


def test_delete_release(catalog: Catalog) -> None:
    upload(catalog, "demo", "1.0")
    upload(catalog, "demo", "1.0", "cp311-none-any")
    upload(catalog, "demo", "2.0")
    deleted = catalog.delete_release("demo", "1.0")
    assert sorted(f.filename for f in deleted) == [
        "demo-1.0-cp311-none-any.whl",
        "demo-1.0-py3-none-any.whl",
    ]
    assert all(f.blob_key and f.project == "demo" for f in deleted)
    assert [r.version for r in catalog.releases("demo")] == ["2.0"]
    assert [f.version for f in catalog.project_files("demo")] == ["2.0"]
    assert all(catalog.is_deleted_filename(f.filename) for f in deleted)
    assert catalog.file_by_blob_key(deleted[0].blob_key) is None
    assert catalog.get_project("demo") is not None
    with pytest.raises(FilenameReused):
        upload(catalog, "demo", "1.0")
    with pytest.raises(NotFound):
        catalog.delete_release("demo", "1.0")


def test_project_status(catalog: Catalog) -> None:
    upload(catalog, "demo", "1.0")
    catalog.set_status("demo", "quarantined", "malware report")
    project = catalog.get_project("demo")
    assert project is not None
    assert (project.status, project.status_reason) == ("quarantined", "malware report")
    catalog.set_status("demo", "active")
    project = catalog.get_project("demo")
    assert project is not None and (project.status, project.status_reason) == ("active", None)
    with pytest.raises(BadRequest, match="Invalid project status"):
        catalog.set_status("demo", "gone")
    with pytest.raises(NotFound):
        catalog.set_status("unknown", "archived")


def test_allow_upstream_and_reserved_names(catalog: Catalog) -> None:
    assert catalog.allows_upstream("never-seen") is True
    upload(catalog, "hosted", "1.0")
    assert catalog.allows_upstream("Hosted") is False  # a hosted project shadows upstream
    catalog.set_allow_upstream("hosted", True)
    assert catalog.allows_upstream("hosted") is True
    catalog.set_allow_upstream("Internal_Lib", False)  # reserve a name before its first upload
    assert catalog.allows_upstream("internal-lib") is False
    assert catalog.get_project("internal-lib") is None
    assert [p.project for p in catalog.list_projects()] == ["hosted"]
    upload(catalog, "Internal.Lib", "0.1")
    project = catalog.get_project("internal-lib")
    assert project is not None and project.display_name == "Internal.Lib"
    assert catalog.allows_upstream("internal-lib") is False
    assert [p.project for p in catalog.list_projects()] == ["hosted", "internal-lib"]


# -- ordering -----------------------------------------------------------------------------


def test_pep440_ordering(catalog: Catalog) -> None:
    versions = ["1.0", "1.0rc1", "1.0.post1", "0.9", "10.0", "2.0", "1.0a1", "1.0.dev0", "1.1"]
    for v in random.Random(4).sample(versions, len(versions)):
        upload(catalog, "demo", v)
        upload(catalog, "demo", v, "cp311-none-any")
    catalog.add_file("demo", {}, make_file("demo", "not.a-version!"))  # imported, say
    expected = [*sorted(versions, key=Version), "not.a-version!"]
    assert [r.version for r in catalog.releases("demo")] == expected
    files = catalog.project_files("demo")
    assert [f.version for f in files] == [v for v in expected for _ in (1, 2)][:-1]
    assert [f.filename for f in files[:2]] == [
        "demo-0.9-cp311-none-any.whl",
        "demo-0.9-py3-none-any.whl",
    ]
    assert version_sort_key("1.0") < version_sort_key("1.0.post1") < version_sort_key("zzz")


def test_ten_thousand_files(catalog: Catalog) -> None:
    """10,000 files of one project (inserted in bulk) come back complete and in order."""
    upload(catalog, "big", "0.0.1")
    upload(catalog, "small", "1.0")
    versions = [f"1.{i}" for i in range(500)]
    tags = [f"cp3{k}-cp3{k}-manylinux_x86_64" for k in range(10)] + [
        f"cp3{k}-cp3{k}-win_amd64" for k in range(10)
    ]
    rows = [make_file("big", v, tag) for v in versions for tag in tags]
    random.Random(1).shuffle(rows)
    with catalog.engine.begin() as conn:
        conn.execute(
            insert(tables.releases),
            [
                {"project": "big", "version": v, "canonical_version": v, "created": T0,
                 "metadata": {}}
                for v in versions
            ],
        )  # fmt: skip
        skip = {"yanked", "yanked_reason"}
        conn.execute(
            insert(tables.files),
            [
                {k: getattr(r, k) for k in FileRow.__dataclass_fields__ if k not in skip}
                for r in rows
            ],
        )
    catalog.yank("big", "1.250", "bad build")
    files = catalog.project_files("BIG")
    assert len(rows) == 10_000 and len(files) == 10_001
    expected = sorted(rows, key=lambda r: (Version(r.version), r.filename))
    assert [f.filename for f in files[1:]] == [r.filename for r in expected]
    assert files[0].version == "0.0.1"
    assert {f.version for f in files if f.yanked} == {"1.250"}
    assert files[1] == expected[0]
    assert all(f.project == "big" for f in files)
    assert len(catalog.releases("big")) == 501
    assert len(catalog.project_files("small")) == 1


# -- tokens -------------------------------------------------------------------------------


def test_tokens_are_stored_hashed(catalog: Catalog, db_url: str) -> None:
    token, secret = catalog.create_token("CI for Foo", "Foo_Bar")
    assert secret.startswith(TOKEN_PREFIX) and len(secret) > len(TOKEN_PREFIX) + 30
    assert token.project == "foo-bar" and token.description == "CI for Foo"
    assert token.revoked is False and token.last_used is None
    dump: list[str] = []
    with catalog.engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            dump.extend(str(tuple(row)) for row in conn.execute(select(table)))
        stored = conn.execute(select(tables.tokens.c.secret_hash)).scalar_one()
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in line or secret[len(TOKEN_PREFIX) :] in line for line in dump)
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for f in (path, path.with_name(path.name + "-wal")):
            if f.exists():
                assert secret[len(TOKEN_PREFIX) :].encode() not in f.read_bytes()


def test_verify_and_revoke_tokens(catalog: Catalog) -> None:
    scoped, scoped_secret = catalog.create_token("one project", "demo")
    anywhere, secret = catalog.create_token("all projects", None)
    assert anywhere.project is None and anywhere.id != scoped.id
    before = datetime.now(UTC) - timedelta(seconds=5)
    verified = catalog.verify_token(secret)
    assert verified is not None and verified.id == anywhere.id and verified.project is None
    assert verified.last_used is not None and verified.last_used >= before
    checked = catalog.verify_token(scoped_secret)
    assert checked is not None and checked.project == "demo"
    assert catalog.verify_token(secret + "x") is None
    assert catalog.verify_token("") is None
    assert catalog.verify_token(TOKEN_PREFIX) is None
    assert catalog.revoke_token(anywhere.id) is True
    assert catalog.revoke_token(anywhere.id) is True
    assert catalog.revoke_token(987654) is False
    assert catalog.verify_token(secret) is None
    listed = catalog.list_tokens()
    assert [(t.id, t.revoked, t.project) for t in listed] == [
        (scoped.id, False, "demo"),
        (anywhere.id, True, None),
    ]
    assert listed[1].last_used is not None


# -- opening ------------------------------------------------------------------------------


def test_repr_hides_password(db_url: str) -> None:
    url = db_url.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:s3cr3t@")
    with Catalog(url) as cat:
        assert "s3cr3t" not in repr(cat) and repr(cat).startswith("Catalog(")
        assert url.split("/")[-1] in repr(cat)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-dir/sub/catalog.db",
        "sqlite://",
        "mysql://user@127.0.0.1/db",
        "postgresql+asyncpg://user@127.0.0.1/db",
        "not a url",
        "postgresql+psycopg://postgres:hunter2@127.0.0.1:{port}/db",
    ],
)
def test_bad_database_url(url: str) -> None:
    url = url.format(port=free_port())
    with pytest.raises(CatalogError) as info:
        Catalog(url)
    message = str(info.value)
    assert "\n" not in message and message
    assert "hunter2" not in message
