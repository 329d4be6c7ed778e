"""Settings: one option table → flags, PKGEDGE_* variables and the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pkgedge.config import (
    EDGE_OPTIONS,
    build_edge_settings,
    parse_duration,
    parse_hostport,
    parse_size,
)
from pkgedge.errors import ConfigError


def _build(
    flags: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    config: str | None = None,
):  # type: ignore[no-untyped-def]
    return build_edge_settings(
        flags,
        environ=env or {},
        config_file=config,
        resolve_upstream=lambda: "http://pip-index.test/simple",
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("256MB", 256_000_000),
        ("1GiB", 1 << 30),
        ("10gb", 10**10),
        ("4096", 4096),
        ("1.5k", 1500),
        ("2KiB", 2048),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "ten", "5 parsecs", "-1"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_parse_duration_and_hostport() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("5m") == 300.0
    assert parse_hostport("[::1]:8080") == ("::1", 8080)
    assert parse_hostport(":9") == ("127.0.0.1", 9)
    with pytest.raises(ConfigError):
        parse_hostport("localhost")


def test_defaults_and_pip_index_default() -> None:
    s = _build()
    assert s.upstream == "http://pip-index.test/simple/"
    assert s.listen == "127.0.0.1:8080"
    assert s.workers >= 1
    assert len(s.admin_token) >= 20  # generated


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "pkgedge.toml"
    cfg.write_text('[edge]\nmemory_size = "1MB"\nworkers = 3\nlisten = "127.0.0.1:7000"\n')
    s = _build(config=str(cfg))
    assert (s.memory_size, s.workers, s.listen) == (1_000_000, 3, "127.0.0.1:7000")
    s = _build(env={"PKGEDGE_WORKERS": "5"}, config=str(cfg))
    assert s.workers == 5
    s = _build({"workers": "7"}, env={"PKGEDGE_WORKERS": "5"}, config=str(cfg))
    assert s.workers == 7


def test_every_option_has_a_flag_env_and_doc() -> None:
    names = [o.name for o in EDGE_OPTIONS]
    assert len(names) == len(set(names))
    for o in EDGE_OPTIONS:
        assert o.flag.startswith("--") and o.env.startswith("PKGEDGE_") and o.doc


@pytest.mark.parametrize(
    ("flags", "env", "toml", "message"),
    [
        ({"memory_size": "lots"}, {}, None, "flag --memory-size: not a size"),
        ({}, {"PKGEDGE_WORKERS": "two"}, None, "environment PKGEDGE_WORKERS"),
        ({}, {}, "[edge]\nfrobnicate = 1\n", "unknown option(s): frobnicate"),
        ({}, {}, "[edge\n", "config file"),
        ({"upstream": "ftp://x/"}, {}, None, "not an http(s) URL"),
        ({"listen": "nowhere"}, {}, None, "not a HOST:PORT"),
        ({"tls_cert": "c.pem"}, {}, None, "together"),
    ],
)
def test_bad_settings_say_where_and_what(
    tmp_path: Path,
    flags: dict[str, object],
    env: dict[str, str],
    toml: str | None,
    message: str,
) -> None:
    config = None
    if toml is not None:
        config = str(tmp_path / "c.toml")
        Path(config).write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _build(flags, env, config)


def test_settings_are_frozen_and_replace_copies() -> None:
    s = _build()
    with pytest.raises(AttributeError):
        s.workers = 9  # type: ignore[misc]
    t = s.replace(workers=9)
    assert (s.workers != 9 or t is not s) and t.workers == 9
    assert s.as_dict()["admin_token"] == "***"


def test_http2_option_from_flag_env_and_file(tmp_path: Path) -> None:
    assert _build().http2 is True
    assert _build({"http2": "false"}).http2 is False
    assert _build(env={"PKGEDGE_HTTP2": "off"}).http2 is False
    cfg = tmp_path / "edge.toml"
    cfg.write_text("[edge]\nhttp2 = false\n")
    assert _build(config=str(cfg)).http2 is False
    with pytest.raises(ConfigError, match=r"PKGEDGE_HTTP2.*not a boolean"):
        _build(env={"PKGEDGE_HTTP2": "maybe"})


def test_backends_the_rules_may_choose() -> None:
    from pkgedge.config import parse_backends

    assert parse_backends("mirror=http://10.0.0.2/simple, archive=https://a.test/idx/") == {
        "mirror": "http://10.0.0.2/simple/",
        "archive": "https://a.test/idx/",
    }
    assert parse_backends({"files": "http://f.test/"}) == {"files": "http://f.test/"}
    for bad in ("origin=http://a.test/", "two words=http://a.test/", "x=ftp://a.test/"):
        with pytest.raises(ConfigError):
            parse_backends(bad)
