"""The playground on a real edge's admin listener: run, check, save and load (the file is
600 and survives a restart), the token, bad input, and that a run touches nothing live."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.edge import EdgeProcess

UNUSED_UPSTREAM = "http://127.0.0.1:9/simple/"  # the playground's test origin answers instead
DOC: dict[str, Any] = {
    "config": 'sub deliver { set resp.http.x-note = "draft"; }\n',
    "requests": [
        {"path": "/cache=60/header=x-a:1", "assert": ["cache.state == miss", "origin.count == 1"]},
        {"path": "/cache=60/header=x-a:1", "assert": ["cache.state == hit", "origin.count == 0"]},
    ],
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    base = tmp_path_factory.mktemp("playground-api")
    proc = EdgeProcess(UNUSED_UPSTREAM, base / "cache", log_path=base / "edge.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_run_through_an_isolated_edge(edge: EdgeProcess) -> None:
    r = edge.admin_request("POST", "/playground/run", json=DOC)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] and out["diagnostics"] == []
    miss, hit = out["results"]
    assert (miss["cache_state"], hit["cache_state"]) == ("miss", "hit")
    assert dict(hit["response"]["headers"])["x-note"] == "draft"
    assert {"phase": "hit", "decision": "fresh", "why": "fresh"} in hit["events"]
    # nothing live was touched: the edge's own counters and cache saw no request
    stats = edge.admin_request("GET", "/stats").json()
    assert stats["misses"] == 0 and stats["hits"] == 0 and stats["origin_fetches"] == 0
    assert stats["disk_objects"] == 0


def test_check_and_run_report_compile_errors(edge: EdgeProcess) -> None:
    bad = {"config": "sub recv {\n  set req.http.x = nope;\n}\n"}
    r = edge.admin_request("POST", "/playground/check", json=bad)
    assert r.status_code == 200
    [d] = r.json()["diagnostics"]
    assert (d["line"], d["column"]) == (2, 20) and "nope" in d["message"]
    r = edge.admin_request("POST", "/playground/run", json={**bad, "requests": DOC["requests"]})
    assert r.json()["ok"] is False and r.json()["results"] == []
    ok = edge.admin_request("POST", "/playground/check", json={"config": DOC["config"]})
    assert ok.json() == {"diagnostics": []}


def test_saved_playgrounds_are_private_files_that_survive_a_restart(edge: EdgeProcess) -> None:
    r = edge.admin_request("POST", "/playground/save", json=DOC)
    assert r.status_code == 200, r.text
    ident = r.json()["id"]
    assert r.json()["url"] == f"/playground?id={ident}"
    path = Path(edge.cache_dir) / "playgrounds" / f"{ident}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    edge.restart()
    r = edge.admin_request("GET", f"/playground/saved/{ident}")
    assert r.status_code == 200
    assert r.json()["config"] == DOC["config"] and len(r.json()["requests"]) == 2


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("POST", "/playground/run", b"{nope", 400, "body must be JSON"),
        ("POST", "/playground/run", b'{"requests": [{"path": "x"}]}', 400, "must start with /"),
        ("GET", "/playground/run", b"", 405, "use POST"),
        ("POST", "/playground/save", b'{"origin": "mars"}', 400, "origin must be one of"),
        ("GET", "/playground/saved/AAAAAAAAAAAAAAAA", b"", 404, "no saved playground"),
        ("GET", "/playground/saved/..%2f..%2fetc", b"", 404, "no saved playground"),
        ("POST", "/playground/check", b'{"config": 1}', 400, "config must be a string"),
    ],
)
def test_bad_requests_get_a_status_and_a_reason(
    edge: EdgeProcess, method: str, path: str, body: bytes, status: int, reason: str
) -> None:
    r = edge.admin_request(method, path, content=body)
    assert r.status_code == status and reason in r.text


def test_the_token_is_required_but_the_page_asks_for_it(edge: EdgeProcess) -> None:
    for path in ("/playground/run", "/playground/save", "/playground/check"):
        assert edge.admin_request("POST", path, token=None, json=DOC).status_code == 401
    assert edge.admin_request("GET", "/playground/saved/x", token="wrong").status_code == 401
    page = edge.admin_request("GET", "/playground", token=None)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'id="config"' in page.text and "src=" not in page.text  # no third-party assets


def test_a_playground_on_the_configured_upstream(upstream: Any, tmp_path: Path) -> None:
    """Only when the document asks for it (origin: upstream) does the isolated edge fetch from
    the real upstream; still its own cache: a miss, then a hit."""
    import json

    from pkgedge.cli import main

    doc = {
        "config": 'sub fetch { if (req.path ~ "^/simple/") { set beresp.ttl = 5m; } }',
        "origin": "upstream",
        "requests": [
            {"path": "/simple/gamma/", "assert": ["cache.state == miss", "client.status == 200"]},
            {
                "path": "/simple/gamma/",
                "assert": ["cache.state == hit", 'client.body contains "gamma"'],
            },
        ],
    }
    path = tmp_path / "upstream.json"
    path.write_text(json.dumps(doc))
    assert main(["playground", "test", str(path), "--upstream", upstream.index_url]) == 0
    assert upstream.count("/simple/gamma/") == 1
