"""Pure pieces of issue 12 ("first hour"): the TOML file's tables, ``up``'s options, option
help with defaults, reason phrases, the origin's status-line rewrite, and the data
directory's privacy check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pkgedge.cliparts import default_text
from pkgedge.config import EDGE_OPTIONS, build_edge_settings
from pkgedge.errors import ConfigError
from pkgedge.http.headers import REASON_FIELD, reason_phrase, status_line
from pkgedge.http.response import head_prefix
from pkgedge.index import private
from pkgedge.index.reason import with_reason
from pkgedge.up import up_values


def _edge(config: Path) -> None:
    build_edge_settings(
        {}, environ={}, config_file=str(config), resolve_upstream=lambda: "http://u.test/"
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[edge]\nworkers = 2\n[cache]\nsize = 1\n", "unknown table(s): cache"),
        ("[edge]\nworkers = 2\n[upp]\nport = 1\n", "unknown table(s): upp"),
        ('workers = 2\n[origin]\nlisten = "127.0.0.1:1"\n', "key(s) outside any table: workers"),
    ],
)
def test_unknown_tables_and_stray_keys_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _edge(cfg)


def test_the_up_table_is_read_and_its_unknown_keys_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[edge]\nmemory_size = "1MB"\n[up]\nport = 9000\ndata-dir = "d"\n')
    values = up_values({}, str(cfg), environ={})
    assert (values["port"], values["admin_port"], values["data_dir"]) == (9000, 9001, "d")
    _edge(cfg)  # [up] is a known table for the edge too
    values = up_values({"port": "7000"}, str(cfg), environ={"PKGEDGE_UP_PORT": "8000"})
    assert (values["port"], values["admin_port"]) == (7000, 7001)  # flag, then env, then file
    cfg.write_text("[up]\nport = 9000\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown option.*prot"):
        up_values({}, str(cfg), environ={})
    cfg.write_text("[up]\nport = 70000\n")
    with pytest.raises(ConfigError, match="not a port number"):
        up_values({}, str(cfg), environ={})


def test_option_help_shows_defaults_as_flags_spell_them() -> None:
    shown = {o.name: default_text(o) for o in EDGE_OPTIONS}
    assert shown["memory_size"] == " (default: 256MB)"
    assert shown["max_body_size"] == " (default: 110MiB)"
    assert shown["grace"] == " (default: 24h)"
    assert shown["grace_immutable"] == " (default: unlimited)"
    assert shown["connect_timeout"] == " (default: 5s)"
    assert shown["http2"] == " (default: true)"
    assert shown["upstream"] == ""  # its doc says the default already


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("File already exists.\nSee the docs", "File already exists."),
        ("naïve-1.0.whl:\tbad  \r digest", "naive-1.0.whl: bad digest"),
        ("emoji 🙂 here", "emoji ? here"),
        ("x" * 400, "x" * 297 + "..."),
    ],
)
def test_reason_phrase_is_one_line_of_visible_ascii(text: str, phrase: str) -> None:
    assert reason_phrase(text) == phrase
    assert status_line(400, text) == f"HTTP/1.1 400 {phrase}\r\n".encode()


def test_status_line_falls_back_to_the_standard_phrase() -> None:
    assert status_line(403, None) == b"HTTP/1.1 403 Forbidden\r\n"
    assert status_line(403, " \n") == b"HTTP/1.1 403 Forbidden\r\n"


def test_edge_writes_an_upstream_reason_and_never_the_field() -> None:
    headers = [("content-type", "text/plain"), (REASON_FIELD, "Invalid API Token: scoped")]
    head = head_prefix(403, headers)
    assert head.startswith(b"HTTP/1.1 403 Invalid API Token: scoped\r\n")
    assert REASON_FIELD.encode() not in head


def test_origin_moves_the_field_into_the_status_line() -> None:
    head = (
        b"HTTP/1.1 400 Bad Request\r\ndate: x\r\n"
        + REASON_FIELD.encode()
        + b": File already exists\r\ncontent-length: 3\r\n\r\n"
    )
    assert with_reason(head) == (
        b"HTTP/1.1 400 File already exists\r\ndate: x\r\ncontent-length: 3\r\n\r\n"
    )
    plain = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n"
    assert with_reason(plain) == plain


def test_privacy_check_names_what_others_can_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = private.private_umask()
    try:
        private.make_dir(data)
        private.write_secret(data / "edge.json", "{}")
        (data / "catalog.db").write_bytes(b"")
    finally:
        os.umask(old)
    assert private.check(data) == []
    assert (data / "edge.json").stat().st_mode & 0o777 == 0o600
    os.chmod(data / "catalog.db", 0o644)
    os.chmod(data, 0o755)
    warnings = private.check(data)
    assert len(warnings) == 2
    assert "chmod 700" in warnings[0] and f"chmod 600 {data / 'catalog.db'}" in warnings[1]
    private.write_secret(data / "edge.json", "{}")  # replaced: still 600
    assert (data / "edge.json").stat().st_mode & 0o777 == 0o600
