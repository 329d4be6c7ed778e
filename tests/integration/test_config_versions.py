"""Configuration versions and live tables on a real edge with two workers (issue 8).

One upstream and one edge for the module, started with ``--rules FILE``. Versions are made,
checked and activated through the CLI (on the edge's data directory) and the admin API; each
worker's ``GET /config/running`` says what it runs, and a rule in ``sub deliver`` makes the
version visible in every client answer (``x-version``).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.edge import EdgeProcess
from support.upstream import UpstreamIndex, populate_default

RULES = """\
table notes { "alpha": "first" }
acl staff { "192.0.2.0/24"; }
sub recv { set req.http.x-recv-version = "%s"; }
sub deliver {
    set resp.http.x-version = "%s";
    set resp.http.x-recv-version = req.http.x-recv-version;
    if (req.path ~ "^/simple/alpha/") { set resp.http.x-note = notes["alpha"] ?? "none"; }
    if (client.ip in staff) { set resp.http.x-staff = "yes"; }
}
"""

BAD = """\
sub recv {
    if (req.nope == "x") { return(pass); }
    set resp.http.x-a = "1";
}
"""


def rules(tag: str) -> str:
    return RULES % (tag, tag)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    base = tmp_path_factory.mktemp("versions")
    upstream = populate_default(UpstreamIndex(base / "upstream")).start()
    rules_file = base / "start.vcl"
    rules_file.write_text(rules("start"))
    edge = EdgeProcess(
        upstream.index_url,
        base / "cache",
        workers=2,
        log_path=base / "edge.log",
        extra_args=["--rules", str(rules_file), "--protection", "off"],  # the load: no 429
    )
    edge.rules_file = rules_file  # type: ignore[attr-defined]
    try:
        edge.start()
        edge.wait_workers()
        yield edge
        assert "Traceback" not in edge.stderr_text(), edge.stderr_text()[-3000:]
    finally:
        edge.stop()
        upstream.stop()
        _FRESH.close()


def cli(
    edge: EdgeProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pkgedge", "config", *args, "--cache-dir", str(edge.cache_dir)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def admin(edge: EdgeProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return edge.admin_request(method, path, **kwargs)


#: one client (making one costs an SSL context), a new connection per request
_FRESH = httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def running(edge: EdgeProcess) -> dict[str, Any]:
    """``/config/running`` of whichever worker accepts a new connection."""
    resp = _FRESH.get(
        edge.admin_url + "/config/running",
        headers={"Authorization": f"Bearer {edge.token}", "Connection": "close"},
    )
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def on_every_worker(
    edge: EdgeProcess, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0
) -> float:
    """Seconds until every worker's ``/config/running`` satisfies ``check``."""
    pids = set(edge.wait_workers())
    start = time.monotonic()
    done: set[int] = set()
    last: dict[int, Any] = {}
    while time.monotonic() - start < timeout:
        state = running(edge)
        last[state["pid"]] = state
        if check(state):
            done.add(state["pid"])
        else:
            done.discard(state["pid"])
        if done >= pids:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"workers {sorted(pids - done)} did not catch up: {last}")


def version_header(edge: EdgeProcess) -> str | None:
    return edge.get("/simple/alpha/").headers.get("x-version")


# -- start ------------------------------------------------------------------------------------


def test_rules_file_given_at_start_is_the_active_version(edge: EdgeProcess) -> None:
    data = admin(edge, "GET", "/config/versions").json()
    assert data["active"] == 2
    assert [v["status"] for v in data["versions"]][:2] == ["retired", "active"]
    assert data["versions"][1]["author"] == f"edge --rules {edge.rules_file}"  # type: ignore[attr-defined]
    log = admin(edge, "GET", "/config/activations").json()
    assert [(a["from"], a["to"]) for a in log] == [(None, 1), (1, 2)]
    on_every_worker(edge, lambda s: s["version"] == 2)
    mode = (edge.cache_dir / "config" / "versions" / "000002.json").stat().st_mode & 0o777
    assert mode == 0o600
    assert (edge.cache_dir / "config").stat().st_mode & 0o777 == 0o700


# -- CLI --------------------------------------------------------------------------------------


def test_cli_round_trip(edge: EdgeProcess, tmp_path: Path) -> None:
    active = admin(edge, "GET", "/config/versions").json()["active"]
    out = cli(edge, "clone", str(active), "--comment", "cli test")
    assert out.returncode == 0, out.stderr
    new = int(out.stdout.split()[3])
    text = tmp_path / "cli.vcl"
    text.write_text(rules("cli"))
    out = cli(edge, "edit", str(new), "--file", str(text))
    assert out.returncode == 0 and "saved draft" in out.stdout, out.stderr
    assert cli(edge, "validate", str(new)).returncode == 0
    out = cli(edge, "edit", str(new), env={"EDITOR": "sed -i s/first/second/", "VISUAL": ""})
    assert out.returncode == 0, out.stderr
    assert '{ "alpha": "second" }' in cli(edge, "show", str(new)).stdout
    out = cli(edge, "diff", str(active), str(new))
    assert '-    set resp.http.x-version = "' in out.stdout
    assert '+    set resp.http.x-version = "cli";' in out.stdout
    out = cli(edge, "show", str(new))
    assert out.returncode == 0 and "# version" in out.stdout and '"cli"' in out.stdout
    listing = cli(edge, "versions").stdout
    assert f"{new}  draft" in listing.replace("   ", " ")

    out = cli(edge, "activate", str(new), "--author", "alice")
    assert out.returncode == 0, out.stderr
    on_every_worker(edge, lambda s: s["version"] == new)
    out = cli(edge, "edit", str(new), "--file", str(text))
    assert out.returncode != 0 and "cannot change" in out.stderr
    assert "Traceback" not in out.stderr

    out = cli(edge, "rollback", "--author", "bob")
    assert out.returncode == 0, out.stderr
    assert f"version {active} is active (was {new})" in out.stdout
    on_every_worker(edge, lambda s: s["version"] == active)
    log = cli(edge, "activations").stdout.splitlines()
    assert f"v{active} -> v{new}  by alice" in log[-2]
    assert f"rollback  v{new} -> v{active}  by bob" in log[-1]


def test_cli_errors_are_one_clear_message(edge: EdgeProcess) -> None:
    for args in (["show", "999"], ["activate", "999"], ["diff", "1", "999"]):
        out = cli(edge, *args)
        assert out.returncode != 0 and "no version 999" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    out = cli(edge, "table", "nosuch", "--set", "a=b")
    assert out.returncode != 0 and "no table or acl named 'nosuch'" in out.stderr


# -- admin API ------------------------------------------------------------------------------


def test_admin_api_round_trip(edge: EdgeProcess) -> None:
    before = admin(edge, "GET", "/config/versions").json()["active"]
    resp = admin(edge, "POST", "/config/versions", json={"clone": before, "author": "carol"})
    assert resp.status_code == 201, resp.text
    new = resp.json()["version"]
    assert resp.json()["status"] == "draft" and resp.json()["parent"] == before
    resp = admin(edge, "PUT", f"/config/versions/{new}", content=rules("api").encode())
    assert resp.status_code == 200 and '"api"' in resp.json()["source"]
    assert admin(edge, "POST", f"/config/versions/{new}/validate").json()["ok"] is True
    diff = admin(edge, "GET", f"/config/diff?a={before}&b={new}")
    assert diff.status_code == 200 and '+    set resp.http.x-version = "api";' in diff.text

    resp = admin(edge, "POST", "/config/activate", json={"version": new, "author": "carol"})
    assert resp.json() == {"from": before, "to": new}
    took = on_every_worker(edge, lambda s: s["version"] == new)
    print(f"version {new} on both workers {took:.3f} s after the activation returned")
    resp = admin(edge, "PUT", f"/config/versions/{new}", content=b"sub recv { }")
    assert resp.status_code == 409 and "cannot change" in resp.text
    assert resp.headers["content-type"].startswith("text/plain")

    resp = admin(edge, "POST", "/config/rollback")
    assert resp.json() == {"from": new, "to": before}
    on_every_worker(edge, lambda s: s["version"] == before)
    log = admin(edge, "GET", "/config/activations").json()
    assert (log[-2]["by"], log[-2]["to"]) == ("carol", new)
    assert log[-1]["action"] == "rollback" and log[-1]["by"].startswith("admin API")

    assert admin(edge, "GET", "/config/versions/999").status_code == 404
    assert admin(edge, "GET", "/config/versions", token=None).status_code == 401
    assert admin(edge, "POST", "/config/activate", json={}).status_code == 400
    assert admin(edge, "POST", "/config/versions", json={"x": 1}).status_code == 400
    assert admin(edge, "GET", "/config/diff?a=1").status_code == 400


def test_bad_version_is_refused_with_positions(edge: EdgeProcess, tmp_path: Path) -> None:
    active = admin(edge, "GET", "/config/versions").json()["active"]
    resp = admin(edge, "POST", "/config/versions", json={"source": BAD, "comment": "broken"})
    assert resp.status_code == 201  # a draft may be broken; it can never be activated
    bad = resp.json()["version"]
    resp = admin(edge, "POST", f"/config/versions/{bad}/validate")
    assert resp.status_code == 422
    assert f"v{bad}:2:9: error: unknown variable 'req.nope'" in resp.text
    assert f"v{bad}:3:9: error: resp.http.x-a does not exist in sub recv" in resp.text
    assert "\n            ^~~~~~~~\n" in resp.text
    resp = admin(edge, "POST", "/config/activate", json={"version": bad})
    assert resp.status_code == 422 and f"v{bad}:3:9" in resp.text
    out = cli(edge, "activate", str(bad))
    assert out.returncode != 0 and "not activated" in out.stderr and f"v{bad}:2:9" in out.stderr
    path = tmp_path / "bad.vcl"
    path.write_text(BAD)
    out = cli(edge, "validate", str(path))
    assert out.returncode != 0 and f"{path}:3:9: error:" in out.stderr
    assert "        set resp.http.x-a" in out.stderr and "Traceback" not in out.stderr
    assert admin(edge, "GET", "/config/versions").json()["active"] == active
    assert all(a["to"] != bad for a in admin(edge, "GET", "/config/activations").json())
    # an edge given a bad --rules FILE does not start, and says where the errors are
    out = subprocess.run(
        [sys.executable, "-m", "pkgedge", "edge", "--rules", str(path), "--cache-dir",
         str(tmp_path / "cache"), "--upstream", "http://127.0.0.1:9/simple/", "--listen",
         "127.0.0.1:0", "--admin", "127.0.0.1:0"],
        capture_output=True, check=False, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and f"{path}:2:9: error: unknown variable" in out.stderr
    assert "Traceback" not in out.stderr and "listening" not in out.stdout


# -- live tables ------------------------------------------------------------------------------


def test_tables_reach_every_worker_without_a_new_version(edge: EdgeProcess) -> None:
    active = admin(edge, "GET", "/config/versions").json()["active"]
    count = len(admin(edge, "GET", "/config/versions").json()["versions"])
    out = cli(edge, "table", "notes", "--set", "alpha=from-cli", "--set", "beta=2")
    assert out.returncode == 0, out.stderr
    took = on_every_worker(edge, lambda s: s["tables"]["notes"].get("alpha") == "from-cli")
    print(f"table from the CLI on both workers after {took:.3f} s")
    for _ in range(6):  # new connections: either worker; the rules read the new contents
        assert edge.get("/simple/alpha/").headers.get("x-note") == "from-cli"

    resp = admin(edge, "PUT", "/config/tables/staff", json=["198.51.100.0/24", "2001:db8::/32"])
    assert resp.status_code == 200, resp.text
    on_every_worker(edge, lambda s: "2001:db8::/32" in s["tables"]["staff"])
    out = cli(edge, "table", "staff", "--add-network", "127.0.0.1")
    assert out.returncode == 0, out.stderr
    on_every_worker(edge, lambda s: "127.0.0.1/32" in s["tables"]["staff"])
    for _ in range(6):
        assert edge.get("/simple/alpha/").headers.get("x-staff") == "yes"

    resp = admin(edge, "PUT", "/config/tables/staff", json=["not-a-network"])
    assert resp.status_code == 400 and "'not-a-network' is not a network" in resp.text
    resp = admin(edge, "PUT", "/config/tables/notes", json=["a"])
    assert resp.status_code == 400 and "expected a mapping" in resp.text
    assert admin(edge, "PUT", "/config/tables/nosuch", json={}).status_code == 400
    assert admin(edge, "GET", "/config/tables/notes").json()["alpha"] == "from-cli"
    data = admin(edge, "GET", "/config/versions").json()
    assert (data["active"], len(data["versions"])) == (active, count)


# -- activation under load ---------------------------------------------------------------------


class Loop(threading.Thread):
    """GETs on one keep-alive connection until stopped; records every answer's version."""

    def __init__(self, edge: EdgeProcess) -> None:
        super().__init__(daemon=True)
        host, port = edge.url.split("://", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.stop = threading.Event()
        self.seen: list[str | None] = []
        self.errors: list[str] = []
        self.sockets: set[int] = set()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.conn.request("GET", "/simple/alpha/", headers={"Accept": "text/html"})
                resp = self.conn.getresponse()
                resp.read()
                self.sockets.add(id(self.conn.sock))
                if resp.status != 200 or resp.getheader("connection", "") == "close":
                    self.errors.append(f"{resp.status} {resp.getheader('connection')}")
                version = resp.getheader("x-version")
                if version is None and not self.errors:
                    self.errors.append(f"no version: {resp.status} {resp.getheaders()}")
                if resp.getheader("x-recv-version") != version:  # half of one, half of another
                    self.errors.append(f"recv {resp.getheader('x-recv-version')}, {version}")
                self.seen.append(version)
        except Exception as exc:  # a dropped connection or a timeout
            self.errors.append(repr(exc))
        finally:
            self.conn.close()


def test_activation_under_load_is_atomic_and_drops_nothing(edge: EdgeProcess) -> None:
    tags = {}
    for tag in ("blue", "green"):
        resp = admin(edge, "POST", "/config/versions", json={"source": rules(tag)})
        tags[tag] = resp.json()["version"]
    admin(edge, "POST", "/config/activate", json={"version": tags["blue"]}).raise_for_status()
    on_every_worker(edge, lambda s: s["version"] == tags["blue"])
    loops = [Loop(edge) for _ in range(4)]
    for loop in loops:
        loop.start()
    try:
        time.sleep(0.3)
        for step in range(3):
            target = "green" if step % 2 == 0 else "blue"
            if step == 2:
                admin(edge, "POST", "/config/rollback").raise_for_status()
            else:
                admin(edge, "POST", "/config/activate", json={"version": tags[target]})
            on_every_worker(edge, lambda s, t=target: s["version"] == tags[t])
            mark = [len(loop.seen) for loop in loops]
            deadline = time.monotonic() + 10
            while any(len(lp.seen) < m + 20 for lp, m in zip(loops, mark, strict=True)):
                assert time.monotonic() < deadline, [lp.errors for lp in loops]
                time.sleep(0.01)
            for loop, m in zip(loops, mark, strict=True):  # after every worker switched
                assert set(loop.seen[m:]) == {target}, (loop.seen[m:], loop.errors)
    finally:
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(30)
    for loop in loops:
        assert loop.errors == [], loop.errors
        assert len(loop.sockets) == 1  # one connection all along: never closed
        assert set(loop.seen) <= {"blue", "green"}
        assert len(loop.seen) > 60


# -- restart (last: it restarts the module's edge) ---------------------------------------------


def test_active_version_survives_restart(edge: EdgeProcess) -> None:
    resp = admin(edge, "POST", "/config/versions", json={"source": rules("kept")})
    kept = resp.json()["version"]
    admin(edge, "POST", "/config/activate", json={"version": kept}).raise_for_status()
    admin(edge, "PUT", "/config/tables/notes", json={"alpha": "live"}).raise_for_status()
    # no --rules: the active version is whatever was active, with its live tables
    edge.restart(extra_args=["--protection", "off"])
    edge.wait_workers()
    on_every_worker(
        edge, lambda s: s["version"] == kept and s["tables"]["notes"]["alpha"] == "live"
    )
    assert version_header(edge) == "kept"
    assert edge.get("/simple/alpha/").headers.get("x-note") == "live"

    # --rules with the active version's text: nothing new; with other text: a new version
    same = edge.cache_dir.parent / "same.vcl"
    same.write_text(rules("kept"))
    edge.restart(extra_args=["--rules", str(same), "--protection", "off"])
    assert admin(edge, "GET", "/config/versions").json()["active"] == kept
    edge.rules_file.write_text(rules("restarted"))  # type: ignore[attr-defined]
    edge.restart(extra_args=["--rules", str(edge.rules_file)])  # type: ignore[attr-defined]
    data = admin(edge, "GET", "/config/versions").json()
    assert data["active"] == len(data["versions"]) == kept + 1
    log = admin(edge, "GET", "/config/activations").json()
    assert log[-1]["action"] == "start" and log[-1]["by"].startswith("edge --rules")
    on_every_worker(edge, lambda s: s["version"] == kept + 1)
    assert json.loads((edge.cache_dir / "config" / "active").read_text())["version"] == kept + 1
