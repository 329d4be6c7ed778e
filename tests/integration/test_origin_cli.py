"""Operating the origin from the command line: tokens, project status, upstream merging, and
purges that wait for an edge that is down."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from support.edge import EdgeFactory, edge_command
from support.origin import OriginProcess, twine_upload, wait_until
from support.packages import make_wheel
from support.upstream import UpstreamIndex

JSON_V1 = "application/vnd.pypi.simple.v1+json"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*edge_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_allow_upstream_merges_upstream_releases_for_one_name(
    upstream: UpstreamIndex, origin_factory: Any, tmp_path: Path
) -> None:
    origin: OriginProcess = origin_factory(upstream=upstream.index_url)
    token = origin.token()
    assert (
        twine_upload(
            origin.url + "/legacy/", token, [make_wheel(tmp_path, "alpha", "0.1")]
        ).returncode
        == 0
    )

    def files() -> list[str]:
        page = origin.get("/simple/alpha/", headers={"Accept": JSON_V1}).json()
        return [f["filename"] for f in page["files"]]

    assert files() == ["alpha-0.1-py3-none-any.whl"]
    out = cli("project", "allow-upstream", "alpha", "--data-dir", str(origin.data_dir))
    assert out.returncode == 0, out.stderr
    assert set(files()) == {"alpha-0.1-py3-none-any.whl", "alpha-1.0-py3-none-any.whl"}
    out = cli("project", "allow-upstream", "alpha", "--deny", "--data-dir", str(origin.data_dir))
    assert out.returncode == 0, out.stderr
    assert files() == ["alpha-0.1-py3-none-any.whl"]

    # issue 12: a mirrored project has a web page; install hints name the index
    page = origin.get("/project/gamma/")
    assert page.status_code == 200, page.text
    assert "gamma-0.1-py3-none-any.whl" in page.text and "Mirrored from the upstream" in page.text
    assert "pip install --index-url &lt;this index&gt;/simple/ gamma==0.1" in page.text
    assert origin.get("/project/gamma/0.1/").status_code == 200
    assert origin.get("/project/gamma/9.9/").status_code == 404
    assert origin.get("/project/no-such-thing/").status_code == 404
    hosted = origin.get("/project/alpha/")
    assert "pip install --index-url &lt;this index&gt;/simple/ alpha==0.1" in hosted.text

    # ... and deleting a project's last release takes its name off /simple/
    def listed() -> list[str]:
        data = origin.get("/simple/", headers={"Accept": JSON_V1}).json()
        return [p["name"] for p in data["projects"]]

    assert "alpha" in listed()
    out = cli("delete", "alpha", "0.1", "--data-dir", str(origin.data_dir))
    assert out.returncode == 0, out.stderr
    assert "alpha" not in listed()
    assert "/project/alpha/" not in origin.get("/").text
    assert files() == []  # the name stays hosted: no upstream releases under it


def test_project_status_archived_and_quarantined(origin_factory: Any, tmp_path: Path) -> None:
    origin: OriginProcess = origin_factory()
    token = origin.token()
    wheel = make_wheel(tmp_path, "statusy", "1.0")
    assert twine_upload(origin.url + "/legacy/", token, [wheel]).returncode == 0
    out = cli(
        "project",
        "status",
        "statusy",
        "archived",
        "--reason",
        "moved",
        "--data-dir",
        str(origin.data_dir),
    )
    assert out.returncode == 0, out.stderr
    page = origin.get("/simple/statusy/", headers={"Accept": JSON_V1}).json()
    assert page["project-status"] == {"status": "archived", "reason": "moved"}
    (tmp_path / "x").mkdir()
    refused = twine_upload(
        origin.url + "/legacy/",
        token,
        [make_wheel(tmp_path / "x", "statusy", "2.0")],
        "--verbose",
    )
    assert refused.returncode != 0
    assert "archived" in refused.stdout + refused.stderr
    file_url = page["files"][0]["url"]
    assert origin.get(file_url).status_code == 200
    out = cli("project", "status", "statusy", "quarantined", "--data-dir", str(origin.data_dir))
    assert out.returncode == 0, out.stderr
    page = origin.get("/simple/statusy/", headers={"Accept": JSON_V1}).json()
    assert page["files"] == []
    assert origin.get(file_url).status_code == 404
    bad = cli("project", "status", "statusy", "gone", "--data-dir", str(origin.data_dir))
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_token_list_and_revoke(origin_factory: Any, tmp_path: Path) -> None:
    origin: OriginProcess = origin_factory()
    token = origin.token("only-this")
    listed = cli("token", "list", "--data-dir", str(origin.data_dir))
    assert listed.returncode == 0
    (line,) = listed.stdout.strip().splitlines()
    token_id, state, scope = line.split("\t")[:3]
    assert (state, scope) == ("active", "only-this")
    assert token not in listed.stdout  # secrets are never shown again
    assert cli("token", "revoke", token_id, "--data-dir", str(origin.data_dir)).returncode == 0
    up = twine_upload(origin.url + "/legacy/", token, [make_wheel(tmp_path, "only-this", "1")])
    assert up.returncode != 0 and "403" in up.stdout + up.stderr
    assert cli("token", "revoke", "999", "--data-dir", str(origin.data_dir)).returncode == 2


def test_purges_wait_for_an_edge_that_is_down(
    origin_factory: Any, edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    """The edge is unreachable when the upload commits: the upload succeeds, the keys wait in
    a queue on disk, and reach the edge once it is back."""
    origin: OriginProcess = origin_factory()
    edge = edge_factory(upstream=origin.index_url)
    edge_admin = edge.admin_url
    (origin.data_dir / "edge.json").write_text(
        json.dumps({"admin": edge_admin, "token": edge.token})
    )
    token = origin.token()
    assert (
        twine_upload(
            edge.url + "/legacy/", token, [make_wheel(tmp_path, "later", "1.0")]
        ).returncode
        == 0
    )
    assert "later-1.0" in edge.get("/simple/later/").text
    edge.stop()
    (tmp_path / "b").mkdir()
    up = twine_upload(origin.url + "/legacy/", token, [make_wheel(tmp_path / "b", "later", "2.0")])
    assert up.returncode == 0, up.stdout + up.stderr  # the upload never waits for the edge
    queue = origin.data_dir / "purge-queue.json"
    assert "project/later" in json.loads(queue.read_text())
    edge.restart(same_ports=True)
    assert wait_until(lambda: json.loads(queue.read_text()) == [], timeout=45)
    assert edge.stats()["purges"] >= 1  # counters restart with the edge: this one is new
    assert "later-2.0" in edge.get("/simple/later/").text


def test_an_access_log_it_cannot_open_is_a_usage_error(tmp_path: Path) -> None:
    """``--access-log PATH`` (issue 10's cluster tests count origin requests from it): a path
    it cannot write stops the origin before it listens, with the reason and exit status 2."""
    out = cli(
        "origin",
        "--data-dir",
        str(tmp_path / "data"),
        "--upstream",
        "off",
        "--listen",
        "127.0.0.1:0",
        "--access-log",
        str(tmp_path / "no-such-dir" / "access.log"),
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "cannot open the access log" in out.stderr and "No such file" in out.stderr
    assert "Traceback" not in out.stderr and "listening" not in out.stdout
