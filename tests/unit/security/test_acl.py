"""ACL parsing, first-match semantics, networks, and reloading the file on mtime change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgedge.errors import ConfigError
from pkgedge.security.acl import Acl, AclFile, AclSyntaxError

TEXT = """\
# office and partners
allow 10.0.0.0/8   # office
allow 2001:db8:42::/48
deny 192.0.2.1
deny 198.51.100.0/24
allow 198.51.100.7
deny-ua (?i)badbot|evil-scraper
allow-ua ^bandersnatch/
\tdeny\t203.0.113.0/24
"""


@pytest.fixture
def acl() -> Acl:
    return Acl.parse(TEXT, "acl.txt")


def test_parse(acl: Acl) -> None:
    assert len(acl) == 8
    assert [r.line for r in acl.rules] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert acl.rules[0].text == "allow 10.0.0.0/8   # office"


@pytest.mark.parametrize(
    ("ip", "ua", "verdict", "line"),
    [
        ("10.1.2.3", "pip/24.0", "allow", 2),
        ("192.0.2.1", "pip/24.0", "deny", 4),
        ("192.0.2.2", "pip/24.0", None, None),
        ("198.51.100.9", "", "deny", 5),
        ("198.51.100.7", "", "deny", 5),  # first match wins: the /24 deny comes first
        ("203.0.113.50", "", "deny", 9),
        ("192.0.2.2", "Mozilla/5.0 (compatible; BadBot/1.0)", "deny", 7),
        ("10.1.2.3", "BadBot/1.0", "allow", 2),  # the office allow is earlier
        ("192.0.2.1", "bandersnatch/6.5", "deny", 4),
        ("192.0.2.2", "bandersnatch/6.5", "allow", 8),
        ("2001:db8:42:1::5", "", "allow", 3),
        ("2001:db8:43::5", "", None, None),
        ("::ffff:192.0.2.1", "", "deny", 4),
        ("garbage", "evil-scraper", "deny", 7),
        ("garbage", "", None, None),
    ],
)
def test_check(acl: Acl, ip: str, ua: str, verdict: str | None, line: int | None) -> None:
    result = acl.check(ip, ua)
    assert (result.verdict, result.line) == (verdict, line)
    if line is not None:
        assert result.reason.startswith(f"line {line}: ")
    else:
        assert result.reason == "no-match"


def test_network_keys_from_client_identity(acl: Acl) -> None:
    # ClientIdentity groups IPv6 by /64: a /64 inside an allowed /48 matches ...
    assert acl.check("2001:db8:42:7::/64", "").verdict == "allow"
    # ... a rule narrower than the key cannot cover it
    narrow = Acl.parse("deny 2001:db8:1:2::5")
    assert narrow.check("2001:db8:1:2::/64", "").verdict is None
    assert narrow.check("2001:db8:1:2::5", "").verdict == "deny"
    assert narrow.check("not-a/net", "").verdict is None


def test_first_match_over_many_rules() -> None:
    lines = [f"deny 10.{i // 256}.{i % 256}.0/24" for i in range(5000)] + ["allow 10.0.0.0/8"]
    acl = Acl.parse("\n".join(lines))
    assert acl.check("10.3.4.5", "").verdict == "deny"
    assert acl.check("10.200.4.5", "").verdict == "allow"
    assert acl.check("11.0.0.1", "").verdict is None


def test_empty_acl() -> None:
    assert Acl().check("1.2.3.4", "x").verdict is None
    assert Acl.parse("# nothing\n\n   \n").check("1.2.3.4", "x").verdict is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("allow 10.0.0.0/8\npermit 1.2.3.4", 2, "unknown rule"),
        ("deny 10.0.0.300", 1, "not an address"),
        ("deny 10.0.0.1/8", 1, "not an address"),  # host bits set: a typo, not a range
        ("deny", 1, "not an address"),
        ("\n\ndeny-ua (unclosed", 3, "bad pattern"),
        ("allow-ua", 1, "needs a pattern"),
        ("deny 1.2.3.4 5.6.7.8", 1, "not an address"),
    ],
)
def test_syntax_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(AclSyntaxError, match=message) as info:
        Acl.parse(text, "acl.txt")
    assert info.value.line == line
    assert str(info.value).startswith(f"acl.txt:{line}: ")
    assert isinstance(info.value, ConfigError)


@given(ip=st.text(max_size=60), ua=st.text(max_size=300))
def test_check_never_raises(ip: str, ua: str) -> None:
    acl = Acl.parse(TEXT)
    assert acl.check(ip, ua).verdict in ("allow", "deny", None)


# -- the file ------------------------------------------------------------------------------


def write(path: Path, text: str, mtime: float) -> None:
    """Write ``text`` with an explicit mtime, so the test does not depend on fs granularity."""
    path.write_text(text)
    os.utime(path, (mtime, mtime))


def test_file_load_and_reload_on_mtime_change(tmp_path: Path) -> None:
    path = tmp_path / "acl.txt"
    write(path, "deny 192.0.2.1\n", 1_000_000)
    acl = AclFile(path, interval=1.0)
    assert acl.check("192.0.2.1", "", 0.0).verdict == "deny"
    assert acl.refresh(0.5).reason == "not-due"
    assert acl.refresh(1.0).reason == "unchanged"

    write(path, "allow 192.0.2.1\n", 1_000_001)
    assert acl.check("192.0.2.1", "", 1.5).verdict == "deny"  # not looked at yet
    assert acl.check("192.0.2.1", "", 2.0).verdict == "allow"  # a second later: reloaded
    assert acl.refresh(3.0).reason == "unchanged"


def test_same_mtime_different_size_reloads(tmp_path: Path) -> None:
    path = tmp_path / "acl.txt"
    write(path, "deny 192.0.2.1\n", 1_000_000)
    acl = AclFile(path, interval=1.0)
    write(path, "deny 192.0.2.1\ndeny 192.0.2.2\n", 1_000_000)
    assert acl.refresh(5.0).reason == "reloaded"
    assert acl.check("192.0.2.2", "", 5.0).verdict == "deny"


def test_bad_file_keeps_previous_rules_and_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "acl.txt"
    write(path, "deny 192.0.2.1\nallow 10.0.0.0/8\n", 1_000_000)
    acl = AclFile(path, interval=1.0)
    write(path, "deny 192.0.2.1\n# fine\nallow 10.0.0.0/33\n", 1_000_001)
    reload = acl.refresh(1.0)
    assert reload.reason == "failed"
    assert reload.line == 3
    assert reload.error is not None and f"{path}:3:" in reload.error
    assert "keeping the previous 2 rules" in reload.error
    assert acl.error == reload.error and acl.error_line == 3
    assert acl.check("10.1.1.1", "", 1.0).verdict == "allow"  # old lists still in force
    # the same bad version is not re-read every second, and the error stays visible
    again = acl.refresh(2.0)
    assert (again.reason, again.line) == ("unchanged", 3)
    # fixed: reloaded, error cleared
    write(path, "deny 10.0.0.0/8\n", 1_000_002)
    fixed = acl.refresh(3.0)
    assert (fixed.reason, fixed.error) == ("reloaded", None)
    assert acl.error is None
    assert acl.check("10.1.1.1", "", 3.0).verdict == "deny"


def test_deleted_or_unreadable_file_keeps_rules(tmp_path: Path) -> None:
    path = tmp_path / "acl.txt"
    write(path, "deny 192.0.2.1\n", 1_000_000)
    acl = AclFile(path, interval=0)
    path.unlink()
    reload = acl.refresh(1.0)
    assert reload.reason == "failed" and "not found" in (reload.error or "")
    assert acl.check("192.0.2.1", "", 1.0).verdict == "deny"
    path.write_bytes(b"deny \xff\xfe\n")
    assert "not UTF-8" in (acl.refresh(2.0).error or "")
    write(path, "allow 192.0.2.1\n", 1_000_005)
    assert acl.refresh(3.0).reason == "reloaded"
    assert acl.check("192.0.2.1", "", 3.0).verdict == "allow"


def test_atomic_replace_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "acl.txt"
    write(path, "deny 192.0.2.1\n", 1_000_000)
    acl = AclFile(path)
    tmp = tmp_path / "acl.txt.new"
    write(tmp, "deny 192.0.2.9\n", 1_000_000)  # same mtime and size, new inode
    os.replace(tmp, path)
    assert acl.refresh(10.0).reason == "reloaded"
    assert acl.check("192.0.2.9", "", 10.0).verdict == "deny"


def test_startup_errors_raise(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        AclFile(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("deny nope\n")
    with pytest.raises(AclSyntaxError) as info:
        AclFile(bad)
    assert info.value.line == 1
    with pytest.raises(ConfigError):
        AclFile(bad, interval=-1)
