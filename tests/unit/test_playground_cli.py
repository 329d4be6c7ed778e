"""``pkgedge playground test FILE``: an exported playground run in CI, exit 0 when every
assertion holds, 1 on a failed assertion or a compile error (underlined), 2 on a bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pkgedge.cli import main

CONFIG = (
    "sub recv {\n"
    '  if (req.path ~ "^/simple/old-name/") { redirect 301 "/simple/new-name/"; }\n'
    "}\n"
    'sub deliver { set resp.http.x-note = "hello"; }\n'
)
GOOD = [
    {"method": "GET", "path": "/simple/old-name/", "assert": ["client.status == 301"]},
    {"path": "/cache=60", "assert": ["cache.state == miss", "origin.count == 1"]},
    {
        "path": "/cache=60",
        "assert": ['cache.state == "hit"', "origin.count == 0", 'client.header["x-note"] == hello'],
    },
]


def write(tmp: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_every_assertion_holds_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["playground", "test", write(tmp_path, "ok.json", {"config": CONFIG, "requests": GOOD})]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 GET /cache=60 -> 200 miss (1 origin fetch)" in out
    assert "3 GET /cache=60 -> 200 hit (0 origin fetches)" in out
    assert "6 assertions held, 0 failed" in out


def test_a_failed_assertion_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = [*GOOD[:2], {"path": "/cache=60", "assert": ["cache.state == miss"]}]
    code = main(
        ["playground", "test", write(tmp_path, "bad.json", {"config": CONFIG, "requests": broken})]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert '    FAIL  cache.state == miss  (got "hit")' in out
    assert "3 assertions held, 1 failed" in out


def test_a_compile_error_exits_1_with_the_line_underlined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"config": "sub deliver {\n  set resp.http.x-a = obj.nope;\n}\n", "requests": GOOD}
    code = main(["playground", "test", write(tmp_path, "err.json", doc)])
    err = capsys.readouterr().err
    assert code == 1
    assert "playground:2:23: error: unknown variable 'obj.nope'" in err
    assert "\n      set resp.http.x-a = obj.nope;\n                          ^~~~~~~~\n" in err
    assert "the configuration does not compile (1 error)" in err


def test_toml_files_and_the_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "case.toml"
    path.write_text(
        'config = """\nsub log { log "state " + cache.state; }\n"""\n'
        '[[requests]]\npath = "/status=404"\nassert = ["client.status == 404"]\n'
    )
    assert main(["playground", "test", str(path), "--events"]) == 0
    out = capsys.readouterr().out
    assert "    miss     miss (not in cache)" in out and "    log      state pass" in out


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"requests": [{"path": "x"}]}', "requests[0].path must start with /"),
        ('{"origin": "upstream"}', "give --upstream URL"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, reason: str
) -> None:
    path = tmp_path / "x.json"
    path.write_text(content)
    assert main(["playground", "test", str(path)]) == 2
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err and err.count("\n") == 1


def test_the_command_s_exit_status(tmp_path: Path) -> None:
    broken = [{"path": "/status=500", "assert": ["client.status == 200"]}]
    path = write(tmp_path, "ci.json", {"config": "", "requests": broken})
    proc = subprocess.run(
        [sys.executable, "-m", "pkgedge", "playground", "test", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  client.status == 200  (got 500)" in proc.stdout
