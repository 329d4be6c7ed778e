"""The edge's guard with its per-client profiles: what is cached must never outlive what it
was derived from (the ACL file, the request's identity headers), and what changes between
requests (penalties, throttles, buckets) must still be seen on the very next request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pkgedge.config import build_edge_settings
from pkgedge.edge import protect
from pkgedge.edge.protect import Guard
from pkgedge.http.request import Request
from pkgedge.stats.counters import Counters

T0 = 1_700_000_000.0
PIP_UA = 'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7","ci":null}'
PAGE = "/simple/alpha/"


def make_guard(tmp_path: Path, acl: str | None = None, **flags: Any) -> Guard:
    values: dict[str, Any] = {
        "upstream": "http://127.0.0.1:9/simple/",
        "cache_dir": str(tmp_path / "cache"),
        "protection": "enforce",
    }
    if acl is not None:
        path = tmp_path / "acl.txt"
        path.write_text(acl)
        values["acl_file"] = str(path)
    return Guard(build_edge_settings(values | flags, environ={}), Counters(1))


def req(
    target: str = PAGE, *, peer: str = "192.0.2.10", xff: str | None = None, ua: str = PIP_UA
) -> Request:
    headers = [("host", "edge"), ("user-agent", ua)]
    if xff is not None:
        headers.append(("x-forwarded-for", xff))
    return Request("GET", target, headers, True, peer)


def rewrite(path: Path, text: str) -> None:
    """Replace the file with a visibly newer version (mtime moved on, whatever the clock)."""
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def status(answer: bytes | None) -> int:
    return 200 if answer is None else int(answer[9:12])


# -- the ACL ----------------------------------------------------------------------------
def test_acl_reload_replaces_cached_verdicts(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "deny 192.0.2.10\n")
    acl = tmp_path / "acl.txt"
    r = req()
    assert status(guard.admit(r, T0)) == 403 and r.key == "192.0.2.10"
    assert status(guard.admit(req(), T0 + 0.5)) == 403  # from the cached profile
    rewrite(acl, "allow 192.0.2.10\n")
    assert status(guard.admit(req(), T0 + 0.6)) == 403  # not looked at again yet (1 s)
    r = req()
    assert guard.admit(r, T0 + 1.0) is None and r.spec == "allow"
    rewrite(acl, "# nothing\n")
    r = req()
    assert guard.admit(r, T0 + 2.0) is None and r.spec == "default"
    rewrite(acl, "deny-ua (?i)^pip/\n")
    assert status(guard.admit(req(), T0 + 3.0)) == 403
    assert guard.counters.snapshot()["denied"] == 4


def test_a_bad_acl_edit_keeps_the_cached_verdicts_right(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "deny 192.0.2.10\n")
    assert status(guard.admit(req(), T0)) == 403
    rewrite(tmp_path / "acl.txt", "this is not a rule\n")
    assert status(guard.admit(req(), T0 + 1.0)) == 403  # the previous list still applies
    assert guard.acl is not None and guard.acl.error


# -- identity ---------------------------------------------------------------------------
def test_xff_change_on_a_trusted_peer_is_another_client(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, trusted_proxies="10.0.0.0/8")
    keys = []
    for xff in ("198.51.100.1", "198.51.100.2", "198.51.100.1", "203.0.113.5, 10.0.0.7", None):
        r = req(peer="10.0.0.1", xff=xff)
        assert guard.admit(r, T0) is None
        keys.append(r.key)
    assert keys == ["198.51.100.1", "198.51.100.2", "198.51.100.1", "203.0.113.5", "10.0.0.1"]
    r = req(peer="192.0.2.99", xff="198.51.100.1")  # not a trusted peer: XFF is not believed
    assert guard.admit(r, T0) is None and r.key == "192.0.2.99"


def test_user_agent_change_changes_the_bucket(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, bot_rate_limit="1/1")
    bot = "Googlebot/2.1 (+http://www.google.com/bot.html)"
    r = req(ua=bot)
    assert guard.admit(r, T0) is None and r.spec == "bot"
    assert status(guard.admit(req(ua=bot), T0)) == 429
    r = req()  # same address, pip: its own default bucket
    assert guard.admit(r, T0) is None and r.spec == "default"


def test_long_headers_are_resolved_every_time_not_kept(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "deny-ua (?i)evil\n", trusted_proxies="10.0.0.0/8")
    long_ua = "evil " + "x" * 5000
    long_xff = ", ".join(["unknown"] * 100) + ", 198.51.100.3"
    for _ in range(3):
        assert status(guard.admit(req(ua=long_ua), T0)) == 403
        r = req(peer="10.0.0.1", xff=long_xff)
        assert guard.admit(r, T0) is None and r.key == "198.51.100.3"
    assert len(guard._clients) == 0


def test_profile_table_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protect, "PROFILES", 16)
    guard = make_guard(tmp_path, trusted_proxies="10.0.0.0/8")
    for i in range(500):
        r = req(peer="10.0.0.1", xff=f"198.51.{i // 200}.{i % 200}", ua=f"pip/{i}")
        assert guard.admit(r, T0 + i * 0.01) is None
        assert r.key == f"198.51.{i // 200}.{i % 200}"
        assert len(guard._clients) <= 16


# -- what changes between requests ----------------------------------------------------
def test_a_client_penalized_mid_stream_is_refused_next(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    now = T0
    for _ in range(5):  # its profile is cached
        assert guard.admit(req(), now) is None
        guard.account(req(), 200, "hit", now)
    for i in range(51):  # cache busting: more than 50 distinct queries → blocked
        r = req(f"{PAGE}?r={i}")
        assert guard.admit(r, now) is None
        guard.account(r, 200, "hit", now)
        now += 0.01
    assert guard.counters.snapshot()["penalized"] == 1
    r = req()
    answer = guard.admit(r, now)
    assert status(answer) == 429 and answer is not None and b"retry-after: 900" in answer
    assert "cache-busting" in r.note
    assert guard.admit(req(), now + 899) is not None
    assert guard.admit(req(), now + 900) is None  # the penalty is over


def test_a_penalty_put_directly_in_the_box_is_seen(tmp_path: Path) -> None:
    guard = make_guard(tmp_path)
    assert guard.admit(req(), T0) is None
    guard.penalties.penalize("192.0.2.10", T0, 60, "manual")
    r = req()
    assert status(guard.admit(r, T0 + 1)) == 429 and "manual" in r.note
    assert guard.admit(req(), T0 + 60) is None


def test_a_throttled_client_takes_the_throttled_bucket(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, throttled_rate_limit="1/2")
    wheel = "/files/ab/cd/ef/demo-1.0-py3-none-any.whl"
    now = T0
    for _ in range(31):  # the same file more than 30 times: a CI loop without a cache
        r = req(wheel)
        assert guard.admit(r, now) is None and r.spec == "default"
        guard.account(r, 200, "hit", now)
        now += 0.001
    assert "ci-loop-without-cache: throttle" in r.note
    specs, statuses = [], []
    for _ in range(4):
        r = req(PAGE)
        statuses.append(status(guard.admit(r, now)))
        specs.append(r.spec)
    assert specs == ["throttled"] * 4 and statuses == [200, 200, 429, 429]
    r = req(PAGE)
    assert guard.admit(r, now + 301) is None and r.spec == "default"


def test_observe_mode_refuses_nothing_but_counts(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, "deny 192.0.2.66\n", protection="observe", rate_limit="1/1")
    for i in range(3):
        assert guard.admit(req(), T0) is None
        assert guard.admit(req(peer="192.0.2.66"), T0 + i) is None
    snap = guard.counters.snapshot()
    assert snap["rate_limited"] == 2 and snap["denied"] == 3 and snap["observed"] == 5


def test_origin_fetches_cost_more_than_hits(tmp_path: Path) -> None:
    guard = make_guard(tmp_path, rate_limit="1/12", origin_cost=10.0)
    r = req()
    assert guard.admit(r, T0) is None  # 11 left
    guard.account(r, 200, "pkgedge; fwd=miss", T0)  # 9 more: 2 left
    assert guard.admit(req(), T0) is None
    assert guard.admit(req(), T0) is None
    assert status(guard.admit(req(), T0)) == 429
    r = req("/files/x.whl")  # another route class: its own bucket
    assert guard.admit(r, T0) is None
    guard.account(r, 200, "pkgedge; fwd=stale", T0)  # stale: no origin cost
    assert guard.admit(req("/files/x.whl"), T0) is None
