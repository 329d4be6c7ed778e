"""Named tables and ACLs: declared with initial contents, replaced live without a recompile."""

from __future__ import annotations

import re

import pytest

from pkgedge.rules import Acl, Env, Kind, TableError, Tables, compile_rules
from pkgedge.rules.tables import parse_network

SRC = """
table renamed { "old-name": "new-name", "x": "" }
acl blocked { "192.0.2.0/24"; "2001:db8::/32"; }
sub recv {
    if (client.ip in blocked) { block "address blocked"; }
    if (req.http.x-project in renamed) {
        redirect 301 "/simple/" + renamed[req.http.x-project] + "/";
    }
    log renamed["missing"] ?? "fallback";
    log "[" + renamed["missing"] + "]";
    log renamed["x"] ?? "not used: x is present";
}
"""


def run(
    tables: Tables, ip: str = "198.51.100.1", project: str = ""
) -> tuple[Kind | None, str, list[str]]:
    rules = compile_rules(SRC)
    env = Env(client_ip=ip, req_headers={"x-project": project}, tables=tables.current)
    out = rules.run("recv", env)
    return (out.kind if out else None), (out.location if out else ""), env.log_lines


def test_initial_contents() -> None:
    tables = compile_rules(SRC).tables()
    assert tables.kinds == {"renamed": "table", "blocked": "acl"}
    assert run(tables, ip="192.0.2.77")[0] is Kind.BLOCK
    assert run(tables, ip="2001:db8:1::5")[0] is Kind.BLOCK
    assert run(tables, project="old-name")[:2] == (Kind.REDIRECT, "/simple/new-name/")
    assert run(tables)[2] == ["fallback", "[]", ""]


def test_replace_live_without_recompiling() -> None:
    rules = compile_rules(SRC)
    tables = rules.tables()
    env_tables = tables.current
    assert tables.replace("renamed", {"old-name": "newer"}) == 1
    assert tables.replace("blocked", ["203.0.113.0/24"]) == 2
    assert tables.version == 2
    env = Env(client_ip="192.0.2.77", req_headers={"x-project": "old-name"}, tables=env_tables)
    out = rules.run("recv", env)
    assert out is not None and out.location == "/simple/newer/"  # no longer blocked
    env = Env(client_ip="203.0.113.5", tables=env_tables)
    out = rules.run("recv", env)
    assert out is not None and out.kind is Kind.BLOCK


def test_each_tables_object_is_independent() -> None:
    rules = compile_rules(SRC)
    a, b = rules.tables(), rules.tables()
    a.replace("renamed", {})
    assert "old-name" in b.current["renamed"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("nope", {}, "no table or acl named 'nope' (declared: blocked, renamed)"),
        ("renamed", ["a"], "expected a mapping"),
        ("renamed", {"a": 1}, "keys and values must be strings"),
        ("blocked", {"a": "b"}, "expected a list of networks"),
        ("blocked", "10.0.0.0/8", "expected a list of networks"),
        ("blocked", ["10.0.0.0/33"], "is not a network"),
        ("blocked", [7], "is not a string"),
    ],
)
def test_bad_replacements_keep_the_old_contents(name: str, data: object, message: str) -> None:
    tables = compile_rules(SRC).tables()
    before = dict(tables.current)
    with pytest.raises(TableError, match=re.escape(message)):
        tables.replace(name, data)  # type: ignore[arg-type]
    assert tables.current == before and tables.version == 0


@pytest.mark.parametrize(
    ("ip", "inside"),
    [
        ("10.1.2.3", True),
        ("10.255.255.255", True),
        ("11.0.0.0", False),
        ("192.0.2.5", True),  # a single address
        ("192.0.2.6", False),
        ("::ffff:10.9.9.9", True),  # IPv4-mapped IPv6 is the IPv4 address
        ("2001:db8:abcd::1", True),
        ("2001:db9::1", False),
        ("fe80::1", True),
        ("not an address", False),
        ("", False),
    ],
)
def test_acl_matching(ip: str, inside: bool) -> None:
    acl = Acl(parse_network(t) for t in ["10.0.0.0/8", "192.0.2.5", "2001:db8::/32", "fe80::/10"])
    assert (ip in acl) is inside


def test_acl_catch_all_and_mapped_networks() -> None:
    assert "203.0.113.1" in Acl([parse_network("0.0.0.0/0")])
    assert "2001:db8::1" not in Acl([parse_network("0.0.0.0/0")])
    assert "10.1.1.1" in Acl([parse_network("::ffff:10.0.0.0/104")])
