"""Client identity: peer vs X-Forwarded-For, spoofing attempts, IPv6 /64 grouping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgedge.errors import ConfigError
from pkgedge.security.clientid import ClientIdentity, parse_address

LB = "10.0.0.0/8"
EDGES = "2001:db8:ffff::/48"


@pytest.fixture
def ident() -> ClientIdentity:
    return ClientIdentity([LB, EDGES, "192.0.2.10"])


def test_no_proxies_peer_is_client() -> None:
    ident = ClientIdentity([])
    assert ident.identify("198.51.100.7", None) == "198.51.100.7"
    assert ident.identify("198.51.100.7", "203.0.113.1") == "198.51.100.7"


def test_untrusted_peer_with_xff_peer_wins(ident: ClientIdentity) -> None:
    # The client claims to be someone else: it is not a proxy of ours, so XFF is ignored.
    got = ident.resolve("198.51.100.7", "203.0.113.1, 10.0.0.1")
    assert got.key == "198.51.100.7"
    assert got.source == "peer"


def test_trusted_peer_takes_rightmost_untrusted(ident: ClientIdentity) -> None:
    got = ident.resolve("10.0.0.1", "203.0.113.1")
    assert (got.key, got.source) == ("203.0.113.1", "xff")


def test_spoofed_leftmost_entries_are_never_believed(ident: ClientIdentity) -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1, 10.9.9.9"; our LB appended its real address.
    assert ident.identify("10.0.0.1", "1.1.1.1, 10.9.9.9, 203.0.113.5") == "203.0.113.5"
    # Even a spoofed "trusted" address to the left of the real client does not move the key.
    assert ident.identify("10.0.0.1", "10.1.1.1, 203.0.113.5") == "203.0.113.5"


def test_chain_of_several_trusted_proxies(ident: ClientIdentity) -> None:
    xff = "6.6.6.6, 203.0.113.5, 192.0.2.10, 10.2.0.1, 2001:db8:ffff::1"
    got = ident.resolve("10.0.0.1", xff)
    assert (got.key, got.address, got.source) == ("203.0.113.5", "203.0.113.5", "xff")


def test_all_trusted_gives_leftmost(ident: ClientIdentity) -> None:
    got = ident.resolve("10.0.0.1", "10.3.3.3, 10.2.2.2")
    assert (got.key, got.source) == ("10.3.3.3", "xff-all-trusted")


def test_garbage_entries_are_skipped(ident: ClientIdentity) -> None:
    assert ident.identify("10.0.0.1", "203.0.113.5, unknown, , 10.0.0.9") == "203.0.113.5"
    assert ident.identify("10.0.0.1", "unknown") == "10.0.0.1"
    assert ident.identify("10.0.0.1", ",,,") == "10.0.0.1"
    assert ident.identify("10.0.0.1", "") == "10.0.0.1"
    assert ident.resolve("10.0.0.1", "999.1.1.1, _hidden").source == "peer"


def test_ports_brackets_quotes_zones(ident: ClientIdentity) -> None:
    assert ident.identify("10.0.0.1", "203.0.113.5:4711") == "203.0.113.5"
    assert ident.identify("10.0.0.1", '"[2001:db8:1:2::9]:443"') == "2001:db8:1:2::/64"
    assert ident.identify("10.0.0.1", "fe80::1%eth0") == "fe80::/64"
    assert ident.identify("10.0.0.1", " 203.0.113.5 ") == "203.0.113.5"


def test_ipv6_grouped_by_64() -> None:
    ident = ClientIdentity([])
    a = ident.identify("2001:db8:1:2:aaaa:bbbb:cccc:dddd", None)
    b = ident.identify("2001:db8:1:2::1", None)
    c = ident.identify("2001:db8:1:3::1", None)
    assert a == b == "2001:db8:1:2::/64"
    assert c == "2001:db8:1:3::/64"


def test_ipv6_prefix_configurable() -> None:
    assert ClientIdentity(ipv6_prefix=48).identify("2001:db8:1:2::1", None) == "2001:db8:1::/48"
    assert ClientIdentity(ipv6_prefix=128).identify("2001:db8::1", None) == "2001:db8::1"


def test_ipv4_mapped_is_ipv4(ident: ClientIdentity) -> None:
    assert ident.identify("::ffff:198.51.100.7", None) == "198.51.100.7"
    # a dual-stack socket reports the LB as mapped: still trusted
    assert ident.identify("::ffff:10.0.0.1", "203.0.113.5") == "203.0.113.5"


def test_trusted_ipv6_proxy(ident: ClientIdentity) -> None:
    assert ident.identify("2001:db8:ffff::5", "2001:db8:7:7::1") == "2001:db8:7:7::/64"
    assert ident.is_trusted("2001:db8:ffff:1::1")
    assert not ident.is_trusted("2001:db8:fffe::1")
    assert not ident.is_trusted("garbage")


def test_unparseable_peer() -> None:
    ident = ClientIdentity([LB])
    got = ident.resolve("-", "203.0.113.5")
    assert (got.key, got.address, got.source) == ("-", None, "peer-unparseable")
    assert ident.identify("", None) == "-"
    assert len(ident.identify("x" * 1000, None)) == 64


def test_hop_limit_bounds_the_walk() -> None:
    ident = ClientIdentity([LB], max_hops=3)
    xff = "203.0.113.5, " + ", ".join(f"10.0.0.{i}" for i in range(10))
    got = ident.resolve("10.0.0.1", xff)
    assert got.source == "xff-hop-limit"
    assert got.key == "10.0.0.7"  # left-most of the three examined
    assert ident.identify("10.0.0.1", "203.0.113.5, 10.0.0.2, 10.0.0.3") == "203.0.113.5"


def test_cache_is_bounded_and_consistent() -> None:
    ident = ClientIdentity([LB], cache_size=4)
    for i in range(50):
        assert ident.identify("10.0.0.1", f"203.0.113.{i}") == f"203.0.113.{i}"
        assert len(ident._cache) <= 4
    long_xff = "1.1.1.1, " * 100 + "203.0.113.9"
    assert ident.identify("10.0.0.1", long_xff) == "203.0.113.9"
    assert all(k[1] != long_xff for k in ident._cache)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not-an-ip", "10.0.0.1/8", ""])
def test_bad_trusted_proxy_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        ClientIdentity([bad])


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        ClientIdentity(ipv6_prefix=129)
    with pytest.raises(ConfigError):
        ClientIdentity(max_hops=0)


def test_parse_address() -> None:
    assert str(parse_address("1.2.3.4:80")) == "1.2.3.4"
    assert str(parse_address("[::1]")) == "::1"
    assert parse_address("[::1") is None
    assert parse_address("1.2.3") is None
    assert parse_address("") is None


@given(peer=st.text(max_size=80), xff=st.none() | st.text(max_size=300))
def test_identify_never_raises(peer: str, xff: str | None) -> None:
    ident = ClientIdentity([LB, EDGES, "0.0.0.0/0"])
    key = ident.identify(peer, xff)
    assert isinstance(key, str) and key
    assert ClientIdentity([]).identify(peer, xff)


@given(
    st.lists(st.ip_addresses() | st.sampled_from(["unknown", "", "x", "[::1"]), max_size=8),
    st.ip_addresses(v=4),
)
def test_untrusted_peer_always_wins(entries: list[object], peer: object) -> None:
    ident = ClientIdentity([LB])
    if ident.is_trusted(str(peer)):
        return
    assert ident.identify(str(peer), ", ".join(map(str, entries))) == str(peer)
